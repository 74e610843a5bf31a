"""The simulated earthworm: determinism, chunking, recruitment, conduction, artefact, thresholds, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.rig.simulator.worm import BLOCK, FIBRES, Earthworm, strength_duration_threshold
from labkit.rig.simulator.worm_params import WormParams

FS = 30000.0
QUIET = dict(noise_uv=0.0, mains_uv=0.0, spontaneous_rate_hz=0.0)


def sub_and_supra(worm, period_ms):
    """Voltages below MGF, between MGF and LGF, and above LGF threshold, each 6 jitter SDs clear."""
    margin = 6 * worm.params.threshold_jitter_cv
    mgf, lgf = worm.threshold_vpp("MGF", period_ms), worm.threshold_vpp("LGF", period_ms)
    between = np.sqrt(mgf * lgf)
    assert mgf * (1 + margin) < between < lgf * (1 - margin), "thresholds too close for a clean test"
    return mgf * (1 - margin), between, lgf * (1 + margin)


def test_defaults_match_the_notes_recruitment_window():
    worm = Earthworm()
    assert isinstance(worm.params, WormParams)
    for period_ms in (2.0, 3.0, 6.7):
        mgf, lgf = worm.threshold_vpp("MGF", period_ms), worm.threshold_vpp("LGF", period_ms)
        assert 2.0 < mgf < lgf < 6.0
    pos = worm.electrode_positions_mm
    assert pos.shape == (4,) and np.all(np.diff(pos) > 0) and pos[0] > 0


# ---- determinism ---------------------------------------------------------------------------------------

PULSES = [(0.3, 5.0, 3.0), (1.09, 4.0, 2.0), (1.25, 1.0, 6.7)]  # the second straddles the first block edge
N_TOTAL = BLOCK + 9000


def reference(seed=4, **kw):
    worm = Earthworm(FS, seed, spontaneous_rate_hz=3.0, **kw)
    for p in PULSES:
        worm.deliver(*p)
    return worm, worm.acquire(0, N_TOTAL)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, N_TOTAL - 1), min_size=1, max_size=8, unique=True))
def test_acquire_is_independent_of_chunking(cuts):
    _, expected = reference()
    worm = Earthworm(FS, 4, spontaneous_rate_hz=3.0)
    pending, parts, edges = list(PULSES), [], [0, *sorted(cuts), N_TOTAL]
    for a, b in zip(edges, edges[1:]):
        while pending and pending[0][0] * FS < b:  # deliver just before the samples it affects
            worm.deliver(*pending.pop(0))
        parts.append(worm.acquire(a, b - a))
    assert np.array_equal(np.concatenate(parts), expected)


def test_simple_split_and_events():
    worm, whole = reference()
    again = Earthworm(FS, 4, spontaneous_rate_hz=3.0)
    for p in PULSES:
        again.deliver(*p)
    split = np.concatenate([again.acquire(0, 300), again.acquire(300, 700), again.acquire(1000, N_TOTAL - 1000)])
    assert np.array_equal(split, whole)
    assert worm.events() == again.events()
    kinds = {e["kind"] for e in worm.events()}
    assert kinds == {"pulse", "spike", "twitch"}
    assert any(e["kind"] == "spike" and e["cause"] == "spontaneous" for e in worm.events())


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = (reference(seed)[1] for seed in (4, 4, 5))
    assert a.dtype == np.float64 and a.shape == (N_TOTAL, 4)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_stimulus_touches_only_samples_from_t_s_on():
    t_s = 0.5000123  # between two samples
    first = int(np.ceil(t_s * FS))
    plain, stim = Earthworm(FS, 1), Earthworm(FS, 1)
    stim.deliver(t_s, 6.0, 3.0)
    diff = stim.acquire(0, 20000) - plain.acquire(0, 20000)
    assert np.all(diff[:first] == 0)
    assert np.abs(diff[first : first + 30]).max() > 1.0


def test_deliver_after_its_samples_were_acquired_is_refused():
    worm = Earthworm(FS, 1)
    worm.acquire(0, 3000)
    worm.deliver(3000 / FS, 4.0, 3.0)  # exactly the next sample: allowed
    with pytest.raises(ValueError, match="before the end of the samples already acquired"):
        worm.deliver(0.05, 4.0, 3.0)


# ---- physiology ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("period_ms", [2.0, 3.0, 6.7])
def test_recruitment_steps_none_mgf_both(period_ms):
    worm = Earthworm(FS, 7, **QUIET)
    low, mid, high = sub_and_supra(worm, period_ms)
    for k in range(15):
        assert worm.deliver(3 * k + 0.5, low, period_ms)["fibres"] == ()
        assert worm.deliver(3 * k + 1.5, mid, period_ms)["fibres"] == ("MGF",)
        assert worm.deliver(3 * k + 2.5, high, period_ms)["fibres"] == ("MGF", "LGF")


def test_response_after_the_artefact_grows_with_voltage():
    """Far pair, after the pulse: silent below threshold, then larger with every step (spikes + muscle)."""
    worm = Earthworm(FS, 7, **QUIET)
    vs = [*sub_and_supra(worm, 3.0), 6.0]
    for k, v in enumerate(vs):
        worm.deliver(k + 0.5, v, 3.0)
    data = worm.acquire(0, int(len(vs) * FS))
    window = [data[int((k + 0.5035) * FS) : int((k + 0.53) * FS), 3] for k in range(len(vs))]
    p2p = [np.ptp(w) for w in window]
    assert p2p[0] == 0
    assert p2p[1] > 50 and np.all(np.diff(p2p) > 0)


def test_arrival_times_follow_distance_over_velocity():
    worm = Earthworm(FS, 3, **QUIET, muscle_max_uv=0.0, artefact_uv_per_v=0.0)
    _, mid, high = sub_and_supra(worm, 3.0)
    worm.deliver(0.5, high, 3.0)
    spikes = [e for e in worm.events() if e["kind"] == "spike"]
    assert [s["fibre"] for s in spikes] == list(FIBRES)
    x_mm = worm.electrode_positions_mm
    for s in spikes:
        travel = np.asarray(s["arrival_s"]) - s["t_s"]
        assert np.all(np.diff(travel) > 0)
        np.testing.assert_allclose(travel, x_mm / 1e3 / s["velocity_m_s"], rtol=1e-9)
        assert s["t_s"] >= 0.5

    # the recorded waveform moves along the pairs at the MGF velocity (MGF alone: no LGF overlap)
    only_mgf = Earthworm(FS, 3, **QUIET, muscle_max_uv=0.0, artefact_uv_per_v=0.0)
    only_mgf.deliver(0.5, mid, 3.0)
    data = only_mgf.acquire(int(0.49 * FS), int(0.03 * FS))
    onset = np.argmax(data > 0.5 * data.max(axis=0), axis=0) / FS  # first half-height crossing per pair
    expected = (x_mm - x_mm[0]) / 1e3 / only_mgf.params.mgf_velocity_m_s
    np.testing.assert_allclose(onset - onset[0], expected, atol=1.01 / FS)


def test_artefact_is_linear_in_voltage_and_fades_with_distance():
    period_ms, t_s = 3.0, 0.5
    base = Earthworm(FS, 2).acquire(0, 20000)
    low = sub_and_supra(Earthworm(FS, 2), period_ms)[0]
    diffs = []
    for v in (low / 4, low / 2, low):
        worm = Earthworm(FS, 2)
        assert worm.deliver(t_s, v, period_ms)["fibres"] == ()
        diffs.append(worm.acquire(0, 20000) - base)
    np.testing.assert_allclose(diffs[1], 2 * diffs[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(diffs[2], 4 * diffs[0], rtol=1e-9, atol=1e-9)
    amp = np.abs(diffs[2]).max(axis=0)
    assert np.all(np.diff(amp) < 0) and amp[-1] > 0
    inside = np.flatnonzero(np.abs(diffs[2][:, 0]) > 0)
    assert inside[0] >= t_s * FS and inside[-1] < (t_s + period_ms / 1e3) * FS


def test_strength_duration_threshold():
    assert strength_duration_threshold(1.0, 0.06, 1.5) == pytest.approx(1.04)
    assert strength_duration_threshold(0.5, 0.4, 0.4) == pytest.approx(1.0)  # d = chronaxie: twice rheobase
    with pytest.raises(ValueError, match="phase_ms"):
        strength_duration_threshold(1.0, 0.06, 0.0)
    worm = Earthworm(FS, 0, threshold_jitter_cv=0.0, spontaneous_rate_hz=0.0)
    p = worm.params
    for k, period_ms in enumerate([0.1, 0.3, 3.0, 6.7]):
        th = 2 * p.mgf_rheobase_v * (1 + p.mgf_chronaxie_ms / (period_ms / 2))
        assert worm.threshold_vpp("MGF", period_ms) == pytest.approx(th)
        assert worm.deliver(k + 0.1, th * (1 - 1e-6), period_ms)["fibres"] == ()
        assert "MGF" in worm.deliver(k + 0.6, th * (1 + 1e-6), period_ms)["fibres"]


def test_readback_is_close_to_the_request_and_deterministic():
    out = [Earthworm(FS, s).deliver(0.1, 4.0, 3.0) for s in (9, 9, 10)]
    assert out[0] == out[1] and out[0] != out[2]
    for o in out:
        assert o["vpp_measured"] == pytest.approx(4.0, rel=0.05)
        assert o["period_ms_measured"] == pytest.approx(3.0, rel=0.05)


def test_spontaneous_spikes_poisson_and_direction():
    worm = Earthworm(FS, 11, spontaneous_rate_hz=0.5)
    spikes = [e for e in worm.events(t_stop_s=200.0) if e["kind"] == "spike"]
    assert all(e["cause"] == "spontaneous" and 0 <= e["t_s"] < 200 for e in spikes)
    for fibre, direction in (("MGF", 1), ("LGF", -1)):  # MGF from the head, LGF from the tail
        mine = [s for s in spikes if s["fibre"] == fibre]
        assert abs(len(mine) - 100) < 5 * 10  # Poisson(100): 5 SD
        assert all(np.all(direction * np.diff(s["arrival_s"]) > 0) for s in mine)
    assert Earthworm(FS, 11, spontaneous_rate_hz=0.0).events(t_stop_s=200.0) == []


def test_segment_strain_twitches_after_each_spike():
    worm = Earthworm(FS, 5, **QUIET)
    _, _, high = sub_and_supra(worm, 3.0)
    worm.deliver(1.0, high, 3.0)
    p = worm.params
    t = np.arange(0.0, 2.0, 0.002)
    strain = worm.segment_strain(t)
    assert strain.shape == (len(t), p.n_zones)
    assert np.all(strain[t < 1.0 + p.twitch_delay_ms / 1e3] == 0)
    assert np.all(strain <= 0)
    drive = worm.muscle_drive(high)
    assert strain.min() == pytest.approx(-2 * p.twitch_strain * drive, rel=0.02)  # MGF + LGF twitches
    assert np.abs(strain[-1]).max() < 1e-3  # relaxed again
    np.testing.assert_array_equal(worm.segment_strain(t[::-1]), strain[::-1])  # order of times is free
    twitches = [e for e in worm.events() if e["kind"] == "twitch"]
    assert len(twitches) == 2 and all(len(e["onset_s"]) == p.n_zones for e in twitches)
    distance = np.abs(worm.zone_centres_mm)  # from the stimulation site
    for e in twitches:  # later the farther the zone
        assert np.all(np.diff(np.asarray(e["onset_s"])[np.argsort(distance)]) >= 0)


# ---- errors --------------------------------------------------------------------------------------------


def test_unknown_parameter_names_it_and_lists_allowed():
    with pytest.raises(ValueError) as err:
        Earthworm(FS, 0, mgf_velocity=25.0)
    msg = str(err.value)
    assert "'mgf_velocity'" in msg and "did you mean 'mgf_velocity_m_s'" in msg
    assert "allowed:" in msg and "lgf_velocity_m_s" in msg and "pair_spacing_mm" in msg


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(mgf_velocity_m_s=-25.0), "mgf_velocity_m_s"),
        (dict(lgf_rheobase_v=0), "lgf_rheobase_v"),
        (dict(noise_uv=-1.0), "noise_uv"),
        (dict(n_zones=2.5), "n_zones"),
        (dict(threshold_jitter_cv=1.5), "threshold_jitter_cv"),
        (dict(pair_positions_mm=(20.0, 50.0, 35.0, 65.0)), "pair_positions_mm"),
        (dict(pair_positions_mm=(20.0, 35.0, 50.0, 200.0)), "pair_positions_mm"),
        (dict(pair_positions_mm=(2.0, 35.0)), "pair_positions_mm"),
        (dict(mains_hz=20000.0), "mains_hz"),
        (dict(fs_hz=0.0), "fs_hz"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_values_name_the_field(kw, field):
    with pytest.raises(ValueError, match=f"'{field}'.*allowed"):
        Earthworm(**kw)


def test_bad_calls():
    worm = Earthworm(FS, 0)
    for args, name in [
        ((-1.0, 4.0, 3.0), "t_s"),
        ((0.1, -4.0, 3.0), "vpp"),
        ((0.1, 4.0, 0.0), "period_ms"),
        ((0.1, float("nan"), 3.0), "vpp"),
    ]:
        with pytest.raises(ValueError, match=f"'{name}'"):
            worm.deliver(*args)
    with pytest.raises(ValueError, match="'start_index'"):
        worm.acquire(-1, 10)
    with pytest.raises(ValueError, match="'n'"):
        worm.acquire(0, 2.5)
    with pytest.raises(ValueError, match="allowed: MGF, LGF"):
        worm.threshold_vpp("XGF", 3.0)
    assert worm.acquire(5, 0).shape == (0, 4)
