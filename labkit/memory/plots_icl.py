"""Figures of notebook 02c: energy landscapes per context size, the context curves with seed bands, training loss."""

import matplotlib.pyplot as plt
import numpy as np

from labkit.stats import mean_and_se

__all__ = ["landscape_figure", "curves_figure", "loss_figure"]

FAMILY_COLORS = ("tab:blue", "tab:orange", "tab:green")


def landscape_figure(rows: list[dict], lim: float, title: str):
    """One row per mixture: filled contours of :math:`E(x \\mid x_{<n}) - \\min E` for each context size n, the
    n context points (white dots) and the true component means (red crosses).

    Each row is ``{"label", "energies" (n_sizes, G, G), "context_sizes", "context" (n_max, 2), "means" (K, 2)}``;
    the colour scale (nats above the minimum) is shared by all panels and clipped at its 95th percentile."""
    n_cols = len(rows[0]["context_sizes"])
    fig, axes = plt.subplots(
        len(rows),
        n_cols,
        figsize=(2.1 * n_cols + 0.8, 2.3 * len(rows) + 0.6),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    shifted = [r["energies"] - r["energies"].min(axis=(1, 2), keepdims=True) for r in rows]
    top = float(np.percentile(np.concatenate([s.ravel() for s in shifted]), 95))
    levels = np.linspace(0.0, top, 16)
    for i, (row, rel) in enumerate(zip(rows, shifted)):
        g = rel.shape[-1]
        h = 2 * lim / g
        axis = -lim + h * (np.arange(g) + 0.5)
        for j, n in enumerate(row["context_sizes"]):
            ax = axes[i, j]
            cs = ax.contourf(axis, axis, np.minimum(rel[j], top), levels=levels, cmap="viridis")
            ctx = row["context"][:n]
            ax.scatter(
                ctx[:, 0],
                ctx[:, 1],
                s=9,
                c="white",
                edgecolors="black",
                linewidths=0.4,
                zorder=3,
                label="context points",
            )
            ax.scatter(
                row["means"][:, 0],
                row["means"][:, 1],
                marker="x",
                s=22,
                c="red",
                linewidths=1.0,
                zorder=4,
                label="true means",
            )
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            if i == 0:
                ax.set_title(f"n = {n}")
            if j == 0:
                ax.set_ylabel(f"{row['label']}\nx₂")
            if i == len(rows) - 1:
                ax.set_xlabel("x₁")
    fig.colorbar(cs, ax=axes, shrink=0.8, label="E(x | x<n) − min E  (nats)")
    handles, labels = axes[-1, -1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
    fig.suptitle(title)
    return fig


def curves_figure(evaluations: dict, title: str):
    """Held-out NLL, share of true means with a well and sample MSE vs context size, per family: mean ± 1 standard
    error over training seeds (band), each training seed thin (its evaluation groups averaged); dotted: the true
    mixtures' values. ``evaluations[family][seed][group]`` are :class:`~labkit.memory.icl.ContextEvaluation`."""
    panels = (
        ("nll", "held-out NLL  (nats per point)", "NLL of held-out points of the same mixture"),
        ("wells", "share of true means with a well", "Wells at the true clusters"),
        ("sample_mse", "sample MSE to nearest true mean", "Model samples (Langevin) vs the true means"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
    for color, (label, per_seed) in zip(FAMILY_COLORS, evaluations.items()):
        sizes = per_seed[0][0].context_sizes
        x = np.arange(len(sizes))
        short = label.split(" (")[0]
        for ax, (key, _, _) in zip(axes, panels):
            seed_means = np.array(
                [np.mean([getattr(e, key).mean(axis=0) for e in groups], axis=0) for groups in per_seed]
            )
            mean, se = mean_and_se(seed_means)
            ax.plot(x, seed_means.T, color=color, lw=0.6, alpha=0.4)
            ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.25, lw=0)
            ax.plot(x, mean, "o-", color=color, label=label)
        true_nll = np.mean([e.true_nll.mean() for groups in per_seed for e in groups])
        axes[0].axhline(true_nll, color=color, ls=":", label=f"true mixture ({short})")
        axes[2].axhline(per_seed[0][0].true_sample_mse, color=color, ls=":", label=f"true mixture ({short}): 2σ²")
    axes[1].set_ylim(-0.03, 1.03)
    axes[2].set_yscale("log")
    for ax, (_, ylabel, panel_title) in zip(axes, panels):
        ax.set_xticks(x, [str(s) for s in sizes])
        ax.set_xlabel("in-context points n")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    axes[2].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    return fig


def loss_figure(histories: list[np.ndarray], title: str, window: int = 20):
    """Contrastive-divergence loss per step for each training seed (moving average over ``window`` steps)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    for i, h in enumerate(histories):
        w = max(1, min(window, len(h)))
        smooth = np.convolve(h, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(w, len(h) + 1), smooth, label=f"seed {i}")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"CD loss (moving mean of {window} steps)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
