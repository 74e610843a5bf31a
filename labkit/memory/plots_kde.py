"""Figures of notebook 02a (compute lives in ``labkit.memory.kde`` and ``labkit.memory.hopfield``; this module draws).

Every function takes precomputed results and returns a Matplotlib figure.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import cm, colors

__all__ = ["LAMBDA_COLORS", "fraction_figure", "exponent_figure", "binary_figure"]

LAMBDA_COLORS = {1.0: "#1f77b4", 0.5: "#d62728"}


def _lambda_color(lam: float, k: int) -> str:
    return LAMBDA_COLORS.get(lam, f"C{k + 2}")


def fraction_figure(curves: dict, lambdas, dims, alpha1: dict):
    """Fraction retrieved vs N (log axis), one panel per λ, one line per d (±2 binomial SE bands).

    ``curves[(lam, d)]``: a ``labkit.memory.kde.CapacityCounts`` (its queries give each point's SE); ``alpha1[lam]``
    marks exp(α₁ d).
    """
    norm = colors.Normalize(min(dims), max(dims))
    fig, axes = plt.subplots(1, len(lambdas), figsize=(5.2 * len(lambdas), 3.8), sharey=True, squeeze=False)
    for ax, lam in zip(axes[0], lambdas):
        for d in dims:
            counts = curves[(lam, d)]
            n, f = counts.n_patterns, counts.fraction
            color = cm.viridis(norm(d))
            se = np.sqrt(f * (1 - f) / counts.queries.sum(axis=0))
            ax.plot(n, f, "o-", ms=3, lw=1.3, color=color, label=f"d = {d}")
            ax.fill_between(n, np.clip(f - 2 * se, 0, 1), np.clip(f + 2 * se, 0, 1), color=color, alpha=0.2, lw=0)
            ax.plot([np.exp(alpha1[lam] * d)], [1.04], "v", color=color, ms=5, clip_on=False)
        ax.axhline(0.5, color="0.5", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.08)
        ax.set_xlabel("number of stored patterns N")
        ax.set_title(f"λ = 1/σ² = {lam:g}")
    axes[0, 0].set_ylabel("fraction of patterns retrieved")
    axes[0, -1].legend(fontsize=8, loc="lower left", ncol=2)
    fig.suptitle("Gaussian-KDE memory: retrieval collapses sharply with N (▼: the asymptotic capacity exp(α₁d))")
    fig.tight_layout()
    return fig


def exponent_figure(dims, exponents: dict, alpha1: dict, ramsauer: dict, reference: dict, errors: dict):
    """ln N_c / d vs d per λ, with α₁(λ) (dashed), Ramsauer's worst-case rate (dotted), an independent estimate at
    λ = 1 (``reference``: {d: ln N_c / d}, squares) and ±2 bootstrap SE on the λ = 1 values there (``errors``:
    {d: SE})."""
    fig, ax = plt.subplots(figsize=(8.6, 4.2))
    for k, (lam, values) in enumerate(exponents.items()):
        color = _lambda_color(lam, k)
        ax.plot(dims, values, "o-", color=color, label=f"measured, λ = {lam:g}")
        ax.axhline(alpha1[lam], color=color, ls="--", lw=1.2, label=f"α₁({lam:g}) = {alpha1[lam]:.3f} (d → ∞)")
        ax.axhline(
            ramsauer[lam], color=color, ls=":", lw=1.2, label=f"Ramsauer worst case, λ = {lam:g}: {ramsauer[lam]:.3f}"
        )
        if lam == 1.0 and errors:
            at = [list(dims).index(d) for d in errors]
            ax.errorbar(
                list(errors),
                np.asarray(values)[at],
                yerr=2 * np.asarray(list(errors.values())),
                fmt="none",
                ecolor=color,
                capsize=3,
                lw=1,
                label="±2 bootstrap SE, λ = 1",
            )
    if reference:
        ax.plot(
            list(reference),
            list(reference.values()),
            "s",
            mfc="none",
            mec="k",
            ms=8,
            label="independent estimate, λ = 1",
        )
    ax.set_xlabel("dimension d")
    ax.set_ylabel("capacity exponent ln N_c / d")
    ax.set_ylim(0, None)
    ax.set_title("Capacity exponent approaches α₁(λ) from below")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def binary_figure(loads, overlap, n_neurons: int, theory_loads, theory_overlap, alpha_c: float):
    """Classical Hopfield: retrieval overlap vs load P/n, simulation and the AGS zero-temperature theory."""
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    ax.plot(loads, overlap, "o-", color="k", ms=4, label=f"simulation, n = {n_neurons} neurons")
    ax.plot(theory_loads, theory_overlap, color="#ff7f0e", lw=1.5, label="AGS theory (n → ∞)")
    ax.axvline(alpha_c, color="#ff7f0e", ls="--", lw=1, label=f"α_c = {alpha_c:.3f}")
    ax.set_xlabel("load α = P / n (patterns per neuron)")
    ax.set_ylabel("retrieval overlap m")
    ax.set_ylim(0, 1.05)
    ax.set_title("Classical binary Hopfield: capacity linear in n")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig
