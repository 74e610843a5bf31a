"""Notebook 01a's explorer: the linear-regression collapse loop, theory against simulation, live.

Controls: the dimension d, the samples per fit T, the label noise σ², the number of model-fitting iterations, which
regimes, a log scale, and whether to show the closed forms (:func:`labkit.collapse.linear.theory`), the simulation
(:func:`labkit.collapse.linear.simulate`, ``n_seeds`` seeds: 200 seeds of 40 iterations take well under a second)
or both. T ≤ d + 1 has no finite expected OLS error: the status line says so and the figure stays.
"""

import ipywidgets as w
import numpy as np

from labkit.collapse import linear
from labkit.explore import Explorer
from labkit.stats import mean_and_se

__all__ = ["REGIME_CHOICES", "linear_explorer"]

COLORS = {"replace": "tab:red", "accumulate": "tab:blue", "accumulate_subsample": "tab:green"}
REGIME_CHOICES = {
    "replace + accumulate": ("replace", "accumulate"),
    "replace": ("replace",),
    "accumulate": ("accumulate",),
    "all three": linear.REGIMES,
}


def linear_explorer(
    d: int = 10, T: int = 100, sigma2: float = 1.0, n_iter: int = 40, n_seeds: int = 200, seed: int = 0
) -> Explorer:
    """The explorer, starting at ``d``, ``T``, ``sigma2`` and ``n_iter`` (01a's reference configuration)."""
    style = {"description_width": "90px"}
    controls = {
        "d": w.IntSlider(d, min=1, max=100, description="d", style=style),
        "T": w.IntSlider(T, min=3, max=1000, description="T (samples)", style=style),
        "sigma2": w.FloatLogSlider(sigma2, base=10, min=-2, max=1, description="σ² (noise)", style=style),
        "n_iter": w.IntSlider(n_iter, min=1, max=100, description="iterations", style=style),
        "regimes": w.Dropdown(
            options=list(REGIME_CHOICES), value="replace + accumulate", description="regimes", style=style
        ),
        "show": w.ToggleButtons(
            options=["theory + simulation", "theory", "simulation"], description="show", style=style
        ),
        "log_y": w.Checkbox(False, description="log scale", indent=False),
    }

    def draw(fig, d, T, sigma2, n_iter, regimes, show, log_y):
        c = linear.one_fit_error(d, T, sigma2)  # raises, named, when T <= d + 1
        n = np.arange(1, n_iter + 1)
        ax = fig.subplots()
        for regime in REGIME_CHOICES[regimes]:
            color = COLORS[regime]
            if "theory" in show and regime != "accumulate_subsample":
                ax.plot(
                    n, linear.theory(d, T, sigma2, n_iter, regime) / c, color=color, lw=2, label=f"{regime}: theory"
                )
            if "simulation" in show or regime == "accumulate_subsample":
                mean, se = mean_and_se(linear.simulate(d, T, sigma2, n_iter, regime, n_seeds, seed) / c)
                ax.errorbar(
                    n,
                    mean,
                    yerr=se,
                    fmt="o",
                    ms=3,
                    color=color,
                    alpha=0.7,
                    capsize=0,
                    label=f"{regime}: simulation ({n_seeds} seeds, ±1 SE)",
                )
        ax.axhline(np.pi**2 / 6, color="0.4", ls=":", label="accumulate bound π²/6")
        ax.set_xlabel("model-fitting iteration n")
        ax.set_ylabel("test error / c   (c = σ²d / (T − d − 1))")
        ax.set_title(f"d = {d}, T = {T}, σ² = {sigma2:.3g}: one fit on real data has error c = {c:.3g}")
        ax.set_yscale("log" if log_y else "linear")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")

    return Explorer(controls, draw, title="Explore: replace vs accumulate in linear regression")
