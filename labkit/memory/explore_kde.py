"""Notebook 02a's explorer: the Gaussian-KDE memory's capacity, live in JupyterLab (see :mod:`labkit.explore`).

Controls: λ = 1/σ², the dimension d and, for a 2-D picture, the number of stored patterns. Left: α₁(λ) and Ramsauer
et al.'s worst-case rate against λ; middle: the energy landscape of that many patterns on the circle of radius √2
with λ, each pattern's mean-shift retrieval (green: stays within 10% of its norm, red: lost); right: the fraction
retrieved against N at dimension d (:func:`~labkit.memory.kde.capacity_curve`, a few trials) with the asymptotic
N = exp(α₁ d) marked.
"""

import ipywidgets as w
import numpy as np

from labkit import repro
from labkit.explore import Explorer
from labkit.memory import kde

__all__ = ["kde_explorer"]


def kde_explorer(lam: float = 1.0, d: int = 8, n_patterns: int = 12, n_trials: int = 8, seed: int = 0) -> Explorer:
    """The explorer, starting at ``lam``, ``d`` and ``n_patterns``; ``n_trials`` trials per point of the curve."""
    style = {"description_width": "90px"}
    controls = {
        "lam": w.FloatLogSlider(lam, base=10, min=-1, max=0.6, description="λ = 1/σ²", style=style),
        "d": w.IntSlider(d, min=2, max=14, description="d", style=style),
        "n_patterns": w.IntSlider(n_patterns, min=2, max=64, description="2-D patterns", style=style),
    }

    def draw(fig, lam, d, n_patterns):
        ax_a, ax_e, ax_f = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.1, 1]})
        lams = np.geomspace(0.1, 4.0, 120)
        ax_a.plot(lams, [kde.alpha1(x) for x in lams], color="tab:blue", label="α₁(λ) (Lucibello–Mézard)")
        ax_a.plot(
            lams,
            [kde.ramsauer_exponent(x) for x in lams],
            color="tab:gray",
            ls="--",
            label="Ramsauer et al., worst case",
        )
        ax_a.plot([lam], [kde.alpha1(lam)], "o", color="tab:blue")
        ax_a.set_xscale("log")
        ax_a.set_xlabel("λ = 1/σ²")
        ax_a.set_ylabel("capacity exponent ln N_c / d")
        ax_a.set_title(f"α₁({lam:.3g}) = {kde.alpha1(lam):.3f}")
        ax_a.legend(fontsize=7)
        ax_a.grid(alpha=0.3)

        patterns = kde.sphere_patterns(n_patterns, 2, repro.rng(seed, 2))
        memory = kde.GaussianKDEMemory(bandwidth=1 / np.sqrt(lam)).fit(patterns)
        axis = np.linspace(-2.6, 2.6, 121)
        gx, gy = np.meshgrid(axis, axis)
        energy = memory.energy(np.stack([gx.ravel(), gy.ravel()], axis=-1)).reshape(gx.shape)
        cs = ax_e.contourf(axis, axis, energy - energy.min(), levels=16, cmap="viridis")
        fig.colorbar(cs, ax=ax_e, shrink=0.8, label="E − min E (nats)")
        final = kde.retrieve(patterns, patterns, lam, 200)
        kept = np.linalg.norm(final - patterns, axis=1) <= 0.1 * np.sqrt(2)
        ax_e.scatter(*patterns[kept].T, c="limegreen", s=22, edgecolors="k", linewidths=0.4, label="retrieved")
        ax_e.scatter(*patterns[~kept].T, c="red", s=22, edgecolors="k", linewidths=0.4, label="lost")
        ax_e.scatter(*final[~kept].T, c="white", marker="x", s=18, label="where lost ones went")
        ax_e.set_aspect("equal")
        ax_e.set_xlabel("x₁")
        ax_e.set_ylabel("x₂")
        ax_e.set_title(f"{n_patterns} patterns in 2-D: {kept.sum()} retrieved")
        ax_e.legend(fontsize=7, loc="lower left")

        n = kde.n_grid(d, 0.05, kde.alpha1(lam) + 0.35, 12, 5000)
        fraction = kde.capacity_curve(d, lam, n, n_trials, seed, n_queries=32)
        ax_f.plot(n, fraction, "o-", color="tab:blue")
        ax_f.axvline(np.exp(kde.alpha1(lam) * d), color="tab:blue", ls=":", label="exp(α₁ d), the d → ∞ capacity")
        n_c = kde.critical_n(n, fraction)
        if np.isfinite(n_c):
            ax_f.axvline(n_c, color="k", lw=0.8, label=f"N_c(50%) ≈ {n_c:.0f}")
        ax_f.axhline(0.5, color="0.6", lw=0.6)
        ax_f.set_xscale("log")
        ax_f.set_xlabel("stored patterns N")
        ax_f.set_ylabel("fraction retrieved")
        ax_f.set_ylim(-0.03, 1.03)
        ax_f.set_title(f"d = {d}, λ = {lam:.3g} ({n_trials} trials per N)")
        ax_f.legend(fontsize=7)
        ax_f.grid(alpha=0.3)

    return Explorer(controls, draw, title="Explore: the Gaussian-KDE memory's capacity", figsize=(14.0, 4.4))
