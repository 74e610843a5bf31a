"""Notebook 05a's analysis of a stimulus sweep: every trial's first and next spike, their velocities and fibres, the
spikes recruited and the compound response, with the artefact removed by a template from sub-threshold pulses.

Steps (:func:`spike_analysis`): stimulus-locked epochs (labkit.rig.analysis.epochs); per pulse period, the artefact
template per volt from the *template* trials (V_pp within 1 mV of ``template_vpp``, below every fibre's threshold)
scaled by each trial's measured V_pp and subtracted, the template kept for the longest measured pulse plus
0.2 ms (ours; labkit.rig.analysis.cleaning); band-pass; first-spike arrival times at k σ, σ inflated by
sqrt(1 + (V / V_template)² / n_templates) for the template's own noise where the template is non-zero (widened by
``_FILTER_SPREAD_MS`` for the band-pass's spread; outside it the subtraction adds no noise), and per-trial velocities
(labkit.rig.analysis.spikes, .propagation); the next spike after the first one's waveform (``dead_ms`` later) on the
3 far pairs (the LGF when recruited; the fibres' spikes still overlap on the nearest pair); whether a spike slower
than the first one is left once the first is cancelled between the two farthest pairs
(labkit.rig.analysis.cancellation: the LGF behind the MGF, also where their spikes overlap); distinct spikes on the
farthest pair; the compound response amplitude, peak-to-peak of the artefact-free ``amplitude_band_hz`` signal over
0 to the window's end, mean over pairs (labkit.rig.analysis.response).

It is the code path that labkit.rig.analysis.validation checks blind, and that notebook 05a runs on its NWB file
(labkit.rig.experiments.mapping.analyse).
"""

import numpy as np

from labkit.rig.analysis.cancellation import slower_spike_detected
from labkit.rig.analysis.cleaning import artefact_template, subtract_artefact
from labkit.rig.analysis.epochs import bandpass, epochs
from labkit.rig.analysis.propagation import fibre_identity, fit_velocities
from labkit.rig.analysis.response import response_amplitude
from labkit.rig.analysis.spikes import arrival_times, count_spikes, pair_noise

__all__ = ["spike_analysis"]

_ARTEFACT_MARGIN_MS = 0.2  # ours: the template is kept for the measured pulse duration plus this
_FILTER_SPREAD_MS = 1.0  # ours: the band-pass spreads the template's noise by less than this beyond its end


def spike_analysis(
    samples_uv, fs: float, positions_mm, stim_s, vpp, vpp_measured, period_ms, period_ms_measured, cfg
) -> dict:
    """The analysis of a sweep on arrays (a recording from any source; module docstring). ``stim_s`` relative to the
    first sample; ``cfg`` holds the analysis settings (labkit.rig.experiments.mapping.MappingConfig: ``window_ms``,
    ``template_vpp``, ``band_hz``, ``amplitude_band_hz``, ``threshold_k``, ``dead_ms``)."""
    pos = np.asarray(positions_mm, dtype=float)
    vpp, vpp_measured = np.asarray(vpp, dtype=float), np.asarray(vpp_measured, dtype=float)
    period_ms, period_ms_measured = np.asarray(period_ms, dtype=float), np.asarray(period_ms_measured, dtype=float)
    e, t = epochs(samples_uv, fs, stim_s, cfg.window_ms)
    template_trial = np.isclose(vpp, cfg.template_vpp, atol=1e-3)  # requests travel as float32
    clean = np.empty_like(e)
    n_templates, support_ms = np.zeros(len(stim_s)), np.zeros(len(stim_s))
    for period in np.unique(period_ms):
        rows = period_ms == period
        support_ms[rows] = period_ms_measured[rows].max() + _ARTEFACT_MARGIN_MS
        tpl = artefact_template(e[rows], vpp_measured[rows], template_trial[rows], t, duration_ms=support_ms[rows][0])
        clean[rows] = subtract_artefact(e[rows], tpl, vpp_measured[rows])
        n_templates[rows] = template_trial[rows].sum()
    spikes = bandpass(clean, fs, cfg.band_hz, axis=1)
    sigma = pair_noise(spikes[:, t < 0])
    # the template's noise, amplified by V / V_template, adds to the trial's where the template was subtracted
    near = (t[None, :] >= -_FILTER_SPREAD_MS) & (t[None, :] < support_ms[:, None] + _FILTER_SPREAD_MS)
    inflate = np.where(near, np.sqrt(1 + (vpp / cfg.template_vpp) ** 2 / n_templates)[:, None], 1.0)
    noise = sigma[None, None, :] * inflate[:, :, None]  # (n_trials, n_window, n_pairs)
    arrivals = arrival_times(spikes, t, k=cfg.threshold_k, sigma=noise)
    velocity = fit_velocities(pos, arrivals)
    # the next spike after the first one's waveform (LGF when recruited); the nearest pair is left out because the
    # two fibres' spikes still overlap there
    after = arrivals + cfg.dead_ms
    after[:, 0] = np.nan
    second = arrival_times(spikes, t, k=cfg.threshold_k, sigma=noise, search_ms=(after, None))
    second_velocity = fit_velocities(pos, second)
    slower = slower_spike_detected(spikes, t, pos, velocity, arrivals, noise, cfg.threshold_k)
    count = count_spikes(
        spikes[:, :, -1], t, noise[:, :, -1], k=cfg.threshold_k, dead_ms=cfg.dead_ms, window_ms=(0.0, cfg.window_ms[1])
    )
    compound = bandpass(clean, fs, cfg.amplitude_band_hz, axis=1)
    amplitude = response_amplitude(compound, t, (0.0, cfg.window_ms[1])).mean(axis=1)
    return {
        "t_ms": t,
        "spikes": spikes,
        "positions_mm": pos,
        "vpp": vpp,
        "period_ms": period_ms,
        "sweep": ~template_trial,
        "arrivals_ms": arrivals,
        "velocity_m_s": velocity,
        "fibre": fibre_identity(velocity),
        "second_arrivals_ms": second,
        "second_velocity_m_s": second_velocity,
        "second_fibre": fibre_identity(second_velocity),
        "slower_spike": slower,
        "spike_count": count,
        "amplitude_uv": amplitude,
    }
