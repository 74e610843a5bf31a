"""Conduction velocity with default arguments on recordings the rig simulator did not make.

The generator below uses numpy only (not labkit.rig.worm or labkit.rig.sim) and differs from the simulator on
purpose: the artefact is a sum of exponentials with a damped ringing (the simulator's is one sine cycle), its
size and sign change from trial to trial, stimuli fall between samples, the spike is a zero-area biphasic wave at
one arrival time per pair (the simulator's is the difference of two electrodes) and the pair positions differ.
Claim tested: the default call recovers the velocity within 5 %, and a recording without a travelling spike is
refused (ValueError / ImplausibleVelocityError with the diagnostics), never returned as a number.
"""

import numpy as np
import pytest

from labkit.rig import analysis as an

FS = 30000.0
POS = np.array([30.0, 45.0, 60.0, 75.0])      # pair positions, mm from the stimulation site
TOLERANCE = 0.05


def artefact_shape(t_ms, tau_ms, ring_khz=3.0):
    """Amplifier-recovery-like artefact, 0 before the stimulus: a fast exponential, a slower one of the other sign
    and a damped 3 kHz ringing, with a 30 µs rise. ``tau_ms`` sets how long it lasts (with τ = 1 ms and 4 mV it
    is above 10 µV for ~10 ms)."""
    t = np.maximum(t_ms, 0.0)
    h = (np.exp(-t / tau_ms) - 0.35 * np.exp(-t / (2.5 * tau_ms))
         + 0.4 * np.exp(-t / (0.6 * tau_ms)) * np.cos(2 * np.pi * ring_khz * t))
    return np.where(t_ms > 0, h * (1 - np.exp(-t / 0.03)), 0.0)


def biphasic(t_ms, width_ms):
    """A negative lobe then a wider positive one of the same area (no net charge), ``width_ms`` wide overall."""
    s = width_ms / 6
    return -np.exp(-0.5 * (t_ms / s) ** 2) + np.exp(-0.5 * ((t_ms - 2.2 * s) / (1.8 * s)) ** 2) / 1.8


def record(velocity_m_s, *, fs=FS, n_trials=24, noise_uv=4.0, tau_ms=0.5, artefact_uv=4000.0, latency_ms=1.0,
           spikes="travelling", flip=True, scale_sd=0.3, width_ms=0.7, spike_uv=70.0, seed=0):
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


def test_the_reported_case_default_arguments_with_a_decaying_artefact():
    # before the fix: 1.2e5 m/s (the artefact's onset was taken for the spike on every pair)
    x, stim, _ = record(17.3, tau_ms=0.6, seed=1)
    v = an.conduction_velocity(x, FS, POS, stim)
    assert abs(v - 17.3) / 17.3 < TOLERANCE, v


@pytest.mark.parametrize("velocity", [5.0, 10.0, 17.3, 25.0])
@pytest.mark.parametrize("tau_ms", [0.3, 0.6, 1.0])
@pytest.mark.parametrize("noise_uv", [3.0, 6.0, 12.0])
@pytest.mark.parametrize("flip", [True, False], ids=["polarity-flips", "fixed-polarity"])
def test_default_call_recovers_the_velocity(velocity, tau_ms, noise_uv, flip):
    seed = int(velocity * 10 + tau_ms * 70 + noise_uv + flip)
    x, stim, _ = record(velocity, tau_ms=tau_ms, noise_uv=noise_uv, flip=flip, seed=seed)
    v, d = an.conduction_velocity(x, FS, POS, stim, return_diagnostics=True)
    assert abs(v - velocity) / velocity < TOLERANCE, (v, d["problems"])
    assert d["problems"] == [] and d["n_used"] >= 8


@pytest.mark.parametrize("name, velocity, kwargs", [
    ("fast MGF, spikes overlapping between pairs", 40.0, dict(width_ms=1.0)),
    ("10 mV artefact lasting ~20 ms", 17.3, dict(artefact_uv=10000.0, tau_ms=2.0, noise_uv=3.0)),
    ("short latency, spikes inside the artefact", 25.0, dict(latency_ms=0.3)),
    ("20 kS/s", 17.3, dict(fs=20000.0)),
    ("5 trials", 25.0, dict(n_trials=5)),
    ("no artefact at all", 17.3, dict(artefact_uv=0.0)),
    ("noisy: 20 µV rms", 10.0, dict(noise_uv=20.0, spike_uv=100.0)),
])
def test_default_call_on_harder_recordings(name, velocity, kwargs):
    fs = kwargs.get("fs", FS)
    x, stim, _ = record(velocity, seed=3, **kwargs)
    v = an.conduction_velocity(x, fs, POS, stim)
    assert abs(v - velocity) / velocity < TOLERANCE, (name, v)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("flip", [True, False])
def test_artefact_and_noise_without_spikes_is_refused(seed, flip):
    x, stim, _ = record(17.3, spikes="none", flip=flip, seed=seed)
    with pytest.raises(ValueError, match="no trial had a spike.*trials used"):
        an.conduction_velocity(x, FS, POS, stim)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("flip", [True, False])
def test_spikes_at_random_times_are_refused_with_diagnostics(seed, flip):
    x, stim, _ = record(17.3, spikes="random", flip=flip, seed=seed)
    with pytest.raises(an.ImplausibleVelocityError, match="misfit") as err:
        an.conduction_velocity(x, FS, POS, stim)
    message, d = str(err.value), err.value.diagnostics
    assert "trials used" in message and "spread" in message and "misfit" in message
    assert d["residual_ms"] > an.MAX_FIT_RESIDUAL_MS and np.isfinite(err.value.velocity_m_s)
    with pytest.warns(an.ImplausibleVelocityWarning, match="misfit"):
        assert an.conduction_velocity(x, FS, POS, stim, on_implausible="warn") == err.value.velocity_m_s


def test_a_velocity_outside_the_giant_fibre_range_is_refused():
    x, stim, _ = record(90.0, latency_ms=1.5, seed=4)            # measured well, but no earthworm giant fibre
    with pytest.raises(an.ImplausibleVelocityError, match="outside 2–50 m/s") as err:
        an.conduction_velocity(x, FS, POS, stim)
    assert abs(err.value.velocity_m_s - 90.0) / 90.0 < TOLERANCE
    assert err.value.diagnostics["problems"] == [p for p in err.value.diagnostics["problems"] if "outside" in p]


@pytest.mark.parametrize("velocity", [10.0, 17.3, 25.0])
def test_the_same_stimulus_every_trial_is_recovered_or_refused(velocity):
    # the artefact's scale never changes: its template can only be told from the spikes across pairs
    x, stim, _ = record(velocity, flip=False, scale_sd=0.0, tau_ms=1.0, noise_uv=3.0, seed=int(velocity))
    try:
        v = an.conduction_velocity(x, FS, POS, stim)
    except an.ImplausibleVelocityError:
        return
    assert abs(v - velocity) / velocity < TOLERANCE, v
