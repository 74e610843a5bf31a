"""The mapping session of notebook 05a: schedule, a real driver session that is sample-exact across runs,
and its analysis from the NWB file."""

import numpy as np
import pytest

from labkit.config import ConfigError
from labkit.rig.experiments import mapping
from labkit.rig.experiments.mapping import MappingConfig
from labkit.rig.firmware.limits import SafetyLimits

TINY = dict(
    vpp_values=(3.0, 6.0),
    period_values_ms=(2.0, 6.7),
    repeats=1,
    template_repeats=1,
    rate_hz=2.0,
    speed=4.0,
    first_pulse_s=0.8,
)


def test_schedule_is_seeded_complete_and_on_the_sample_grid():
    cfg = MappingConfig.from_params(scale="quick", seed=3)
    plan = mapping.schedule(cfg)
    assert plan == mapping.schedule(MappingConfig.from_params(scale="quick", seed=3))
    assert plan != mapping.schedule(MappingConfig.from_params(scale="quick", seed=4))
    n_sweep = len(cfg.vpp_values) * len(cfg.period_values_ms) * cfg.repeats
    assert len(plan) == n_sweep + len(cfg.period_values_ms) * cfg.template_repeats
    onsets = np.array([t for t, _, _ in plan])
    gaps = np.diff(onsets) / 1e6
    assert np.all(onsets % 10_000 == 0) and onsets[0] == cfg.first_pulse_s * 1e6
    assert gaps.min() >= 0.8 / cfg.rate_hz - 0.01 and gaps.max() <= 1.2 / cfg.rate_hz + 0.01
    assert len(set(np.round(gaps, 2))) > 5  # jittered: the LED sync is unambiguous
    limits = SafetyLimits()
    assert all(0 < v <= limits.max_vpp and limits.min_period_ms <= p <= limits.max_period_ms for _, v, p in plan)


@pytest.mark.parametrize(
    "params, name",
    [
        (dict(template_vpp=2.0), "template_vpp"),
        (dict(period_values_ms=(0.1,)), "period_values_ms"),
        (dict(vpp_values=(12.0,)), "vpp_values"),
        (dict(rate_hz=5.0), "rate_hz"),
        (dict(speed=10.0), "speed"),
        (dict(velocity_tolerence=0.1), "velocity_tolerance"),
    ],
)
def test_config_rejects_bad_values(params, name):
    with pytest.raises(ConfigError, match=name):
        MappingConfig.from_params(scale="smoke", **params)


@pytest.fixture(scope="module")
def two_sessions(tmp_path_factory):
    cfg = MappingConfig.from_params(scale="smoke", seed=5, **TINY)
    root = tmp_path_factory.mktemp("mapping")
    return cfg, [mapping.run_session(cfg, root / f"run{i}") for i in range(2)]


def test_session_through_the_driver_gives_a_valid_nwb_file(two_sessions):
    cfg, (a, _) = two_sessions
    assert a["errors"] == [] and a["n_pulses"] == 6
    assert a["counters"]["lost_frames"] == 0 and a["counters"]["bad_frames"] == 0
    d = mapping.load_nwb(a["nwb"])
    np.testing.assert_array_equal(np.round(d["pulse_t_s"] * 1e6), [t for t, _, _ in mapping.schedule(cfg)])
    assert d["strain"].shape[1] == 30 and np.isfinite(d["strain"]).mean() > 0.95


def test_two_sessions_are_sample_exact_around_every_pulse(two_sessions):
    cfg, (a, b) = two_sessions
    da, db = mapping.load_nwb(a["nwb"]), mapping.load_nwb(b["nwb"])
    np.testing.assert_array_equal(da["pulse_t_s"], db["pulse_t_s"])
    for d in (da, db):
        first = np.rint((d["pulse_t_s"] - d["t0_s"]) * d["fs"]).astype(int)
        d["around"] = d["samples_uv"][first[:, None] + np.arange(-150, 600)]
    np.testing.assert_array_equal(da["around"], db["around"])
    np.testing.assert_array_equal(da["strain"], db["strain"])
    ra, rb = mapping.analyse(a["nwb"], cfg), mapping.analyse(b["nwb"], cfg)
    for key in ("arrivals_ms", "velocity_m_s", "amplitude_uv", "shortening", "spike_count"):
        np.testing.assert_array_equal(ra[key], rb[key])


def test_analysis_recovers_the_ground_truth_velocity(two_sessions):
    cfg, (a, _) = two_sessions
    r = mapping.analyse(a["nwb"], cfg)
    s = mapping.summarise(r, cfg)
    assert s["velocity_error"] < cfg.velocity_tolerance
    assert s["first_spike_mgf"] == s["trials_with_velocity"] >= 3
    assert np.all(r["spike_count"][~r["sweep"]] == 0)  # template pulses are sub-threshold
    assert np.all(r["shortening"][r["spike_count"] > 0] > 0.02)
    assert mapping.example_trial(r) in np.flatnonzero(r["vpp"] == 6.0)
