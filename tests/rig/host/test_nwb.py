import json

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from labkit.rig.host.nwb import STIM_SAMPLES_PER_CYCLE, session_to_nwb, validate_nwb
from labkit.rig.host.recording import Pulse, SessionError, SessionWriter
from labkit.rig.host.search_log import TRIAL_COLUMNS, SearchTrialWriter, load_search_trials
from labkit.rig.host.session_reader import load_session

FS = 2000.0
SCALE = 0.195
FIRST = 10_000  # device sample counter at the first row
POSITIONS = [30.0, 45.0, 60.0, 75.0]
BLOCK = 200
PULSES = [Pulse(1, 5.05, 3.0, 2.9, 4.0, 4.1), Pulse(2, 5.3, 5.0, 4.8, 2.5, 2.6), Pulse(3, 5.55, 6.0, 5.7, 6.7, 6.6)]


def _session(folder, *, pulses=PULSES, close=True):
    """Four blocks of random counts with the third block lost in transit (a gap), then the pulses."""
    w = SessionWriter(
        folder,
        sample_rate_hz=FS,
        n_channels=4,
        scale_uv_per_count=SCALE,
        electrode_positions_mm=POSITIONS,
        first_sample_index=FIRST,
        device_info={"simulated": True},
    )
    rng = np.random.default_rng(1)
    for k in (0, 1, 3):
        w.write_block(FIRST + k * BLOCK, rng.integers(-2000, 2000, (BLOCK, 4), dtype=np.int16))
    for p in pulses:
        w.write_pulse(p)
    w.close({"frames": 3, "bad_frames": 0, "lost_frames": 1})
    if not close:  # what a crash leaves: everything flushed, no closed.json
        (folder / "closed.json").unlink()
    return folder


def _motion():
    t = 5.0 + np.arange(20) / 50.0
    return dict(
        frame_times_s=t,
        values=np.random.default_rng(2).random((20, 3)),
        zone_positions_mm=[20.0, 50.0, 80.0],
        description="relative segment width",
    )


def test_full_session_validates_and_round_trips(tmp_path):
    session = _session(tmp_path / "session")
    (tmp_path / "media").mkdir()
    video_file = tmp_path / "media" / "worm.avi"
    video_file.write_bytes(b"not really a video")
    frames = 5.0 + np.arange(20) / 50.0
    out = tmp_path / "nwb" / "worm.nwb"
    assert session_to_nwb(session, out, motion=_motion(), video=dict(file=video_file, frame_times_s=frames)) == out
    assert validate_nwb(out) == []
    _, meta = load_session(session)

    with NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        rec = f.acquisition["recording"]
        assert rec.data.dtype == np.int16
        np.testing.assert_array_equal(rec.data[:], meta["counts"])
        assert rec.conversion == pytest.approx(SCALE * 1e-6)
        assert rec.rate == FS and rec.starting_time == FIRST / FS
        assert "device clock" in rec.description

        el = f.electrodes.to_dataframe()
        assert list(el["position_mm"]) == POSITIONS
        assert list(el["x"]) == pytest.approx([p * 1000 for p in POSITIONS])  # µm, as the NWB schema asks
        assert list(el["pair"]) == ["P1", "P2", "P3", "P4"]
        assert el["reference"].str.startswith("P1-").iloc[0]
        assert set(el["group_name"]) == {"recording_pairs"} and el["group"].iloc[0].device.name == "raceway"
        assert list(rec.electrodes.data[:]) == [0, 1, 2, 3]

        pulses = f.intervals["delivered_pulses"].to_dataframe()
        assert list(pulses["request_id"]) == [1, 2, 3]
        assert list(pulses["waveform"]) == ["bipolar_sine"] * 3
        assert list(pulses["aborted"]) == [False] * 3
        for field in ("t_start_s", "vpp_requested", "vpp_measured", "period_ms_requested", "period_ms_measured"):
            assert list(pulses[field]) == [getattr(p, field) for p in PULSES]
        np.testing.assert_allclose(pulses["start_time"], [p.t_start_s for p in PULSES])
        np.testing.assert_allclose(pulses["stop_time"], [p.t_start_s + p.period_ms_measured / 1000 for p in PULSES])

        stim = f.stimulus["stimulus_voltage"]
        n = STIM_SAMPLES_PER_CYCLE + 1
        assert stim.unit == "volts" and len(stim.data) == len(stim.timestamps) == 3 * n
        ts, v = stim.timestamps[:], stim.data[:]
        assert np.all(np.diff(ts) > 0)
        for i, p in enumerate(PULSES):
            ref = pulses["timeseries"].iloc[i][0]
            assert (ref.idx_start, ref.count) == (i * n, n)
            seg_t, seg_v = ts[i * n : (i + 1) * n], v[i * n : (i + 1) * n]
            assert seg_t[0] == p.t_start_s and seg_t[-1] == pytest.approx(p.t_start_s + p.period_ms_measured / 1000)
            assert seg_v[0] == seg_v[-1] == 0.0
            assert seg_v.max() - seg_v.min() == pytest.approx(p.vpp_measured, rel=1e-5)
            assert seg_v[n // 4] > 0 > seg_v[3 * n // 4]  # positive phase first
            assert abs(seg_v.sum()) < 1e-4  # charge-balanced

        gaps = f.invalid_times.to_dataframe()
        assert list(gaps["start_index"]) == [FIRST + 2 * BLOCK] and list(gaps["n_samples"]) == [BLOCK]
        assert gaps["start_time"].iloc[0] == pytest.approx((FIRST + 2 * BLOCK) / FS)
        assert gaps["stop_time"].iloc[0] == pytest.approx((FIRST + 3 * BLOCK) / FS)
        assert not rec.data[2 * BLOCK : 3 * BLOCK].any()

        summary = json.loads(f.notes.splitlines()[-1])
        assert summary["closed_cleanly"] is True
        assert summary["counters"] == {"frames": 3, "bad_frames": 0, "lost_frames": 1}

        behavior = f.processing["behavior"]
        motion = behavior["BehavioralTimeSeries"]["segment_motion"]
        np.testing.assert_array_equal(motion.timestamps[:], _motion()["frame_times_s"])
        np.testing.assert_array_equal(motion.data[:], _motion()["values"])
        assert list(behavior["segment_motion_zones"]["position_mm"].data[:]) == [20.0, 50.0, 80.0]

        video = f.acquisition["video"]
        assert list(video.external_file[:]) == ["../media/worm.avi"] and video.format == "external"
        assert (out.parent / video.external_file[0]).read_bytes() == b"not really a video"
        np.testing.assert_array_equal(video.timestamps[:], frames)

        assert f.subject.species == "Lumbricus terrestris" and f.subject.description == "simulated"
        assert f.trials is None  # no search: no trials table
    assert sorted(p.name for p in out.parent.iterdir()) == ["worm.nwb"]


def test_interrupted_session_converts(tmp_path):
    out = session_to_nwb(_session(tmp_path / "s", close=False), tmp_path / "s.nwb", subject={"subject_id": "worm-7"})
    assert validate_nwb(out) == []
    with NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        summary = json.loads(f.notes.splitlines()[-1])
        assert summary["closed_cleanly"] is False and summary["counters"] == {}
        assert "interrupted" in f.notes
        assert f.subject.subject_id == "worm-7" and f.subject.species == "Lumbricus terrestris"
        assert len(f.intervals["delivered_pulses"]) == 3


def test_session_without_pulses_converts(tmp_path):
    out = session_to_nwb(_session(tmp_path / "s", pulses=[]), tmp_path / "s.nwb")
    assert validate_nwb(out) == []
    with NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        assert len(f.intervals["delivered_pulses"]) == 0
        assert len(f.stimulus["stimulus_voltage"].data) == 0
        assert "behavior" not in f.processing


def test_existing_file_is_never_overwritten(tmp_path):
    out = tmp_path / "s.nwb"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        session_to_nwb(_session(tmp_path / "s"), out)
    assert out.read_bytes() == b"precious"


def test_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    session = _session(tmp_path / "s")
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    seen = []

    def boom(self, *args, **kwargs):
        seen.extend(out_dir.iterdir())  # the temporary file exists by now
        raise OSError("disk full")

    monkeypatch.setattr(NWBHDF5IO, "write", boom)
    with pytest.raises(OSError, match="disk full"):
        session_to_nwb(session, out_dir / "s.nwb")
    assert seen and list(out_dir.iterdir()) == []


def test_bad_inputs_are_named(tmp_path):
    session = _session(tmp_path / "s")
    bad_motion = _motion() | {"values": np.zeros((20, 2))}
    with pytest.raises(ValueError, match="motion values must have shape"):
        session_to_nwb(session, tmp_path / "a.nwb", motion=bad_motion)
    with pytest.raises(FileNotFoundError, match="video file"):
        session_to_nwb(session, tmp_path / "a.nwb", video=dict(file=tmp_path / "nope.avi", frame_times_s=[0.0, 1.0]))
    with pytest.raises(FileNotFoundError, match="no such NWB file"):
        validate_nwb(tmp_path / "a.nwb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def _search_trial(k: int, p: Pulse, estimate: float) -> dict:
    """Trial k of a search on pulse ``p``: the MGF fired from trial 1 on; estimates NaN (undefined) on trial 0."""
    return {
        "trial": k,
        "t_start_s": p.t_start_s,
        "t_stop_s": p.t_start_s + 0.02,
        "vpp_requested": p.vpp_requested,
        "period_ms_requested": p.period_ms_requested,
        "vpp_measured": p.vpp_measured,
        "period_ms_measured": p.period_ms_measured,
        "template": k == 0,
        "mgf_fired": k > 0,
        "lgf_fired": False,
        **{
            f"{f}_{key}": estimate
            for f in ("mgf", "lgf")
            for key in ("rheobase_v", "rheobase_se_v", "chronaxie_ms", "chronaxie_se_ms")
        },
    }


def test_search_trials_become_the_nwb_trials_table(tmp_path):
    session = _session(tmp_path / "s")
    writer = SearchTrialWriter(session)
    trials = [_search_trial(k, p, float("nan") if k == 0 else 1.0 + k / 10) for k, p in enumerate(PULSES)]
    for trial in trials:
        writer.write(trial)
    writer.close()
    assert '"mgf_rheobase_v": null' in (session / "search_trials.jsonl").read_text().splitlines()[0]
    out = session_to_nwb(session, tmp_path / "s.nwb")
    assert validate_nwb(out) == []
    with NWBHDF5IO(str(out), "r") as io:
        table = io.read().trials.to_dataframe()
    assert list(table.index) == [0, 1, 2] and set(TRIAL_COLUMNS) <= set(table.columns)
    np.testing.assert_allclose(table["start_time"], [p.t_start_s for p in PULSES])
    np.testing.assert_allclose(table["stop_time"], [p.t_start_s + 0.02 for p in PULSES])
    for name in ("vpp_requested", "period_ms_requested", "vpp_measured", "period_ms_measured"):
        np.testing.assert_allclose(table[name], [getattr(p, name) for p in PULSES])
    assert list(table["template"]) == [True, False, False] and list(table["mgf_fired"]) == [False, True, True]
    assert np.isnan(table["mgf_rheobase_v"].iloc[0]) and list(table["lgf_chronaxie_se_ms"])[1:] == [1.1, 1.2]


def test_search_trial_lines_are_checked_on_writing_and_reading(tmp_path):
    session = _session(tmp_path / "s", close=False)  # an interrupted session
    writer = SearchTrialWriter(session)
    with pytest.raises(SessionError, match="'vpp_requested' must be a finite number > 0, got -1"):
        writer.write(_search_trial(0, PULSES[0], 1.0) | {"vpp_requested": -1})
    writer.write(_search_trial(0, PULSES[0], 1.0))
    writer.close()
    with pytest.raises(FileExistsError, match="one search per session folder"):
        SearchTrialWriter(session)
    path = session / "search_trials.jsonl"
    with open(path, "a") as f:
        f.write('{"trial": 1, "t_sta')  # torn by a crash: skipped silently
    out = session_to_nwb(session, tmp_path / "s.nwb")
    assert validate_nwb(out) == []
    with NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        assert len(f.trials) == 1 and "Skipped unreadable search_trials.jsonl line 2" in f.notes
    path.write_text(
        json.dumps(_search_trial(1, PULSES[1], 1.0)) + "\n" + json.dumps(_search_trial(1, PULSES[2], 1.0)) + "\n"
    )
    with pytest.raises(SessionError, match=r"search_trials.jsonl, line 2: 'trial' must increase"):
        load_search_trials(session, crash_possible=False)
    assert load_search_trials(tmp_path, crash_possible=False) == ([], [])  # no search: nothing
