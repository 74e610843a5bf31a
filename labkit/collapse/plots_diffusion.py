"""Figures of notebook 01d (conformer diffusion): real and generated conformers side by side."""

import matplotlib.pyplot as plt
import numpy as np

from labkit.collapse.diffusion import kabsch_rmsd
from labkit.data.molecules import ELEMENTS, Conformers

__all__ = ["conformer_figure"]


ELEMENT_COLORS = {
    "C": "0.35",
    "N": "#1f5fd6",
    "O": "#d62728",
    "F": "#2ca02c",
    "P": "#ff7f0e",
    "S": "#bcbd22",
    "Cl": "#17becf",
    "Br": "#8c564b",
    "I": "#9467bd",
}


def _draw_molecule(
    ax,
    coords: np.ndarray,
    mol: Conformers,
    title: str,
    centre: np.ndarray,
    radius: float,
    ghost: np.ndarray | None = None,
) -> None:
    """Atoms (coloured by element) and bonds of ``mol`` at ``coords`` (A, 3); ``ghost``: the real conformer, drawn
    faintly underneath; a cube of half-width ``radius`` Å around ``centre``, grid lines 1 Å apart, a 1 Å scale bar."""
    from matplotlib.ticker import MultipleLocator

    m = mol.mask[0]
    pairs = list(zip(*np.nonzero(np.triu(mol.bonds[0][np.ix_(m, m)] > 0, 1))))
    if ghost is not None:
        for i, j in pairs:
            ax.plot(*ghost[m][[i, j]].T, color="0.8", lw=3, zorder=1)
    xyz = coords[m]
    for i, j in pairs:
        ax.plot(*xyz[[i, j]].T, color="0.45", lw=1.5)
    ax.scatter(
        *xyz.T,
        c=[ELEMENT_COLORS[ELEMENTS[a]] for a in mol.atoms[0][m]],
        s=40,
        depthshade=False,
        edgecolors="k",
        linewidths=0.4,
    )
    ax.set(
        xlim=(centre[0] - radius, centre[0] + radius),
        ylim=(centre[1] - radius, centre[1] + radius),
        zlim=(centre[2] - radius, centre[2] + radius),
    )
    corner = centre - 0.9 * radius  # a 1 Å scale bar along x, low corner
    ax.plot([corner[0], corner[0] + 1.0], [corner[1]] * 2, [corner[2]] * 2, color="k", lw=2.5, zorder=5)
    ax.text(corner[0] + 0.5, corner[1], corner[2] + 0.12 * radius, "1 Å", ha="center", fontsize=7)
    ax.set_box_aspect((1, 1, 1))
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MultipleLocator(1.0))
        axis.set_ticklabels([])
    ax.set_title(title, fontsize=8)


def conformer_figure(real: Conformers, generated: dict[str, np.ndarray], title: str):
    """Rows: the molecules of ``real``; columns: the real conformer, then each entry of ``generated``
    (label -> coordinates (n, A, 3) for the same graphs), rotated onto the real one (Kabsch) and drawn over it
    (the real one in light grey), with its RMSD. Atoms coloured by element (C grey, N blue, O red, F green); every
    panel of a row shows the same cube of space, grid lines 1 Å apart, with a 1 Å scale bar."""
    from matplotlib.lines import Line2D

    n, cols = len(real), 1 + len(generated)
    fig = plt.figure(figsize=(2.2 * cols, 2.3 * n + 0.6))
    for r in range(n):
        mol = real[r]
        m = mol.mask[0]
        aligned = {label: kabsch_rmsd(coords[r : r + 1], mol.coords, mol.mask) for label, coords in generated.items()}
        centre = mol.coords[0][m].mean(0)
        radius = max(np.abs(c[0][0][m] - centre).max() for c in [(mol.coords, None), *aligned.values()]) + 0.4
        _draw_molecule(
            fig.add_subplot(n, cols, r * cols + 1, projection="3d"),
            mol.coords[0],
            mol,
            f"real (QM9 DFT)\n{mol.smiles[0]}",
            centre,
            radius,
        )
        for c, (label, (coords, rmsd)) in enumerate(aligned.items(), start=2):
            _draw_molecule(
                fig.add_subplot(n, cols, r * cols + c, projection="3d"),
                coords[0],
                mol,
                f"{label}\nRMSD {rmsd[0]:.2f} Å",
                centre,
                radius,
                ghost=mol.coords[0],
            )
    present = sorted({ELEMENTS[a] for a in real.atoms[real.mask]}, key=ELEMENTS.index)
    handles = [Line2D([], [], ls="", marker="o", color=ELEMENT_COLORS[e], markeredgecolor="k") for e in present]
    handles.append(Line2D([], [], color="0.8", lw=3))
    fig.legend(handles, present + ["real conformer (behind)"], loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(title)
    return fig
