"""Rig analysis on synthetic recordings built here, independently of the simulator (labkit.rig.simulator is not
used)."""

import numpy as np
import pytest

from labkit.rig.analysis.cleaning import artefact_template, auto_blank, blank, subtract_artefact
from labkit.rig.analysis.epochs import bandpass, epochs, subsample_offsets
from labkit.rig.analysis.propagation import (
    ImplausibleVelocityError,
    ImplausibleVelocityWarning,
    conduction_velocity,
    fibre_identity,
    fit_velocities,
    velocity_diagnostics,
)
from labkit.rig.analysis.response import dose_response, fit_strength_duration, response_amplitude
from labkit.rig.analysis.spikes import arrival_times, count_spikes, detect_spikes

POS = np.array([25.0, 40.0, 55.0, 70.0])  # pair centres, mm (not the simulator's)
SPACING = 8.0  # electrode spacing within a pair, mm


def spike(t, centre, width_s=0.6e-3):
    """One electrode's spike: a negative Gaussian bump then a smaller positive overshoot (not the simulator's)."""
    u = (t - centre) / (width_s / 6)
    return -np.exp(-(u**2) / 2) + 0.4 * np.exp(-((u - 2.5) ** 2) / 2)


def synthetic(
    velocity_m_s, *, fs=25000.0, n_trials=20, seed=0, artefact="exp", amplitude=60.0, noise=4.0, quiet_trials=0
):
    """4 differential pairs, stimuli every 0.3 s with a known velocity, white + 60 Hz noise and an artefact.

    ``artefact="exp"``: a 2 ms-ish exponential (amplifier recovery); ``"sine"``: one 4 ms sine cycle, linear in the
    trial's voltage. The first ``quiet_trials`` evoke no spike. Returns samples, stim times, voltages, truth arrivals.
    """
    g = np.random.default_rng(seed)
    duration = 0.3 * n_trials + 0.3
    t = np.arange(int(duration * fs)) / fs
    stim = 0.2 + 0.3 * np.arange(n_trials)
    vpp = g.uniform(2.0, 6.0, n_trials)
    x = noise * g.standard_normal((len(t), 4)) + 8.0 * np.sin(2 * np.pi * 60 * t[:, None] + g.uniform(0, 6, 4))
    arrivals = np.full((n_trials, 4), np.nan)
    for i, ts in enumerate(stim):
        lo, hi = np.searchsorted(t, [ts, ts + 0.03])
        tt = t[lo:hi] - ts
        gain = 3000.0 * np.exp(-POS / 18.0) * (-1) ** np.arange(4)
        if artefact == "exp":
            x[lo:hi] += np.outer(np.exp(-tt / 0.25e-3), gain)
        else:
            x[lo:hi] += np.outer(np.where(tt < 4e-3, np.sin(2 * np.pi * tt / 4e-3), 0.0), gain * vpp[i] / 4)
        if i < quiet_trials:
            continue
        t0 = ts + 1.5e-3 + 0.2e-3 * g.standard_normal()  # initiation latency varies from trial to trial
        for k, xk in enumerate(POS):
            front, back = t0 + (xk - SPACING / 2) / (velocity_m_s * 1e3), t0 + (xk + SPACING / 2) / (velocity_m_s * 1e3)
            x[lo:hi, k] += amplitude * (spike(t[lo:hi], front) - spike(t[lo:hi], back))
            arrivals[i, k] = (t0 + xk / (velocity_m_s * 1e3) - ts) * 1e3
    return x, stim, vpp, arrivals


@pytest.mark.parametrize("velocity", [12.0, 17.3, 28.0])
def test_conduction_velocity_with_blanking_within_10_percent(velocity):
    x, stim, _, _ = synthetic(velocity, seed=int(velocity))
    v = conduction_velocity(x, 25000.0, POS, stim, blank_ms=1.5)
    assert abs(v - velocity) / velocity < 0.10, v


def test_conduction_velocity_with_a_template_from_subthreshold_trials():
    velocity, fs = 22.0, 25000.0
    x, stim, vpp, _ = synthetic(velocity, artefact="sine", quiet_trials=6, n_trials=26, seed=3)
    e, t = epochs(x, fs, stim)
    quiet = np.arange(len(stim)) < 6
    template = artefact_template(e, vpp, quiet)
    art = vpp[:, None, None] * template[None]
    v = conduction_velocity(x[:], fs, POS, stim, artefact=art)
    assert abs(v - velocity) / velocity < 0.10, v
    # without removing the long artefact the arrivals are wrong: refused with the diagnostics, not a number
    with pytest.raises(ImplausibleVelocityError, match="misfit .* trials used"):
        conduction_velocity(x, fs, POS, stim, artefact=None)
    # the default estimates the artefact from the recording itself (no sub-threshold trials needed)
    assert abs(conduction_velocity(x, fs, POS, stim) - velocity) / velocity < 0.05


@pytest.mark.parametrize("velocity", [12.0, 17.3, 28.0])
def test_conduction_velocity_default_removes_a_decaying_artefact(velocity):
    # the reported defect: with default arguments this recording gave 10^4 m/s (no artefact removal, no blank)
    x, stim, _, _ = synthetic(velocity, seed=int(velocity))
    v, d = conduction_velocity(x, 25000.0, POS, stim, return_diagnostics=True)
    assert abs(v - velocity) / velocity < 0.05, v
    assert d["removal"] == "auto" and d["problems"] == [] and d["n_used"] >= 15
    assert np.all(d["blank_ms"] < 1.0)  # the residue of the subtraction is short


def legacy_velocity(x, fs, stim, artefact=None, blank_ms=0.0, window_ms=(-5.0, 20.0), band_hz=(200.0, 5000.0), k=5.0):
    """The manual pipeline of earlier versions, step by step."""
    e, t = epochs(x, fs, stim, window_ms)
    if artefact is not None:
        e = e - artefact
    if blank_ms > 0:
        e = blank(e, t, blank_ms)
    f = bandpass(e, fs, band_hz, axis=1)
    return float(np.nanmedian(fit_velocities(POS, arrival_times(f, t, k=k, search_ms=(blank_ms, None)))))


def test_explicit_artefact_or_blank_gives_the_earlier_results_exactly():
    fs = 25000.0
    x, stim, _, _ = synthetic(17.3, seed=17)
    for blank_ms in (1.5, 2.0):
        assert conduction_velocity(x, fs, POS, stim, blank_ms=blank_ms) == legacy_velocity(x, fs, stim, None, blank_ms)
    x, stim, vpp, _ = synthetic(22.0, artefact="sine", quiet_trials=6, n_trials=26, seed=3)
    e, _ = epochs(x, fs, stim)
    art = vpp[:, None, None] * artefact_template(e, vpp, np.arange(26) < 6)[None]
    assert conduction_velocity(x, fs, POS, stim, artefact=art) == legacy_velocity(x, fs, stim, art)
    assert conduction_velocity(x, fs, POS, stim, artefact=art, blank_ms=0.2, k=4.5) == legacy_velocity(
        x, fs, stim, art, 0.2, k=4.5
    )
    # a blank too short for this artefact: the same number as before, now refused (warned) with the diagnostics
    x, stim, _, _ = synthetic(17.3, seed=17)
    with pytest.raises(ImplausibleVelocityError, match="misfit") as err:
        conduction_velocity(x, fs, POS, stim, blank_ms=0.5)
    assert err.value.velocity_m_s == legacy_velocity(x, fs, stim, None, 0.5)
    with pytest.warns(ImplausibleVelocityWarning, match="trials used"):
        assert conduction_velocity(x, fs, POS, stim, blank_ms=0.5, on_implausible="warn") == err.value.velocity_m_s


def test_velocity_diagnostics_of_exact_and_of_random_arrivals():
    x = np.array([10.0, 25.0, 40.0, 55.0])
    g = np.random.default_rng(0)
    t0 = 1.0 + 0.1 * g.standard_normal(12)
    exact = t0[:, None] + x[None] / 20.0
    d = velocity_diagnostics(x, exact)
    assert d["velocity_m_s"] == pytest.approx(20.0) and d["residual_ms"] < 1e-12 and d["problems"] == []
    assert d["n_used"] == d["n_fitted"] == 12 and d["spread"] < 1e-9
    d = velocity_diagnostics(x, g.uniform(1.0, 15.0, (12, 4)))
    assert d["problems"] and d["residual_ms"] > 1.0
    d = velocity_diagnostics(x, exact / 100)  # 2000 m/s: fits perfectly, but not a giant fibre
    assert len(d["problems"]) == 1 and "plausible range" in d["problems"][0]


def test_subsample_offsets_say_where_the_stimulus_falls_in_its_epoch():
    fs = 1000.0
    x = np.zeros((100, 1))
    x[[20, 52], 0] = 1.0
    stim = np.array([0.0203, 0.0517])  # 0.3 sample after sample 20, 0.3 sample before sample 52
    e, t = epochs(x, fs, stim, (-5.0, 5.0))
    np.testing.assert_allclose(subsample_offsets(stim, fs, (-5.0, 5.0)), [0.3, -0.3], atol=1e-9)
    assert np.all(e[:, t == 0, 0] == 1.0)


def test_auto_blank_ends_where_the_residue_enters_the_noise_band():
    g = np.random.default_rng(1)
    t = np.arange(-5.0, 10.0, 1 / 30)
    e = g.standard_normal((30, len(t), 2))
    e[:, t >= 0, 0] += 200 * np.exp(-t[t >= 0] / 0.4)[None]  # 200σ decaying with τ = 0.4 ms: ~2.1 ms to 2.5σ
    end = auto_blank(e, t)
    assert 1.6 < end[0] < 2.6 and end[1] < 0.1


def test_artefact_subtraction_leaves_only_noise_on_quiet_trials():
    fs = 25000.0
    x, stim, vpp, _ = synthetic(20.0, artefact="sine", quiet_trials=12, n_trials=12, seed=4)
    e, t = epochs(x, fs, stim)
    template = artefact_template(e[:6], vpp[:6], np.ones(6, bool))
    clean = subtract_artefact(e[6:], template, vpp[6:])
    during = (t >= 0) & (t < 4)
    assert np.abs(e[6:, during, 0]).max() > 500
    assert np.abs(clean[:, during]).max() < 40  # noise (4 µV white + 8 µV hum) of two trials, not mV


def test_blank_draws_a_straight_line():
    e = np.random.default_rng(0).normal(size=(2, 50, 4))
    t = np.arange(50) * 0.1 - 1.0
    b = blank(e, t, 2.0)
    inside = (t >= 0) & (t < 2.0)
    np.testing.assert_allclose(np.diff(b[:, inside], 2, axis=1), 0, atol=1e-12)
    np.testing.assert_array_equal(b[:, ~inside], e[:, ~inside])


def test_arrival_times_are_sub_sample_precise():
    fs, velocity = 25000.0, 20.0
    x, stim, _, truth = synthetic(velocity, noise=2.0, seed=5)
    e, t = epochs(x, fs, stim)
    f = bandpass(blank(e, t, 2.0), fs, axis=1)
    got = arrival_times(f, t, search_ms=(2.0, None))
    offset = np.nanmedian(got - truth)  # the feature's fixed offset from the pair centre
    err = got - truth - offset
    assert np.all(np.isfinite(got))
    assert np.sqrt(np.mean(err**2)) < 0.25 * 1e3 / fs  # a quarter of a 40 µs sample


def test_bandpass_is_zero_phase_and_removes_hum_and_drift():
    fs = 30000.0
    t = np.arange(30000) / fs
    pulse = np.exp(-(((t - 0.5) / 2e-4) ** 2))
    x = pulse + 5 * np.sin(2 * np.pi * 50 * t) + 3 * t
    y = bandpass(x[:, None], fs, (200.0, 5000.0))[:, 0]
    assert abs(np.argmax(y) - np.argmax(pulse)) <= 1
    assert np.abs(y[3000:12000]).max() < 0.01


def test_detect_spikes_finds_each_spike_once():
    fs = 30000.0
    g = np.random.default_rng(1)
    x = g.normal(0, 3, (60000, 2))
    times = np.array([0.1, 0.45, 0.4505, 1.2, 1.9])  # 0.4505 falls inside the dead time of 0.45
    for tt in times:
        i = int(tt * fs)
        x[i : i + 9, 0] += -60 * np.hanning(9)
    found = detect_spikes(x, fs, k=5.0, dead_ms=1.0)
    np.testing.assert_allclose(found[0], times[[0, 1, 3, 4]], atol=1e-3)
    assert len(found[1]) == 0


def test_count_spikes_and_response_amplitude():
    t = np.arange(0, 15, 0.05)
    y = np.zeros((3, len(t)))
    y[1, 40:45] = 50
    y[2, 40:45] = 50
    y[2, 100:104] = -40
    np.testing.assert_array_equal(count_spikes(y, t, sigma=1.0), [0, 1, 2])
    np.testing.assert_allclose(response_amplitude(y[:, :, None], t)[:, 0], [0, 50, 90])


def test_fibre_identity_by_speed():
    assert fibre_identity([25.0, 12.0, np.nan]).tolist() == ["MGF", "LGF", ""]


def test_dose_response_detects_a_monotonic_increase():
    v = np.repeat(np.linspace(2, 6, 9), 4)
    a = 20 + 10 * v + np.random.default_rng(0).normal(0, 5, len(v))
    d = dose_response(v, a)
    assert d["rho"] > 0.8 and d["p"] < 1e-6 and len(d["vpp"]) == 9


@pytest.mark.parametrize("rb, c", [(1.0, 0.06), (0.48, 0.36), (0.62, 0.445)])
def test_fit_strength_duration_recovers_known_parameters(rb, c):
    d = np.array([0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.35])
    v = rb * (1 + c / d) * (1 + 0.002 * np.random.default_rng(0).standard_normal(len(d)))
    got_rb, got_c = fit_strength_duration(d, v)
    assert abs(got_rb - rb) / rb < 0.01 and abs(got_c - c) / c < 0.03


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: conduction_velocity(np.zeros((100, 3)), 30000.0, POS, [0.001]), "samples"),
        (lambda: conduction_velocity(np.zeros((1000, 4)), 30000.0, POS[::-1], [0.01]), "electrode_positions_mm"),
        (lambda: conduction_velocity(np.zeros((1000, 4)), -1.0, POS, [0.01]), "fs"),
        (lambda: conduction_velocity(np.zeros((1000, 4)), 30000.0, POS, [10.0]), "stim_times_s"),
        (lambda: conduction_velocity(np.zeros((30000, 4)), 30000.0, POS, [0.1], blank_ms=-1), "blank_ms"),
        (lambda: conduction_velocity(np.zeros((30000, 4)), 30000.0, POS, [0.1], artefact="template"), "artefact"),
        (lambda: conduction_velocity(np.zeros((30000, 4)), 30000.0, POS, [0.1], window_ms=(-1.0, 20.0)), "window_ms"),
        (
            lambda: conduction_velocity(np.zeros((30000, 4)), 30000.0, POS, [0.1], on_implausible="ignore"),
            "on_implausible",
        ),
        (
            lambda: conduction_velocity(np.zeros((30000, 4)), 30000.0, POS, [0.1], plausible_m_s=(50, 2)),
            "plausible_m_s",
        ),
        (lambda: conduction_velocity(np.zeros((30000, 4)), 30000.0, POS, [0.1], blank_ms=0), "no trial had a spike"),
        (lambda: conduction_velocity(np.full((30000, 4), np.nan), 30000.0, POS, [0.1]), "samples"),
        (lambda: conduction_velocity(np.zeros((30000, 4)), 30000.0, POS, [0.1]), "no trial had a spike"),
        (lambda: bandpass(np.zeros((100, 1)), 30000.0, (200.0, 20000.0)), "band_hz"),
        (lambda: fit_strength_duration([1.0], [1.0]), "durations_ms"),
        (lambda: fit_strength_duration([1.0, 2.0], [1.0, -1.0]), "thresholds_v"),
        (lambda: artefact_template(np.zeros((2, 5, 4)), [1.0, 1.0], [False, False]), "quiet"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
