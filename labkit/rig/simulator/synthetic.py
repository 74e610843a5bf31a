"""Recordings built without the rig simulator: a numpy-only generator of travelling giant-fibre spikes under a
stimulus artefact, for testing the analysis on data whose shape the analysis code was not written against.

It differs from ``labkit.rig.simulator.worm`` on purpose: the artefact is a sum of exponentials with a damped
ringing (the simulator's is one sine cycle), its size and sign change from trial to trial, stimuli fall between
samples, the spike is a zero-area biphasic wave at one arrival time per pair (the simulator's is the difference of
two electrodes), the pair positions differ (:data:`POS`), and so does the sample rate's constant (:data:`FS`, kept
apart from the simulator's on purpose).
"""

import numpy as np

__all__ = ["FS", "POS", "artefact_shape", "biphasic", "record"]

FS = 30000.0
POS = np.array([30.0, 45.0, 60.0, 75.0])  # pair positions, mm from the stimulation site


def artefact_shape(t_ms, tau_ms, ring_khz=3.0):
    """Amplifier-recovery-like artefact, 0 before the stimulus: a fast exponential, a slower one of the other sign
    and a damped 3 kHz ringing, with a 30 µs rise. ``tau_ms`` sets how long it lasts (with τ = 1 ms and 4 mV it
    is above 10 µV for ~10 ms)."""
    t = np.maximum(t_ms, 0.0)
    h = (
        np.exp(-t / tau_ms)
        - 0.35 * np.exp(-t / (2.5 * tau_ms))
        + 0.4 * np.exp(-t / (0.6 * tau_ms)) * np.cos(2 * np.pi * ring_khz * t)
    )
    return np.where(t_ms > 0, h * (1 - np.exp(-t / 0.03)), 0.0)


def biphasic(t_ms, width_ms):
    """A negative lobe then a wider positive one of the same area (no net charge), ``width_ms`` wide overall."""
    s = width_ms / 6
    return -np.exp(-0.5 * (t_ms / s) ** 2) + np.exp(-0.5 * ((t_ms - 2.2 * s) / (1.8 * s)) ** 2) / 1.8


def record(
    velocity_m_s,
    *,
    fs=FS,
    n_trials=24,
    noise_uv=4.0,
    tau_ms=0.5,
    artefact_uv=4000.0,
    latency_ms=1.0,
    spikes="travelling",
    flip=True,
    scale_sd=0.3,
    width_ms=0.7,
    spike_uv=70.0,
    seed=0,
):
    """(samples (n, 4) µV, stimulus times s, true arrival times (n_trials, 4) ms after each stimulus).

    Noise: white Gaussian ``noise_uv`` plus 5 µV of 50 Hz hum and a DC offset per pair. Stimuli every 0.25 s plus
    up to 2 ms, anywhere between samples. Artefact on pair k: ``artefact_uv`` exp(-(x_k - x_1) / 15 mm) with signs
    + - + -, times a trial scale 1 + ``scale_sd`` N(0, 1) and, with ``flip``, a random sign per trial (alternating
    stimulus polarity). Spikes: ``spike_uv`` (0.7–1.3× per pair, ±10 % per trial) biphasic waves at
    latency + x_k / v, the latency jittering by 0.1 ms from trial to trial; ``spikes="random"`` puts each one at a
    uniform random time in 1–15 ms instead, ``spikes="none"`` leaves them out.
    """
    g = np.random.default_rng(seed)
    stim = 0.1 + 0.25 * np.arange(n_trials) + g.uniform(0, 2e-3, n_trials)
    n = int((stim[-1] + 0.1) * fs)
    t = np.arange(n) / fs
    x = noise_uv * g.standard_normal((n, len(POS)))
    x += 5.0 * np.sin(2 * np.pi * 50 * t[:, None] + g.uniform(0, 2 * np.pi, len(POS))) + g.normal(0, 50, len(POS))
    gain = artefact_uv * np.exp(-(POS - POS[0]) / 15.0) * np.array([1, -1, 1, -1])
    amplitude = spike_uv * g.uniform(0.7, 1.3, len(POS))
    truth = np.full((n_trials, len(POS)), np.nan)
    for i, ts in enumerate(stim):
        lo, hi = int(ts * fs) - 5, int((ts + 0.03) * fs)
        tt = (t[lo:hi] - ts) * 1e3
        scale = (1 + scale_sd * g.standard_normal()) * (g.choice([-1, 1]) if flip else 1)
        x[lo:hi] += np.outer(artefact_shape(tt, tau_ms), gain * scale)
        if spikes == "none":
            continue
        t0 = latency_ms + 0.1 * g.standard_normal()
        for k, xk in enumerate(POS):
            truth[i, k] = t0 + xk / velocity_m_s if spikes == "travelling" else g.uniform(1.0, 15.0)
            x[lo:hi, k] += amplitude[k] * g.uniform(0.9, 1.1) * biphasic(tt - truth[i, k], width_ms)
    return x, stim, truth
