"""Figures of notebook 05c (closed-loop search). Compute lives in labkit.rig.experiments.search_evaluation; this
module only draws and returns Matplotlib figures."""

import matplotlib.pyplot as plt
import numpy as np

from labkit.rig.experiments.search import FIBRE_NAMES
from labkit.rig.experiments.strength_duration import threshold_vpp

__all__ = ["METHOD_STYLE", "learning_curves_figure", "pulses_figure", "session_figure", "selective_figure"]

METHOD_STYLE = {
    "grid": ("#7f7f7f", "05a grid"),
    "random": ("#ff7f0e", "random design"),
    "closed_loop": ("#1f77b4", "closed-loop search"),
}
_TARGETS = ("rheobase", "chronaxie")


def learning_curves_figure(result, tolerance: float):
    """Median relative error over worms (band: 25–75 %) of each fibre's rheobase and chronaxie against the pulses
    delivered (templates included), per design; dotted: the tolerance."""
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 7), sharex=True)
    for method, (color, label) in METHOD_STYLE.items():
        runs = [r for r in result.runs if r.method == method]
        n = min(len(r.errors) for r in runs)
        err = np.array([r.errors[:n] for r in runs])  # (worms, n, 4)
        x = runs[0].n_templates + np.arange(1, n + 1)
        for j in range(4):
            ax = axes[j // 2, j % 2]
            e = np.where(np.isfinite(err[:, :, j]), err[:, :, j], np.inf)
            q25, q50, q75 = np.quantile(e, [0.25, 0.5, 0.75], axis=0, method="inverted_cdf")  # inf: undefined
            ax.plot(x, q50, color=color, label=f"{label} (starts after {runs[0].n_templates} template pulses)")
            ax.fill_between(x, q25, np.minimum(q75, 10), color=color, alpha=0.15)
    for j, ax in enumerate(axes.ravel()):
        ax.axhline(tolerance, color="k", ls=":", lw=1)
        ax.set(
            yscale="log",
            ylim=(3e-3, 3),
            title=f"{FIBRE_NAMES[j // 2]} {_TARGETS[j % 2]}",
            ylabel="relative error |estimate / truth − 1|",
        )
    for ax in axes[1]:
        ax.set_xlabel("pulses delivered (templates included)")
    axes[0, 0].legend(frameon=False, fontsize=8)
    fig.suptitle(
        f"Strength–duration accuracy against pulses: median over {len(result.worms)} worms "
        f"(band 25–75 %; dotted: {tolerance:.0%})"
    )
    return fig


def pulses_figure(summary: dict, tolerance: float, budget: float):
    """Pulses each design needs until both of a fibre's numbers stay within ``tolerance``, per worm; 'never' on top."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4), sharey=True)
    never = budget * 1.12
    for ax, fibre in zip(axes, FIBRE_NAMES):
        for i, (method, (color, _)) in enumerate(METHOD_STYLE.items()):
            s = summary[method]
            y = np.where(np.isfinite(s.pulses[fibre]), s.pulses[fibre], never)
            jitter = np.linspace(-0.2, 0.2, len(y))
            ax.plot(i + jitter, y, "o", color=color, alpha=0.6, ms=4)
            med, lo, hi = s.median[fibre]
            ax.errorbar(
                i + 0.35,
                min(med, never),
                yerr=[[min(med, never) - min(lo, never)], [min(hi, never) - min(med, never)]],
                fmt="s",
                color="k",
                capsize=3,
                label="median, 95 % bootstrap" if i == 0 else None,
            )
        ax.axhline(never, color="k", lw=0.5)
        ax.text(2.45, never, "never", va="bottom", ha="right", fontsize=8)
        ax.set(
            xticks=range(3),
            xticklabels=[lab for _, lab in METHOD_STYLE.values()],
            ylim=(0, never * 1.08),
            title=f"{fibre}: rheobase and chronaxie within {tolerance:.0%}",
            ylabel="pulses (templates included)",
        )
    axes[0].legend(frameon=False, loc="lower left", fontsize=8)
    return fig


def session_figure(run, truth: dict, periods_ms):
    """One closed-loop session: every stimulus chosen (number = order; colour = response) over voltage × period, the
    worm's true thresholds (dashed) and the final fitted curves (solid)."""
    t = run.trials
    sweep = ~np.asarray(t.template, dtype=bool)
    v, p = np.asarray(t.vpp)[sweep], np.asarray(t.period_ms)[sweep]
    resp = np.asarray(t.mgf, int)[sweep] + np.asarray(t.lgf, int)[sweep]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    pp = np.geomspace(min(periods_ms) * 0.9, max(periods_ms) * 1.1, 100)
    models = t.fitted
    for fibre, color in zip(FIBRE_NAMES, ("#1f77b4", "#d62728")):
        key = fibre.lower()
        ax.plot(
            pp,
            threshold_vpp(truth[f"{key}_rheobase_v"], truth[f"{key}_chronaxie_ms"], pp),
            "--",
            color=color,
            lw=1,
            label=f"{fibre}: true threshold",
        )
        m = models[fibre]
        ax.plot(
            pp,
            m.threshold_vpp(pp),
            "-",
            color=color,
            label=f"{fibre}: fitted (Rb {m.rheobase_v:.3f} V, c {m.chronaxie_ms * 1e3:.0f} µs)",
        )
    colors = np.array(["#7f7f7f", "#1f77b4", "#d62728"])
    jitter = (np.arange(len(v)) % 5 - 2) * 0.015
    ax.scatter(p * (1 + jitter), v, c=colors[resp], s=14, zorder=3)
    for k in range(min(len(v), 12)):
        ax.annotate(str(k + 1), (p[k] * (1 + jitter[k]), v[k]), fontsize=7, xytext=(3, 2), textcoords="offset points")
    for r, lab in enumerate(("no spike", "MGF", "MGF + LGF")):
        ax.plot([], [], "o", color=colors[r], label=f"response: {lab}")
    ax.set(
        xscale="log",
        xlabel="pulse period (ms; phase d = period / 2)",
        ylabel="stimulus (V$_{pp}$)",
        title=f"One closed-loop session (worm {run.worm}): {len(v)} pulses after {run.n_templates} templates"
        "\n(numbers: the first 12 choices)",
    )
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    return fig


def selective_figure(summary: dict, match_fraction: float):
    """Share of worms on which each design's lowest-charge MGF-alone stimulus matches exhaustive search."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (method, (color, _)) in enumerate(METHOD_STYLE.items()):
        m = summary[method].matches
        ax.bar(i, m.mean(), color=color)
        ax.text(i, m.mean() + 0.02, f"{m.sum()}/{len(m)}", ha="center")
    ax.axhline(match_fraction, color="k", ls=":", lw=1, label=f"claim: ≥ {match_fraction:.0%}")
    ax.set(
        xticks=range(3),
        xticklabels=[lab for _, lab in METHOD_STYLE.values()],
        ylim=(0, 1.1),
        ylabel="share of worms",
        title="Selective recruitment: lowest-charge MGF-alone stimulus\nmatches exhaustive search",
    )
    ax.legend(frameon=False, loc="lower right")
    return fig
