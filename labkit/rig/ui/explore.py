"""Notebook 05a's explorer: browse the recorded sweeps of a mapping session.

Controls: the trial, and whether to overlay every other trial of the same voltage and period (grey) behind it. The
four recording pairs' band-passed, artefact-free traces (:func:`labkit.rig.analysis.sweep.spike_analysis`) are
stacked by position, with the first-spike arrivals (red) and the next spike's (orange) that the analysis found, and
the trial's stimulus, fibre and conduction velocity in the title.
"""

import ipywidgets as w
import numpy as np

from labkit.explore import Explorer

__all__ = ["sweep_explorer"]


def sweep_explorer(r: dict, trial: int = 0) -> Explorer:
    """The explorer over ``r``, the result of :func:`labkit.rig.experiments.mapping.analyse`, starting at ``trial``."""
    n_trials = len(r["vpp"])
    controls = {
        "trial": w.IntSlider(trial, min=0, max=n_trials - 1, description="trial", layout=w.Layout(width="520px")),
        "overlay": w.Checkbox(True, description="same stimulus, other trials (grey)", indent=False),
    }
    t, spikes, pos = r["t_ms"], r["spikes"], r["positions_mm"]
    gap = float(np.nanpercentile(np.abs(spikes), 99.5)) * 2.2

    def draw(fig, trial, overlay):
        ax = fig.subplots()
        same = np.flatnonzero(np.isclose(r["vpp"], r["vpp"][trial]) & np.isclose(r["period_ms"], r["period_ms"][trial]))
        for k in range(len(pos)):
            if overlay:
                for other in same[same != trial]:
                    ax.plot(t, spikes[other, :, k] + k * gap, color="0.8", lw=0.5)
            ax.plot(t, spikes[trial, :, k] + k * gap, color=f"C{k}", lw=0.9, label=f"pair {k + 1} ({pos[k]:g} mm)")
            for key, color in (("arrivals_ms", "red"), ("second_arrivals_ms", "orange")):
                if np.isfinite(r[key][trial, k]):
                    ax.plot(r[key][trial, k], k * gap, "o", color=color, ms=5)
        ax.set_yticks([k * gap for k in range(len(pos))], [f"pair {k + 1}\n{pos[k]:g} mm" for k in range(len(pos))])
        ax.plot([t[0] + 1, t[0] + 1], [-gap / 2, -gap / 2 + 100], color="k", lw=2)
        ax.text(t[0] + 1.5, -gap / 2 + 50, "100 µV", va="center", fontsize=8)
        ax.axvline(0, color="0.5", ls=":", lw=0.8)
        ax.set_xlabel("time after the pulse onset (ms)")
        velocity = r["velocity_m_s"][trial]
        kind = (
            "template (sub-threshold) trial"
            if not r["sweep"][trial]
            else f"fibre {r['fibre'][trial] or 'none'}, {velocity:.1f} m/s"
            if np.isfinite(velocity)
            else "no propagated spike"
        )
        ax.set_title(
            f"trial {trial}: {r['vpp'][trial]:g} Vpp, {r['period_ms'][trial]:g} ms — {kind} "
            f"({len(same) - 1} other trial(s) at this stimulus)"
        )
        ax.grid(alpha=0.3, axis="x")

    return Explorer(
        controls,
        draw,
        title="Explore: the session's recorded sweeps (band-passed, artefact removed)",
        figsize=(10.0, 5.0),
    )
