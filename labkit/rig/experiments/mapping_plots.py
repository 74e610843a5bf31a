"""Figures of notebook 05a (the mapping session). Compute lives in labkit.rig.experiments.mapping and
labkit.rig.analysis; this module only draws. Every function takes the dict of
:func:`labkit.rig.experiments.mapping.analyse` (``r``) plus what it shows, and returns a Matplotlib figure."""

import matplotlib.pyplot as plt
import numpy as np

from labkit.rig.analysis.propagation import MGF_LGF_BOUNDARY_M_S

__all__ = [
    "ap_wave_figure",
    "velocity_figure",
    "dose_response_figure",
    "parameter_map_figure",
    "triggered_strain_figure",
    "correlation_figure",
    "kymograph_figure",
]

RECRUIT_COLORS = {0: "#7f7f7f", 1: "#1f77b4", 2: "#d62728"}
RECRUIT_LABELS = {0: "no spike", 1: "1 spike (MGF)", 2: "≥ 2 spikes (MGF + LGF)"}


def _recruit(count: np.ndarray) -> np.ndarray:
    return np.minimum(count, 2)


def ap_wave_figure(r: dict, trial: int, velocity_m_s: float, t_range_ms=(-1.0, 8.0)):
    """One trial's band-passed, artefact-free traces stacked by pair position, arrival times and the fitted wave."""
    t, pos = r["t_ms"], r["positions_mm"]
    keep = (t >= t_range_ms[0]) & (t <= t_range_ms[1])
    traces = r["spikes"][trial][keep]
    step = np.diff(pos).mean()
    scale = step / (1.2 * np.abs(traces).max())
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    arr = r["arrivals_ms"][trial]
    for k, x in enumerate(pos):
        ax.plot(t[keep], x + scale * traces[:, k], color="k", lw=0.9)
        if np.isfinite(arr[k]):
            ax.plot(
                arr[k],
                x + scale * np.interp(arr[k], t, r["spikes"][trial][:, k]),
                "o",
                color="#d62728",
                ms=5,
                label="arrival (first spike)" if k == 0 else None,
            )
    ok = np.isfinite(arr)
    if ok.sum() >= 2:
        a = np.mean(arr[ok] - pos[ok] / velocity_m_s)
        xs = np.array([pos[0] - step / 2, pos[-1] + step / 2])
        ax.plot(
            a + xs / velocity_m_s,
            xs,
            "--",
            color="#d62728",
            lw=1,
            label=f"wave at {velocity_m_s:.1f} m/s (recording's estimate)",
        )
    ax.set(
        xlabel="time after stimulus onset (ms)",
        ylabel="pair position from the stimulation site (mm)",
        title=f"The AP wave across the 4 pairs: {r['vpp'][trial]:g} V$_{{pp}}$, {r['period_ms'][trial]:g} ms pulse"
        "\n(band-passed, artefact removed; bar = 20 µV)",
    )
    ax.plot([t_range_ms[1] - 0.5] * 2, [pos[0] - step / 2, pos[0] - step / 2 + 20 * scale], color="k", lw=2)
    ax.legend(loc="upper left", frameon=False)
    return fig


def velocity_figure(r: dict, summary: dict):
    """Arrival time against position for every trial (least-squares fits) and the per-trial velocities of the first
    spike and of the next one (the LGF when recruited), with the simulator's ground truth."""
    pos, arr = r["positions_mm"], r["arrivals_ms"][r["sweep"]]
    v_first, v_second = summary["velocity_m_s"], summary["second_velocity_m_s"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 4))
    rel = arr - np.nanmean(arr - pos[None] / v_first, axis=1, keepdims=True)
    for row in rel:
        a.plot(pos, row, "o", color="#1f77b4", alpha=0.3, ms=4)
    a.plot(pos, pos / v_first, "-", color="#d62728", label=f"median fit: {v_first:.2f} m/s")
    a.plot(pos, pos / summary["truth_m_s"], "--", color="k", label=f"simulator's MGF: {summary['truth_m_s']:g} m/s")
    a.set(
        xlabel="pair position (mm)",
        ylabel="arrival time − trial offset (ms)",
        title="First spike: t = a + x / v (each trial its own a)",
    )
    a.legend(frameon=False)
    bins = np.linspace(5, 40, 71)
    for key, color, label in (
        ("velocity_m_s", "#1f77b4", "first spike"),
        ("second_velocity_m_s", "#ff7f0e", "next spike (3 far pairs)"),
    ):
        v = r[key][r["sweep"]]
        v = v[np.isfinite(v)]
        b.hist(v, bins=bins, color=color, alpha=0.8, label=f"{label}: {len(v)} trials")
    b.axvline(summary["truth_m_s"], color="k", ls="--", label="ground truth (MGF, LGF)")
    b.axvline(summary["lgf_truth_m_s"], color="k", ls="--")
    b.axvspan(5, MGF_LGF_BOUNDARY_M_S, color="#ff7f0e", alpha=0.08, label="identified as LGF (by speed)")
    b.set(
        xlabel="conduction velocity (m/s)",
        ylabel="trials",
        title=f"Fibre identity: medians {v_first:.1f} and {v_second:.1f} m/s",
    )
    b.legend(frameon=False, fontsize=8, loc="center right")
    return fig


def dose_response_figure(r: dict, dose: dict):
    """Compound response amplitude against stimulus voltage, coloured by the number of spikes recruited."""
    s = r["sweep"]
    v, amp, rec = r["vpp"][s], r["amplitude_uv"][s], _recruit(r["spike_count"][s])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    offsets = 0.08 * (np.argsort(np.argsort(r["period_ms"][s])) / max(s.sum() - 1, 1) - 0.5)
    for c in (0, 1, 2):
        m = rec == c
        ax.plot(v[m] + offsets[m], amp[m], "o", color=RECRUIT_COLORS[c], ms=4, alpha=0.8, label=RECRUIT_LABELS[c])
    ax.plot(dose["vpp"], dose["mean_uv"], "-", color="k", lw=1.2, label="mean per voltage")
    ax.set(
        xlabel="stimulus voltage (V$_{pp}$)",
        ylabel="response amplitude, peak-to-peak (µV)",
        title=f"Amplitude vs voltage: Spearman ρ = {dose['rho']:.2f}, p = {dose['p']:.1e}",
    )
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return fig


def parameter_map_figure(r: dict):
    """The mapping: mean response amplitude and mean recruited spikes per (voltage, period)."""
    s = r["sweep"]
    volts, periods = np.unique(r["vpp"][s]), np.unique(r["period_ms"][s])
    amp = np.full((len(periods), len(volts)), np.nan)
    count = np.full_like(amp, np.nan)
    for i, p in enumerate(periods):
        for j, v in enumerate(volts):
            m = s & (r["period_ms"] == p) & (r["vpp"] == v)
            if m.any():
                amp[i, j], count[i, j] = r["amplitude_uv"][m].mean(), _recruit(r["spike_count"][m]).mean()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    im = ax.imshow(
        amp, origin="lower", aspect="auto", cmap="viridis", extent=(-0.5, len(volts) - 0.5, -0.5, len(periods) - 0.5)
    )
    for i in range(len(periods)):
        for j in range(len(volts)):
            if np.isfinite(count[i, j]):
                ax.text(
                    j,
                    i,
                    f"{count[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="w" if amp[i, j] < np.nanmean(amp) else "k",
                )
    ax.grid(False)
    ax.set_xticks(range(len(volts)), [f"{v:g}" for v in volts])
    ax.set_yticks(range(len(periods)), [f"{p:g}" for p in periods])
    ax.set(
        xlabel="stimulus voltage (V$_{pp}$)",
        ylabel="pulse period (ms)",
        title="Stimulation map: colour = mean amplitude, number = mean spikes recruited",
    )
    fig.colorbar(im, ax=ax, label="response amplitude (µV)")
    return fig


def triggered_strain_figure(r: dict):
    """Spike-triggered strain per body zone (trials with a spike) and the mean strain with and without a spike."""
    spiked = r["sweep"] & (r["spike_count"] > 0)
    quiet = r["sweep"] & (r["spike_count"] == 0)
    lags, zones = r["lags_s"], r["zone_mm"]
    avg = r["strain_epochs"][spiked].mean(axis=0)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 4))
    a.grid(False)
    lim = np.abs(avg).max()
    im = a.imshow(
        avg.T,
        origin="lower",
        aspect="auto",
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
        extent=(lags[0], lags[-1], zones[0], zones[-1]),
    )
    a.set(
        xlabel="time after stimulus (s)",
        ylabel="zone centre from the stimulation site (mm)",
        title=f"Spike-triggered strain ({spiked.sum()} trials)",
    )
    fig.colorbar(im, ax=a, label="strain L/L$_{rest}$ − 1")
    for m, label, color in ((spiked, "trials with a spike", "#d62728"), (quiet, "trials without", "#7f7f7f")):
        if m.any():
            mean = r["strain_epochs"][m].mean(axis=2)
            se = mean.std(axis=0) / np.sqrt(max(len(mean) - 1, 1))
            b.plot(lags, mean.mean(axis=0), color=color, label=f"{label} (n = {m.sum()})")
            b.fill_between(lags, mean.mean(axis=0) - 2 * se, mean.mean(axis=0) + 2 * se, color=color, alpha=0.2, lw=0)
    b.axvline(0, color="k", lw=0.6)
    b.set(xlabel="time after stimulus (s)", ylabel="mean strain over zones", title="Whole-body shortening (± 2 SE)")
    b.legend(frameon=False)
    return fig


def correlation_figure(r: dict, corr: dict, corr_spiking: dict):
    """Per-trial AP amplitude against the shortening that follows, coloured by voltage; trials without a spike as
    open circles. Title: Pearson r over all sweep trials and within the trials that fired a spike."""
    s = r["sweep"]
    fired = r["spike_count"] > 0
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    sc = ax.scatter(
        r["amplitude_uv"][s & fired],
        r["shortening"][s & fired],
        c=r["vpp"][s & fired],
        cmap="plasma",
        s=16,
        label="a spike on the farthest pair",
        vmin=r["vpp"][s].min(),
        vmax=r["vpp"][s].max(),
    )
    ax.scatter(
        r["amplitude_uv"][s & ~fired],
        r["shortening"][s & ~fired],
        facecolors="none",
        edgecolors=sc.cmap(sc.norm(r["vpp"][s & ~fired])),
        s=16,
        label="no spike",
    )
    fig.colorbar(sc, ax=ax, label="stimulus voltage (V$_{pp}$)")
    ax.legend(fontsize=8, loc="upper left")
    ax.set(
        xlabel="AP response amplitude (µV)",
        ylabel="peak shortening after the pulse (strain)",
        title=f"AP vs displacement: all trials r = {corr['r']:.2f} (p = {corr['p']:.1e}, n = {corr['n']});\n"
        f"trials with a spike only r = {corr_spiking['r']:.2f} (p = {corr_spiking['p']:.1e}, "
        f"n = {corr_spiking['n']})",
    )
    return fig


def kymograph_figure(kymo: np.ndarray, times_s: np.ndarray, pulse_times_s: np.ndarray, vpp: np.ndarray):
    """Midline intensity along the raceway over time; stimulus pulses marked."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.grid(False)
    ax.imshow(kymo, aspect="auto", cmap="gray", origin="upper", extent=(0, kymo.shape[1], times_s[-1], times_s[0]))
    shown = (pulse_times_s >= times_s[0]) & (pulse_times_s <= times_s[-1])
    for t, v in zip(pulse_times_s[shown], vpp[shown]):
        ax.axhline(t, color="#d62728", lw=0.8, ls="--")
        ax.text(kymo.shape[1] * 0.995, t, f"{v:g} V", color="#d62728", ha="right", va="bottom", fontsize=8)
    ax.set(
        xlabel="position along the raceway (px; head on the left)",
        ylabel="device time (s)",
        title="Kymograph of the midline: segments (stripes) shorten after each pulse",
    )
    return fig


def blind_figure(checks: dict, tolerance: float):
    """One panel per blind check (``checks``: {name: cases of ``labkit.rig.analysis.validation``}): estimated against
    true velocity, the ±``tolerance`` band shaded; wrong estimates in red; refusals as crosses on the bottom axis."""
    fig, axes = plt.subplots(1, len(checks), figsize=(5.2 * len(checks), 4.4), squeeze=False)
    for ax, (name, cases) in zip(axes[0], checks.items()):
        truth = np.array([c["truth_m_s"] for c in cases])
        estimate = np.array([c["estimate_m_s"] for c in cases])
        verdict = np.array([c["verdict"] for c in cases])
        lo, hi = 0.8 * truth.min(), 1.15 * truth.max()
        line = np.array([lo, hi])
        ax.fill_between(
            line, line * (1 - tolerance), line * (1 + tolerance), color="0.85", lw=0, label=f"±{tolerance:.0%}"
        )
        ax.plot(line, line, color="0.4", lw=1, ls="--")
        for kind, colour in (("recovered", "#1f77b4"), ("wrong", "#d62728")):
            rows = verdict == kind
            ax.scatter(truth[rows], estimate[rows], s=24, color=colour, zorder=3, label=f"{kind} ({rows.sum()})")
        refused = verdict == "refused"
        ax.scatter(
            truth[refused],
            np.full(refused.sum(), lo),
            marker="x",
            color="k",
            zorder=3,
            clip_on=False,
            label=f"refused ({refused.sum()})",
        )
        ax.set(
            xlim=(lo, hi),
            ylim=(lo, hi),
            xlabel="true conduction velocity (m/s)",
            ylabel="estimated conduction velocity (m/s)",
            title=name,
        )
        ax.set_aspect("equal")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
