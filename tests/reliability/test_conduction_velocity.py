"""Conduction velocity with default arguments on recordings the rig simulator did not make.

The generator (``labkit.rig.simulator.synthetic``) uses numpy only (not the simulated worm or rig) and differs from the
simulator on purpose (its module docstring).
Claim tested: the default call recovers the velocity within 5 %, and a recording without a travelling spike is
refused (ValueError / ImplausibleVelocityError with the diagnostics), never returned as a number.
"""

import numpy as np
import pytest

from labkit.rig.analysis.propagation import (
    MAX_FIT_RESIDUAL_MS,
    ImplausibleVelocityError,
    ImplausibleVelocityWarning,
    conduction_velocity,
)
from labkit.rig.simulator.synthetic import FS, POS, record

TOLERANCE = 0.05


def test_the_reported_case_default_arguments_with_a_decaying_artefact():
    # before the fix: 1.2e5 m/s (the artefact's onset was taken for the spike on every pair)
    x, stim, _ = record(17.3, tau_ms=0.6, seed=1)
    v = conduction_velocity(x, FS, POS, stim)
    assert abs(v - 17.3) / 17.3 < TOLERANCE, v


@pytest.mark.parametrize("velocity", [5.0, 10.0, 17.3, 25.0])
@pytest.mark.parametrize("tau_ms", [0.3, 0.6, 1.0])
@pytest.mark.parametrize("noise_uv", [3.0, 6.0, 12.0])
@pytest.mark.parametrize("flip", [True, False], ids=["polarity-flips", "fixed-polarity"])
def test_default_call_recovers_the_velocity(velocity, tau_ms, noise_uv, flip):
    seed = int(velocity * 10 + tau_ms * 70 + noise_uv + flip)
    x, stim, _ = record(velocity, tau_ms=tau_ms, noise_uv=noise_uv, flip=flip, seed=seed)
    v, d = conduction_velocity(x, FS, POS, stim, return_diagnostics=True)
    assert abs(v - velocity) / velocity < TOLERANCE, (v, d["problems"])
    assert d["problems"] == [] and d["n_used"] >= 8


@pytest.mark.parametrize(
    "name, velocity, kwargs",
    [
        ("fast MGF, spikes overlapping between pairs", 40.0, dict(width_ms=1.0)),
        ("10 mV artefact lasting ~20 ms", 17.3, dict(artefact_uv=10000.0, tau_ms=2.0, noise_uv=3.0)),
        ("short latency, spikes inside the artefact", 25.0, dict(latency_ms=0.3)),
        ("20 kS/s", 17.3, dict(fs=20000.0)),
        ("5 trials", 25.0, dict(n_trials=5)),
        ("no artefact at all", 17.3, dict(artefact_uv=0.0)),
        ("noisy: 20 µV rms", 10.0, dict(noise_uv=20.0, spike_uv=100.0)),
    ],
)
def test_default_call_on_harder_recordings(name, velocity, kwargs):
    fs = kwargs.get("fs", FS)
    x, stim, _ = record(velocity, seed=3, **kwargs)
    v = conduction_velocity(x, fs, POS, stim)
    assert abs(v - velocity) / velocity < TOLERANCE, (name, v)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("flip", [True, False])
def test_artefact_and_noise_without_spikes_is_refused(seed, flip):
    x, stim, _ = record(17.3, spikes="none", flip=flip, seed=seed)
    with pytest.raises(ValueError, match="no trial had a spike.*trials used"):
        conduction_velocity(x, FS, POS, stim)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("flip", [True, False])
def test_spikes_at_random_times_are_refused_with_diagnostics(seed, flip):
    x, stim, _ = record(17.3, spikes="random", flip=flip, seed=seed)
    with pytest.raises(ImplausibleVelocityError, match="misfit") as err:
        conduction_velocity(x, FS, POS, stim)
    message, d = str(err.value), err.value.diagnostics
    assert "trials used" in message and "spread" in message and "misfit" in message
    assert d["residual_ms"] > MAX_FIT_RESIDUAL_MS and np.isfinite(err.value.velocity_m_s)
    with pytest.warns(ImplausibleVelocityWarning, match="misfit"):
        assert conduction_velocity(x, FS, POS, stim, on_implausible="warn") == err.value.velocity_m_s


def test_a_velocity_outside_the_giant_fibre_range_is_refused():
    x, stim, _ = record(90.0, latency_ms=1.5, seed=4)  # measured well, but no earthworm giant fibre
    with pytest.raises(ImplausibleVelocityError, match="outside 2–50 m/s") as err:
        conduction_velocity(x, FS, POS, stim)
    assert abs(err.value.velocity_m_s - 90.0) / 90.0 < TOLERANCE
    assert err.value.diagnostics["problems"] == [p for p in err.value.diagnostics["problems"] if "outside" in p]


@pytest.mark.parametrize("velocity", [10.0, 17.3, 25.0])
def test_the_same_stimulus_every_trial_is_recovered_or_refused(velocity):
    # the artefact's scale never changes: its template can only be told from the spikes across pairs
    x, stim, _ = record(velocity, flip=False, scale_sd=0.0, tau_ms=1.0, noise_uv=3.0, seed=int(velocity))
    try:
        v = conduction_velocity(x, FS, POS, stim)
    except ImplausibleVelocityError:
        return
    assert abs(v - velocity) / velocity < TOLERANCE, v
