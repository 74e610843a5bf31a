"""Figures of notebook 02b (compute lives in ``labkit.memory.clustering``; this module only draws)."""

import matplotlib.pyplot as plt
import numpy as np

from labkit.memory.clusterers import METHODS, ORACLE_ABLATIONS
from labkit.memory.clustering import METRICS, AlphaSweep

__all__ = ["elbo_dynamics_figure", "comparison_figure", "alpha_figure"]

_COLORS = dict(
    zip(
        METHODS + ORACLE_ABLATIONS,
        ("#7f7f7f", "#1f77b4", "#17becf", "#d62728", "#ff7f0e", "#2ca02c", "#f4a3a3", "#a6d8a6"),
    )
)


def elbo_dynamics_figure(q: np.ndarray, energy: np.ndarray, posterior: np.ndarray, log_evidence: float):
    """Assignments q_k(t) converging to the posterior (dashed) and E(t) − (−log p(x)) falling to zero, for one x."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    t = np.arange(1, len(q) + 1)
    for k in range(q.shape[1]):
        (line,) = axes[0].plot(t, q[:, k], lw=1.5, label=f"q_{k + 1}(t)")
        axes[0].axhline(posterior[k], color=line.get_color(), ls="--", lw=1)
    axes[0].set(
        xscale="log",
        xlabel="dynamics step t + 1 (Euler, η = dt/τ)",
        ylabel="assignment q_k",
        title="ELBO memory: q(t) → posterior p(z | x) (dashed)",
    )
    axes[0].legend(fontsize=8)
    gap = np.maximum(energy + log_evidence, 1e-17)
    axes[1].plot(t, gap, color="k", lw=1.5)
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="dynamics step t + 1",
        ylabel="E(v_t) + log p(x) = KL(q_t ‖ p)  [nats]",
        title="negative ELBO decreases to −log p(x)",
    )
    return fig


def comparison_figure(summary: dict, metrics=METRICS):
    """Grouped bars: mean ± std over seeds of each metric, per data set and method (hatched: the oracle-width
    ablations)."""
    datasets = list(summary)
    methods = [m for m in METHODS + ORACLE_ABLATIONS if m in summary[datasets[0]]]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(11, 2.3 * len(metrics) + 0.6), sharex=True)
    width = 0.8 / len(methods)
    x = np.arange(len(datasets))
    for ax, metric in zip(axes, metrics):
        for i, method in enumerate(methods):
            mean = [summary[ds][method][metric][0] for ds in datasets]
            std = [summary[ds][method][metric][1] for ds in datasets]
            ax.bar(
                x + (i - (len(methods) - 1) / 2) * width,
                mean,
                width,
                yerr=std,
                color=_COLORS[method],
                label=method,
                capsize=2,
                error_kw={"lw": 0.8},
                hatch="//" if method in ORACLE_ABLATIONS else None,
            )
        ax.set_ylabel(metric)
        ax.axhline(0, color="k", lw=0.5)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=4, fontsize=8, loc="outside upper center")
    axes[-1].set_xticks(x, [ds.replace("_", " ") for ds in datasets])
    axes[-1].set_xlabel("data set (standardised features)")
    axes[0].set_title("Clustering scores, mean ± std over seeds (higher is better)")
    return fig


def alpha_figure(sweep: AlphaSweep, true_k: int, oracle: AlphaSweep | None = None):
    """Memories vs concentration α (mean ± std over seeds) with the true number of clusters, and ARI vs α; ``oracle``
    (the same sweep at the label-derived width, an ablation) in lighter, dashed lines."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    a = sweep.alpha
    runs = [(sweep, "", 1.0, "-")] + ([(oracle, " (oracle width)", 0.45, "--")] if oracle is not None else [])
    for run, suffix, alpha, ls in runs:
        for key, label, color, marker in (
            ("created", "opened while streaming", "#2ca02c", "o"),
            ("kept", "kept after refinement", "k", "s"),
        ):
            values = getattr(run, key)
            axes[0].errorbar(
                a,
                values.mean(0),
                yerr=values.std(0),
                marker=marker,
                ms=4,
                capsize=2,
                color=color,
                ls=ls,
                alpha=alpha,
                label=label + suffix,
            )
        axes[1].errorbar(
            a,
            run.ari.mean(0),
            yerr=run.ari.std(0),
            marker="o",
            ms=4,
            capsize=2,
            color="#2ca02c",
            ls=ls,
            alpha=alpha,
            label="median-heuristic width" if not suffix else "oracle width (ablation)",
        )
    axes[0].axhline(true_k, color="#d62728", ls=":", label=f"true clusters ({true_k})")
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="CRP concentration α",
        ylabel="number of memories",
        title="memories created vs α (blobs)",
    )
    axes[0].legend(fontsize=7)
    axes[1].set(
        xscale="log",
        xlabel="CRP concentration α",
        ylabel="ARI vs true labels",
        title="clustering quality vs α",
        ylim=(-0.05, 1.05),
    )
    axes[1].legend(fontsize=7)
    return fig
