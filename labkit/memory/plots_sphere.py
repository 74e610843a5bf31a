"""Figures of notebook 02d (compute lives in ``labkit.memory.attention`` and ``labkit.memory.hypersphere``; this
module only draws).

Bands are the Monte-Carlo uncertainty of the mean over seeds (mean ± 2 standard errors).
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import cm, ticker

from labkit.stats import mean_and_se

__all__ = ["identity_figure", "trajectories_figure", "clustering_figure"]


def _beta_colors(betas) -> list:
    return [cm.plasma(v) for v in np.linspace(0.0, 0.85, len(betas))]


def identity_figure(identity, tol: float):
    """(a) attention weights vs vMF posterior per norm, (b) their relative errors, (c) E along mean-shift per β.

    ``identity``: a :class:`~labkit.memory.hypersphere.IdentityResult` (``norms``: norm name → weights and posterior
    of equal shape; ``energies``: β → (n_steps + 1, n_queries)).
    """
    weights = {norm: v.weights for norm, v in identity.norms.items()}
    posteriors = {norm: v.posterior for norm, v in identity.norms.items()}
    energies = identity.energies
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.0))
    colors = {"layer": "#1f77b4", "rms": "#d62728"}
    labels = {"layer": "LayerNorm", "rms": "RMSNorm"}
    ax = axes[0]
    for norm, w in weights.items():
        ax.loglog(w.ravel(), posteriors[norm].ravel(), ".", ms=2, color=colors[norm], alpha=0.5, label=labels[norm])
    lo = min(w.min() for w in weights.values())
    ax.loglog([lo, 1], [lo, 1], "k--", lw=0.8, label="y = x")
    ax.set(
        xlabel="attention weight softmaxᵢ(kᵢ·q)",
        ylabel="vMF mixture posterior p(i | u)",
        title="(a) attention = vMF posterior",
    )
    ax.legend(markerscale=4)
    ax = axes[1]
    rel = {n: np.abs(posteriors[n] - w).ravel() / w.ravel() for n, w in weights.items()}
    bins = np.linspace(-18, np.log10(tol) + 1, 60)
    for norm, r in rel.items():
        ax.hist(
            np.log10(np.maximum(r, 1e-18)),
            bins=bins,
            color=colors[norm],
            alpha=0.5,
            label=f"{labels[norm]} (max {r.max():.1e})",
        )
    ax.axvline(np.log10(tol), color="k", ls="--", lw=1, label=f"tolerance {tol:g}")
    ax.set(
        xlabel="log₁₀ relative error (exact agreement drawn at −18)",
        ylabel="number of (query, key) pairs",
        title="(b) relative error",
    )
    ax.legend(fontsize=8)
    ax = axes[2]
    for color, (beta, e) in zip(_beta_colors(energies), energies.items()):
        ax.plot(e - e[0], color=color, lw=0.6, alpha=0.6)
        ax.plot([], [], color=color, label=f"β = {beta:g}")
    ax.set(
        xlabel="mean-shift step (pure attention, fixed keys)",
        ylabel="E(xₜ) − E(x₀)",
        title="(c) the vMF-KDE energy never rises",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def trajectories_figure(trajectories: dict, labels: dict, title: str):
    """Token trajectories on S² over depth, one 3-D panel per β: ``trajectories`` β → (depth + 1, n, 3); ``labels``
    β → (n,) final cluster of each token (colours). Start: grey dots; end: black crosses."""
    betas = list(trajectories)
    fig = plt.figure(figsize=(3.8 * len(betas), 4.3), layout="none")  # 3-D axes: placed by hand
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
    for k, beta in enumerate(betas):
        ax = fig.add_subplot(1, len(betas), k + 1, projection="3d")
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
        xs = trajectories[beta]
        for i in range(xs.shape[1]):
            ax.plot(*xs[:, i].T, color=cm.tab10(labels[beta][i] % 10), lw=0.9)
        ax.scatter(*xs[0].T, color="0.5", s=6, depthshade=False)
        ax.scatter(*xs[-1].T, color="k", marker="x", s=30, depthshade=False)
        n_clusters = len(np.unique(labels[beta]))
        ax.set_title(
            f"β = {beta:g}: {n_clusters} cluster{'s' if n_clusters > 1 else ''} at depth {len(xs) - 1}", fontsize=10
        )
        ax.set(xlabel="x₁", ylabel="x₂", zlabel="x₃", xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1))
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_major_locator(ticker.FixedLocator([-1, 0, 1]))
        ax.set_box_aspect((1, 1, 1), zoom=0.85)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, y=0.99)
    fig.subplots_adjust(left=0.0, right=0.98, top=0.85, bottom=0.02, wspace=0.05)
    return fig


def clustering_figure(result, cluster_angle: float, title: str, movement_floor: float | None = None):
    """Cluster count, mean pairwise cosine and mean displacement from the start (radians) vs depth + 1 (log axes), one
    colour per β, mean ± 2 SE over seeds, from a :class:`~labkit.memory.attention.TokenClustering`; ``movement_floor``
    (dotted) is the displacement a β needs to count in the metastability claim."""
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.0))
    depth = result.depth + 1
    for color, beta, *tables in zip(
        _beta_colors(result.betas), result.betas, result.counts, result.cosine, result.displacement
    ):
        for ax, values in zip(axes, tables):
            mean, se = mean_and_se(values)
            ax.plot(depth, mean, color=color, lw=1.5, label=f"β = {beta:g}")
            ax.fill_between(depth, mean - 2 * se, mean + 2 * se, color=color, alpha=0.2, lw=0)
    n_tokens = result.counts.max()
    axes[0].set_yscale("log")
    axes[0].yaxis.set_major_locator(ticker.FixedLocator([v for v in (1, 2, 5, 10, 20, 50, 100, 200) if v <= n_tokens]))
    axes[0].yaxis.set_major_formatter(ticker.ScalarFormatter())
    axes[0].yaxis.set_minor_formatter(ticker.NullFormatter())
    axes[0].set(
        ylabel=f"clusters (components at angle < {cluster_angle:g} rad)",
        title="number of clusters",
        ylim=(0.8, 1.3 * n_tokens),
    )
    axes[1].set(ylabel="mean pairwise cosine xᵢᵀxⱼ", title="mean pairwise cosine", ylim=(-0.05, 1.05))
    if movement_floor is not None:
        axes[2].axhline(movement_floor, color="0.3", ls=":", lw=1, label="movement floor")
    axes[2].set(ylabel="mean angle to the token's start (rad)", title="how far the tokens moved")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("depth + 1 (layers, log scale)")
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
