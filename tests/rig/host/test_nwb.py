import json

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from labkit.rig.host.nwb import STIM_SAMPLES_PER_CYCLE, session_to_nwb, validate_nwb
from labkit.rig.host.recording import Pulse, SessionWriter, load_session

FS = 2000.0
SCALE = 0.195
FIRST = 10_000                      # device sample counter at the first row
POSITIONS = [30.0, 45.0, 60.0, 75.0]
BLOCK = 200
PULSES = [Pulse(1, 5.05, 3.0, 2.9, 4.0, 4.1), Pulse(2, 5.3, 5.0, 4.8, 2.5, 2.6), Pulse(3, 5.55, 6.0, 5.7, 6.7, 6.6)]


def _session(folder, *, pulses=PULSES, close=True):
    """Four blocks of random counts with the third block lost in transit (a gap), then the pulses."""
    w = SessionWriter(folder, sample_rate_hz=FS, n_channels=4, scale_uv_per_count=SCALE,
                      electrode_positions_mm=POSITIONS, first_sample_index=FIRST, device_info={"simulated": True})
    rng = np.random.default_rng(1)
    for k in (0, 1, 3):
        w.write_block(FIRST + k * BLOCK, rng.integers(-2000, 2000, (BLOCK, 4), dtype=np.int16))
    for p in pulses:
        w.write_pulse(p)
    w.close({"frames": 3, "bad_frames": 0, "lost_frames": 1})
    if not close:                       # what a crash leaves: everything flushed, no closed.json
        (folder / "closed.json").unlink()
    return folder


def _motion():
    t = 5.0 + np.arange(20) / 50.0
    return dict(frame_times_s=t, values=np.random.default_rng(2).random((20, 3)),
                zone_positions_mm=[20.0, 50.0, 80.0], description="relative segment width")


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
        assert list(el["x"]) == pytest.approx([p * 1000 for p in POSITIONS])   # µm, as the NWB schema asks
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
            seg_t, seg_v = ts[i * n:(i + 1) * n], v[i * n:(i + 1) * n]
            assert seg_t[0] == p.t_start_s and seg_t[-1] == pytest.approx(p.t_start_s + p.period_ms_measured / 1000)
            assert seg_v[0] == seg_v[-1] == 0.0
            assert seg_v.max() - seg_v.min() == pytest.approx(p.vpp_measured, rel=1e-5)
            assert seg_v[n // 4] > 0 > seg_v[3 * n // 4]                  # positive phase first
            assert abs(seg_v.sum()) < 1e-4                                 # charge-balanced

        gaps = f.invalid_times.to_dataframe()
        assert list(gaps["start_index"]) == [FIRST + 2 * BLOCK] and list(gaps["n_samples"]) == [BLOCK]
        assert gaps["start_time"].iloc[0] == pytest.approx((FIRST + 2 * BLOCK) / FS)
        assert gaps["stop_time"].iloc[0] == pytest.approx((FIRST + 3 * BLOCK) / FS)
        assert not rec.data[2 * BLOCK:3 * BLOCK].any()

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
    assert sorted(p.name for p in out.parent.iterdir()) == ["worm.nwb"]


def test_interrupted_session_converts(tmp_path):
    out = session_to_nwb(_session(tmp_path / "s", close=False), tmp_path / "s.nwb",
                         subject={"subject_id": "worm-7"})
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
        seen.extend(out_dir.iterdir())          # the temporary file exists by now
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
