"""Figures of the model-collapse notebooks (compute lives in ``linear`` / ``gaussian``; this module only draws).

Every function takes precomputed results and returns a Matplotlib figure; bands are the Monte-Carlo
uncertainty of the mean over seeds (mean ± 2 standard errors), theory is dashed.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import cm, colors

from labkit.stats import mean_and_se

__all__ = [
    "REGIME_COLORS",
    "REGIME_LABELS",
    "grid_figure",
    "universal_figure",
    "reference_figure",
    "gaussian_figure",
    "generations_figure",
]

REGIME_COLORS = {"replace": "#d62728", "accumulate": "#1f77b4", "accumulate_subsample": "#9467bd"}
REGIME_LABELS = {"replace": "replace", "accumulate": "accumulate", "accumulate_subsample": "accumulate-subsample"}


def _band(ax, x, errors, color, label=None, lw=1.2):
    mean, se = mean_and_se(errors)
    ax.plot(x, mean, color=color, lw=lw, label=label)
    ax.fill_between(x, np.clip(mean - 2 * se, mean * 1e-3, None), mean + 2 * se, color=color, alpha=0.2, lw=0)


def grid_figure(results: list[dict], sigma2: float, regimes=("replace", "accumulate_subsample", "accumulate")):
    """Rows = d, columns = regimes, colour = T; simulated mean ± 2 SE and theory (dashed), log y."""
    rows = [r for r in results if r["sigma2"] == sigma2]
    d_values = sorted({r["d"] for r in rows})
    T_values = sorted({r["T"] for r in rows})
    norm = colors.LogNorm(min(T_values), max(T_values))
    fig, axes = plt.subplots(
        len(d_values),
        len(regimes),
        figsize=(3.2 * len(regimes), 2.0 * len(d_values) + 0.6),
        sharex=True,
        sharey="row",
        squeeze=False,
    )
    for i, d in enumerate(d_values):
        for j, regime in enumerate(regimes):
            ax = axes[i, j]
            for r in (r for r in rows if r["d"] == d and r["regime"] == regime):
                x = np.arange(1, r["errors"].shape[1] + 1)
                color = cm.viridis(norm(r["T"]))
                _band(ax, x, r["errors"], color)
                if r["theory"] is not None:
                    ax.plot(x, r["theory"], color=color, ls="--", lw=1)
            ax.set_yscale("log")
            if i == 0:
                ax.set_title(REGIME_LABELS[regime])
            if j == 0:
                ax.set_ylabel(f"d = {d}\ntest error ‖ŵ−w*‖²")
            if i == len(d_values) - 1:
                ax.set_xlabel("model-fitting iteration n")
    sm = cm.ScalarMappable(norm=norm, cmap="viridis")
    fig.colorbar(sm, ax=axes, label="samples per iteration T", shrink=0.5)
    fig.suptitle(
        f"Linear regression fit to its own predictions (σ² = {sigma2}); solid: simulation ± 2 SE, dashed: theory"
    )
    return fig


def universal_figure(results: list[dict], regimes=("replace", "accumulate_subsample", "accumulate")):
    """Every (d, T, σ²) configuration's mean error divided by c = σ²d/(T−d−1): theory predicts one curve per regime."""
    fig, axes = plt.subplots(1, len(regimes), figsize=(3.4 * len(regimes), 3.0), sharey=True)
    for ax, regime in zip(axes, regimes):
        for r in (r for r in results if r["regime"] == regime):
            c = r["sigma2"] * r["d"] / (r["T"] - r["d"] - 1)
            n = np.arange(1, r["errors"].shape[1] + 1)
            ax.plot(n, r["errors"].mean(axis=0) / c, color=REGIME_COLORS[regime], alpha=0.35, lw=0.8)
        n = np.arange(1, results[0]["errors"].shape[1] + 1)
        if regime == "replace":
            ax.plot(n, n, "k--", lw=1.5, label="theory: n")
        elif regime == "accumulate":
            ax.plot(n, np.cumsum(1.0 / n**2), "k--", lw=1.5, label="theory: Σ 1/i²")
            ax.axhline(np.pi**2 / 6, color="k", ls=":", lw=1, label="bound π²/6")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(REGIME_LABELS[regime])
        ax.set_xlabel("model-fitting iteration n")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left")
    axes[0].set_ylabel("test error / c   (c = σ²d / (T−d−1))")
    fig.suptitle(f"All {len(results) // len(regimes)} (d, T, σ²) configurations, one thin line each")
    return fig


def reference_figure(errors: dict[str, np.ndarray], theory: dict[str, np.ndarray], c: float, title: str):
    """Left: error/c per regime with theory; right: the replace/accumulate ratio against theory n / Σ 1/i²."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.4))
    n = np.arange(1, next(iter(errors.values())).shape[1] + 1)
    for regime, e in errors.items():
        _band(left, n, e / c, REGIME_COLORS[regime], REGIME_LABELS[regime])
        if regime in theory:
            left.plot(n, theory[regime] / c, color="k", ls="--", lw=1)
    left.axhline(np.pi**2 / 6, color=REGIME_COLORS["accumulate"], ls=":", lw=1, label="π²/6")
    left.set_yscale("log")
    left.set_xlabel("model-fitting iteration n")
    left.set_ylabel("test error / c")
    left.set_title("error in units of one real-data fit (dashed: theory)")
    left.legend()
    ratio = errors["replace"].mean(axis=0) / errors["accumulate"].mean(axis=0)
    right.plot(n, ratio, color="k", label="simulation")
    right.plot(n, theory["replace"] / theory["accumulate"], color="0.5", ls="--", label="theory n / Σ 1/i²")
    right.set_xlabel("model-fitting iteration n")
    right.set_ylabel("E[replace] / E[accumulate]")
    right.set_title("how much worse replacing is")
    right.legend()
    fig.suptitle(title)
    return fig


def gaussian_figure(results: dict[str, dict[str, np.ndarray]], theory_variance: np.ndarray, title: str):
    """Variance ratio (log y, with replace's theory) and squared mean error per generation and regime."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for regime, out in results.items():
        k = np.arange(1, out["variance_ratio"].shape[1] + 1)
        _band(left, k, out["variance_ratio"], REGIME_COLORS[regime], REGIME_LABELS[regime])
        _band(right, k, out["mean_error"], REGIME_COLORS[regime], REGIME_LABELS[regime])
    left.plot(k, theory_variance, "k--", lw=1, label="replace theory ((n−1)/n)^k")
    left.set_yscale("log")
    left.set_ylabel("fitted variance / true variance")
    left.set_title("variance: collapse vs stability")
    right.set_yscale("log")
    right.set_ylabel("‖μ̂ − μ‖²")
    right.set_title("mean drifts under replace")
    for ax in (left, right):
        ax.set_xlabel("generation k")
        ax.legend()
    fig.suptitle(title)
    return fig


def generations_figure(tables: dict[str, dict[str, np.ndarray]], ylabel: str, title: str):
    """Held-out real loss vs generation per regime: one panel per model (key of ``tables``), mean and min–max
    band over seeds. ``tables[model][regime]`` has shape (n_seeds, n_generations) (``generations.metric_table``)."""
    fig, axes = plt.subplots(1, len(tables), figsize=(3.6 * len(tables) + 0.6, 3.2), sharey=False, squeeze=False)
    for ax, (model, table) in zip(axes[0], tables.items()):
        for regime, values in table.items():
            gens = np.arange(1, values.shape[1] + 1)
            color = REGIME_COLORS[regime]
            ax.plot(gens, values.mean(axis=0), color=color, marker="o", ms=3, label=REGIME_LABELS[regime])
            ax.fill_between(gens, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2, lw=0)
        ax.set_title(model)
        ax.set_xlabel("model-fitting generation")
        ax.set_xticks(gens)
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend()
    fig.suptitle(title)
    return fig
