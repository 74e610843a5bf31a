"""labkit.rig.analysis.validation: the blind checks of 05a's analysis give verdicts that mean what they say."""

import numpy as np
import pytest

from labkit.rig.analysis import validation as V
from labkit.rig.analysis.sweep import spike_analysis
from labkit.rig.experiments import mapping
from labkit.rig.experiments.mapping import MappingConfig
from labkit.rig.simulator.worm import Earthworm


def test_random_worms_are_seeded_within_their_ranges():
    worms = V.random_worms(5, seed=7)
    assert worms == V.random_worms(5, seed=7) and worms != V.random_worms(5, seed=8)
    for w in worms:
        assert all(lo <= w[k] <= hi for k, (lo, hi) in V.WORM_RANGES.items())


def test_verdicts():
    assert V.verdict(25.5, 25.0, 0.1) == "recovered"
    assert V.verdict(30.0, 25.0, 0.1) == "wrong"
    assert V.verdict(float("nan"), 25.0, 0.1) == "refused"


def test_simulated_recording_holds_every_pulse_and_its_read_back():
    cfg = MappingConfig.from_params(scale="smoke")
    plan = mapping.schedule(cfg)
    rec = V.simulated_recording(Earthworm(seed=3), plan, cfg.tail_s)
    assert rec["samples_uv"].shape == (int(round((plan[-1][0] / 1e6 + cfg.tail_s) * 30000)), 4)
    np.testing.assert_allclose(rec["stim_s"], [t / 1e6 for t, _, _ in plan])
    np.testing.assert_allclose(rec["vpp_measured"], rec["vpp"], rtol=0.05, atol=0.05)


@pytest.mark.parametrize("check", ["simulator", "synthetic"])
def test_the_checks_recover_known_velocities(check):
    cfg = MappingConfig.from_params(scale="smoke")
    cases = (
        V.simulator_check(cfg, mapping.schedule(cfg), 2, seed=11)
        if check == "simulator"
        else V.synthetic_check(3, 11, 0.1)
    )
    assert all(c["verdict"] in ("recovered", "refused") for c in cases)
    assert any(c["verdict"] == "recovered" for c in cases)


def test_a_recording_without_spikes_is_refused_not_a_number():
    cfg = MappingConfig.from_params(scale="smoke")
    worm = Earthworm(seed=5, mgf_spike_uv=0.0, lgf_spike_uv=0.0, muscle_max_uv=0.0)
    r = spike_analysis(**V.simulated_recording(worm, mapping.schedule(cfg), cfg.tail_s), cfg=cfg)
    assert not np.isfinite(r["velocity_m_s"][r["sweep"]]).any()
