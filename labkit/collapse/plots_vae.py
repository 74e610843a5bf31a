"""Figures of notebook 01c (the VAE on real digits): diversity of each generation's samples, and the samples."""

import matplotlib.pyplot as plt
import numpy as np

from labkit.collapse.plots import REGIME_COLORS, REGIME_LABELS
from labkit.collapse.vae import COMPETENT_FRACTION, CONFIDENCE, N_CLASSES

__all__ = ["tile", "diversity_figure", "sample_grid_figure"]


def tile(batch: np.ndarray, n_cols: int = 4, side: int = 8, gap: int = 1) -> np.ndarray:
    """Images ``(n, side²)`` as one grey canvas with ``n_cols`` columns and a ``gap``-pixel white border (NaN)."""
    n_rows = -(-len(batch) // n_cols)
    step = side + gap
    canvas = np.full((n_rows * step + gap, n_cols * step + gap), np.nan)
    for i, img in enumerate(batch):
        r, c = divmod(i, n_cols)
        canvas[gap + r * step : gap + r * step + side, gap + c * step : gap + c * step + side] = img.reshape(side, side)
    return canvas


def diversity_figure(
    entropy: dict[str, np.ndarray],
    coverage: dict[str, np.ndarray],
    real_entropy: float,
    title: str,
    confident: dict[str, np.ndarray],
    real_confident: float,
):
    """Class entropy (left), class coverage (middle) and the share of samples the classifier recognises confidently
    (right; ``confident``, a table like ``entropy``) of each generation's synthetic set per regime: mean and min–max
    band over seeds; dashed: the real held-out digits (ln 10 ≈ 2.303 would be all classes equally often); dotted:
    :data:`COMPETENT_FRACTION`."""
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.3))
    for ax, table in zip(axes, (entropy, coverage, confident)):
        for regime, values in table.items():
            gens = np.arange(1, values.shape[1] + 1)
            color = REGIME_COLORS[regime]
            ax.plot(gens, values.mean(axis=0), color=color, marker="o", ms=3, label=REGIME_LABELS[regime])
            ax.fill_between(gens, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2, lw=0)
        ax.set_xlabel("model-fitting generation")
        ax.set_xticks(gens)
        ax.grid(True, alpha=0.3)
    axes[0].axhline(real_entropy, color="k", ls="--", lw=1, label="real held-out digits")
    axes[0].set_ylabel(f"class entropy of samples (nats; max ln {N_CLASSES})")
    axes[0].set_title("diversity: entropy of predicted classes")
    axes[1].set_ylabel("fraction of the 10 classes covered")
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].set_title("coverage")
    axes[2].axhline(real_confident, color="k", ls="--", lw=1, label="real held-out digits")
    axes[2].axhline(COMPETENT_FRACTION, color="0.4", ls=":", lw=1, label="competence threshold (generation 1)")
    axes[2].set_ylabel(f"share with top-class probability ≥ {CONFIDENCE}")
    axes[2].set_ylim(-0.05, 1.05)
    axes[2].set_title("confidently recognised samples")
    axes[2].legend(fontsize="small", loc="center", bbox_to_anchor=(0.5, 0.6), ncol=2)  # in the gap above the curves
    axes[0].legend(fontsize="small")
    fig.suptitle(title)
    return fig


def sample_grid_figure(results: list[dict], seed: int, generations: list[int], real: np.ndarray, title: str):
    """Rows = regimes, columns = real digits then the chosen generations (1-based) of run ``seed``: each cell tiles
    that generation's first synthetic images (8×8, white = 0, black = 1)."""
    runs = [r for r in results if r["seed"] == seed]
    if not runs:
        raise ValueError(f"no run with seed {seed!r}; seeds present: {sorted({r['seed'] for r in results})}")
    fig, axes = plt.subplots(
        len(runs),
        len(generations) + 1,
        figsize=(1.7 * (len(generations) + 1) + 0.9, 1.8 * len(runs) + 0.5),
        squeeze=False,
    )
    cmap = plt.get_cmap("gray_r").with_extremes(bad="white")
    for i, run in enumerate(runs):
        cells = [("real", real)] + [
            (f"generation {n}", run["generations"][n - 1]["preview"]["images"]) for n in generations
        ]
        for j, (label, batch) in enumerate(cells):
            ax = axes[i, j]
            ax.imshow(tile(batch), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
            if i == 0:
                ax.set_title(label, fontsize="medium")
        axes[i, 0].set_ylabel(REGIME_LABELS[run["regime"]], color=REGIME_COLORS[run["regime"]], fontsize="medium")
    fig.suptitle(title)
    return fig
