"""Session folders under damage: aborted pulses, torn and corrupt files, inconsistent metadata and a full disk."""

import errno
import json
import warnings

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from labkit.rig.host.nwb import STIM_SAMPLES_PER_CYCLE, session_to_nwb, validate_nwb
from labkit.rig.host.recording import Pulse, SessionError, SessionWriter
from labkit.rig.host.session_reader import load_session

FS = 2000.0
FIRST = 10_000
BLOCK = 200
N_ROWS = 4 * BLOCK  # four blocks, the third lost in transit (a gap of zeros)
POSITIONS = [30.0, 45.0, 60.0, 75.0]
PULSES = [Pulse(1, 5.05, 3.0, 2.9, 4.0, 4.1), Pulse(2, 5.3, 5.0, 4.8, 2.5, 2.6)]
# STOP 5 ms into a 20 ms pulse: the device echoes it as aborted, with the 5 ms really delivered
ABORTED = Pulse(3, 5.5, 6.0, 5.7, 20.0, 5.0, aborted=True)


def _writer(folder, **kwargs):
    return SessionWriter(
        folder,
        sample_rate_hz=FS,
        n_channels=4,
        scale_uv_per_count=0.195,
        electrode_positions_mm=POSITIONS,
        first_sample_index=FIRST,
        **kwargs,
    )


def _blocks():
    rng = np.random.default_rng(1)
    return [(FIRST + k * BLOCK, rng.integers(-2000, 2000, (BLOCK, 4), dtype=np.int16)) for k in (0, 1, 3)]


def _session(folder, pulses=PULSES, *, close=True):
    w = _writer(folder)
    for first, counts in _blocks():
        w.write_block(first, counts)
    for p in pulses:
        w.write_pulse(p)
    w.close({"frames": 3})
    if not close:  # what a crash leaves: everything flushed, no closed.json
        (folder / "closed.json").unlink()
    return folder


def _edit_json(path, **changes):
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def _edit_line(path, number, **changes):
    lines = path.read_text().splitlines()
    lines[number - 1] = json.dumps(json.loads(lines[number - 1]) | changes)
    path.write_text("\n".join(lines) + "\n")


# --- A: aborted pulses ------------------------------------------------------------------------------------------


def test_aborted_pulse_is_stored_and_old_lines_read_as_complete(tmp_path):
    session = _session(tmp_path / "s", PULSES + [ABORTED])
    lines = [json.loads(line) for line in (session / "pulses.jsonl").read_text().splitlines()]
    assert [line["aborted"] for line in lines] == [False, False, True]
    (session / "pulses.jsonl").write_text(  # a file written before the field existed
        "".join(json.dumps({k: v for k, v in line.items() if k != "aborted"}) + "\n" for line in lines)
    )
    rec, _ = load_session(session)
    assert [p.aborted for p in rec.pulses] == [False, False, False]


def test_aborted_pulse_in_nwb_shows_only_what_was_delivered(tmp_path):
    out = session_to_nwb(_session(tmp_path / "s", PULSES + [ABORTED]), tmp_path / "s.nwb")
    assert validate_nwb(out) == []
    n = STIM_SAMPLES_PER_CYCLE + 1
    with NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        table = f.intervals["delivered_pulses"]
        df = table.to_dataframe()
        assert list(df["aborted"]) == [False, False, True] and df["aborted"].dtype == bool
        assert "cut short" in table["aborted"].description and "delivered" in table["period_ms_measured"].description
        np.testing.assert_allclose(df["stop_time"], [5.05 + 0.0041, 5.3 + 0.0026, 5.5 + 0.005])
        stim = f.stimulus["stimulus_voltage"]
        assert "aborted" in stim.description and "requested period" in stim.description
        ts, v = stim.timestamps[:], stim.data[:]
        assert len(ts) == 3 * n and np.all(np.diff(ts) > 0)
        ref = df["timeseries"].iloc[2][0]
        assert (ref.idx_start, ref.count) == (2 * n, n)
        seg_t, seg_v = ts[2 * n :], v[2 * n :]
        assert seg_t[0] == 5.5 and seg_t[-1] == pytest.approx(5.505)  # delivered: 5 ms
        expected = 5.7 / 2 * np.sin(2 * np.pi * (seg_t - 5.5) / 0.020)  # the requested 20 ms sine ...
        np.testing.assert_allclose(seg_v[:-1], expected[:-1], atol=1e-6)
        assert seg_v[-1] == 0.0 and seg_v.min() >= 0.0  # ... cut after its first quarter
        assert seg_v.max() == pytest.approx(5.7 / 2 * np.sin(2 * np.pi * 63 / 64 / 4), rel=1e-6)
        for i, p in enumerate(PULSES):  # complete pulses as before
            t = ts[i * n : (i + 1) * n] - p.t_start_s
            np.testing.assert_allclose(t, np.arange(n) / (n - 1) * p.period_ms_measured / 1000, atol=1e-12)
            assert v[i * n] == v[(i + 1) * n - 1] == 0.0 and v[i * n + n // 4] > 0 > v[i * n + 3 * n // 4]


def test_pulse_aborted_at_its_start_is_one_zero_sample(tmp_path):
    instant = Pulse(3, 5.5, 6.0, 5.7, 20.0, 0.0, aborted=True)
    out = session_to_nwb(_session(tmp_path / "s", PULSES + [instant]), tmp_path / "s.nwb")
    assert validate_nwb(out) == []
    with NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        df = f.intervals["delivered_pulses"].to_dataframe()
        assert df["stop_time"].iloc[2] == df["start_time"].iloc[2] == 5.5
        ref = df["timeseries"].iloc[2][0]
        stim = f.stimulus["stimulus_voltage"]
        assert (ref.idx_start, ref.count) == (2 * (STIM_SAMPLES_PER_CYCLE + 1), 1)
        assert len(stim.data) == ref.idx_start + 1
        assert stim.timestamps[-1] == 5.5 and stim.data[-1] == 0.0


# --- B: torn lines ----------------------------------------------------------------------------------------------


def _many_pulses(n=24):
    return [Pulse(i, 5.0 + 0.1 * i, 4.0, 3.9, 3.0, 3.0) for i in range(n)]


def test_torn_middle_line_of_pulses_skips_only_that_line(tmp_path):
    session = _session(tmp_path / "s", _many_pulses())
    path = session / "pulses.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = lines[3][:20] + "\n"
    path.write_text("".join(lines))
    with pytest.warns(UserWarning, match=r"pulses\.jsonl, line 4: unreadable .*skipped"):
        rec, meta = load_session(session)
    assert [p.request_id for p in rec.pulses] == [i for i in range(24) if i != 3]
    assert meta["skipped_lines"] == {"pulses.jsonl": [4]}
    with pytest.warns(UserWarning, match=r"line 4"):
        out = session_to_nwb(session, tmp_path / "s.nwb")
    assert validate_nwb(out) == []
    with NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        assert len(f.intervals["delivered_pulses"]) == 23
        assert "pulses.jsonl line 4" in f.notes
        assert json.loads(f.notes.splitlines()[-1])["skipped_lines"] == {"pulses.jsonl": [4]}


def test_garbled_middle_line_of_gaps_skips_only_that_line(tmp_path):
    session = tmp_path / "s"
    w = _writer(session)
    for k in (0, 2, 4, 6):  # three gaps
        w.write_block(FIRST + k * BLOCK, np.ones((BLOCK, 4), np.int16))
    w.close()
    path = session / "gaps.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[1] = b"\xff\xfe garbage"
    path.write_bytes(b"\n".join(lines))
    with pytest.warns(UserWarning, match=r"gaps\.jsonl, line 2: unreadable \(not UTF-8"):
        rec, meta = load_session(session)
    assert rec.gaps == [{"start_index": FIRST + BLOCK, "n": BLOCK}, {"start_index": FIRST + 5 * BLOCK, "n": BLOCK}]
    assert meta["skipped_lines"] == {"gaps.jsonl": [2]}


def test_torn_last_line_after_a_crash_is_dropped_silently_and_counted(tmp_path):
    session = _session(tmp_path / "s", _many_pulses(), close=False)
    path = session / "pulses.jsonl"
    path.write_text(path.read_text()[:-30])  # the crash tore the last line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec, meta = load_session(session)
    assert len(rec.pulses) == 23 and meta["skipped_lines"] == {"pulses.jsonl": [24]}
    _, clean = load_session(_session(tmp_path / "clean"))
    assert clean["skipped_lines"] == {}


def test_torn_last_line_of_a_cleanly_closed_session_is_warned_about(tmp_path):
    session = _session(tmp_path / "s", _many_pulses())
    path = session / "pulses.jsonl"
    path.write_text(path.read_text()[:-30])  # a clean close never leaves a torn line: damage
    with pytest.warns(UserWarning, match=r"pulses\.jsonl, line 24"):
        rec, _ = load_session(session)
    assert len(rec.pulses) == 23


# --- C and D: corrupt or inconsistent files ---------------------------------------------------------------------


def _meta(**changes):
    return lambda s: _edit_json(s / "session.json", **changes)


def _drop_keys(*keys):
    def edit(s):
        meta = json.loads((s / "session.json").read_text())
        (s / "session.json").write_text(json.dumps({k: v for k, v in meta.items() if k not in keys}))

    return edit


def _write(name, data):
    return lambda s: (s / name).write_bytes(data)


def _append(name, data):
    return lambda s: (s / name).write_bytes((s / name).read_bytes() + data)


def _pulse_line(number, **changes):
    return lambda s: _edit_line(s / "pulses.jsonl", number, **changes)


def _gap_line(**changes):
    return lambda s: _edit_line(s / "gaps.jsonl", 1, **changes)


def _session_json_cut(s):
    text = (s / "session.json").read_text()
    (s / "session.json").write_text(text[: len(text) // 2])


BAD_SESSIONS = {  # name → (edit of a valid two-pulse session, expected message)
    # C: corrupt files
    "session.json truncated": (_session_json_cut, r"session\.json: not valid JSON"),
    "session.json not JSON": (_write("session.json", b"hello"), r"session\.json: not valid JSON"),
    "session.json not UTF-8": (_write("session.json", b'{"format": "\xff"}'), r"session\.json: not UTF-8"),
    "session.json a list": (_write("session.json", b"[1, 2]"), r"session\.json: expected a JSON object"),
    "missing keys": (
        _drop_keys("n_channels", "sample_rate_hz"),
        r"session\.json: missing key\(s\) \['n_channels', 'sample_rate_hz'\]",
    ),
    "n_channels a string": (
        _meta(n_channels="four"),
        r"session\.json: 'n_channels' must be an integer >= 1, got 'four'",
    ),
    "rate a string": (_meta(sample_rate_hz="2000"), r"'sample_rate_hz' must be a finite number > 0, got '2000'"),
    "positions a string": (_meta(electrode_positions_mm="30,45"), r"'electrode_positions_mm' must be a list of finite"),
    "first index a float": (_meta(first_sample_index=1.5), r"'first_sample_index' must be an integer >= 0"),
    "start time not a time": (_meta(start_time_utc="yesterday"), r"'start_time_utc' must be an ISO 8601"),
    "device_info a list": (_meta(device_info=[1]), r"'device_info' must be a JSON object"),
    "wrong format": (_meta(format="other/2"), r"session\.json: unknown format 'other/2'"),
    "rate 0": (_meta(sample_rate_hz=0), r"session\.json: 'sample_rate_hz' must be a finite number > 0, got 0"),
    "rate negative": (_meta(sample_rate_hz=-2000.0), r"'sample_rate_hz' must be a finite number > 0, got -2000"),
    "samples odd size": (
        _append("samples.i16", b"\x01"),
        r"samples\.i16: 6401 bytes is not a whole number of 8-byte rows",
    ),
    "samples missing": (lambda s: (s / "samples.i16").unlink(), r"samples\.i16: missing"),
    "pulse line a list": (_append("pulses.jsonl", b"[1, 2]\n"), r"pulses\.jsonl, line 3: expected a JSON object"),
    "pulse missing keys": (
        _write("pulses.jsonl", b'{"request_id": 1, "t_start_s": 5.0}\n'),
        r"pulses\.jsonl, line 1: missing key\(s\) \['period_ms_measured'",
    ),
    "pulse unknown key": (_pulse_line(1, colour="red"), r"pulses\.jsonl, line 1: unknown key\(s\) \['colour'\]"),
    "pulse time a string": (_pulse_line(1, t_start_s="5"), r"line 1: 't_start_s' must be a finite number >= 0"),
    "aborted not a bool": (_pulse_line(2, aborted="yes"), r"line 2: 'aborted' must be true or false, got 'yes'"),
    "unknown waveform": (_pulse_line(1, waveform="square"), r"line 1: 'waveform' must be one of \('bipolar_sine'"),
    "gap line a number": (_write("gaps.jsonl", b"7\n"), r"gaps\.jsonl, line 1: expected a JSON object"),
    "closed.json not JSON": (_write("closed.json", b"{"), r"closed\.json: not valid JSON"),
    "counters not an object": (_write("closed.json", b'{"counters": 3}'), r"closed\.json: 'counters' must be"),
    # D: inconsistent metadata
    "n_channels vs rows": (
        _meta(n_channels=3, electrode_positions_mm=POSITIONS[:3]),
        r"samples\.i16: 6400 bytes is not a whole number of 6-byte rows \(n_channels=3",
    ),
    "n_channels vs positions": (_meta(n_channels=8), r"'electrode_positions_mm' has 4 positions but 'n_channels' is 8"),
    "n_channels 0": (_meta(n_channels=0), r"'n_channels' must be an integer >= 1, got 0"),
    "2 positions for 4 channels": (
        _meta(electrode_positions_mm=[30.0, 45.0]),
        r"'electrode_positions_mm' has 2 positions but 'n_channels' is 4",
    ),
    "positions repeat": (
        _meta(electrode_positions_mm=[30.0, 45.0, 45.0, 75.0]),
        r"'electrode_positions_mm' must be strictly increasing",
    ),
    "positions decrease": (_meta(electrode_positions_mm=POSITIONS[::-1]), r"must be strictly increasing"),
    "scale 0": (_meta(scale_uv_per_count=0), r"'scale_uv_per_count' must be a finite number > 0, got 0"),
    "scale negative": (_meta(scale_uv_per_count=-0.195), r"'scale_uv_per_count' must be a finite number > 0"),
    "gap n negative": (_gap_line(n=-5), r"gaps\.jsonl, line 1: 'n' must be an integer >= 1, got -5"),
    "gap before recording": (
        _gap_line(start_index=0),
        r"gaps\.jsonl, line 1: samples \[0, 200\) lie outside the recording \[10000, 10800\)",
    ),
    "gap after recording": (
        _gap_line(start_index=FIRST + N_ROWS - 10),
        r"gaps\.jsonl, line 1: .*outside the recording",
    ),
    "gaps overlap": (
        _append("gaps.jsonl", json.dumps({"start_index": FIRST + 2 * BLOCK + 50, "n": 10}).encode() + b"\n"),
        r"gaps\.jsonl, line 2: .*overlap",
    ),
    "pulse negative time": (
        _pulse_line(1, t_start_s=-1.0),
        r"pulses\.jsonl, line 1: 't_start_s' must be a finite "
        r"number >= 0, got -1\.0",
    ),
    "pulse NaN": (_pulse_line(2, vpp_measured=float("nan")), r"line 2: 'vpp_measured' must be a finite number >= 0"),
    "pulse infinite": (_pulse_line(1, period_ms_requested=float("inf")), r"'period_ms_requested' must be a finite"),
    "pulse not aborted, 0 ms": (
        _pulse_line(1, period_ms_measured=0.0),
        r"line 1: 'period_ms_measured' must be > 0 for a pulse that was not aborted",
    ),
    "aborted longer than asked": (
        _pulse_line(1, aborted=True, period_ms_measured=9.0),
        r"line 1: 'period_ms_measured' .* must be between 0 and 'period_ms_requested'",
    ),
    "pulses overlap": (
        _pulse_line(2, t_start_s=5.052),
        r"pulses\.jsonl: pulses request_id=1 \(line 1\) and "
        r"request_id=2 \(line 2\) overlap",
    ),
}


@pytest.mark.parametrize("name", BAD_SESSIONS)
def test_corrupt_or_inconsistent_session_raises_a_named_session_error(tmp_path, name):
    edit, message = BAD_SESSIONS[name]
    session = _session(tmp_path / "s")
    edit(session)
    with pytest.raises(SessionError, match=message):
        load_session(session)
    with pytest.raises(SessionError, match=message):
        session_to_nwb(session, tmp_path / "s.nwb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_session_error_is_a_value_error_and_exported():
    import labkit.rig.host.recording as recording

    assert issubclass(SessionError, ValueError) and "SessionError" in recording.__all__


def test_writer_refuses_metadata_that_could_not_be_loaded(tmp_path):
    with pytest.raises(SessionError, match=r"'electrode_positions_mm' has 2 positions but 'n_channels' is 4"):
        SessionWriter(
            tmp_path / "s",
            sample_rate_hz=FS,
            n_channels=4,
            scale_uv_per_count=0.195,
            electrode_positions_mm=[1.0, 2.0],
            first_sample_index=0,
        )
    assert not (tmp_path / "s" / "session.json").exists()


# --- E: atomic writes and a full disk ---------------------------------------------------------------------------


def test_whole_file_writes_are_atomic(tmp_path, monkeypatch):
    import labkit.rig.host.recording as recording

    written = []
    real = recording.atomic_write_text
    monkeypatch.setattr(
        recording, "atomic_write_text", lambda path, text: (written.append(path.name), real(path, text))
    )
    _session(tmp_path / "s")
    assert written == ["session.json", "closed.json"]


def test_full_disk_while_appending_samples(tmp_path):
    """samples.i16 is a link to /dev/full: every write to it fails with ENOSPC, as on a full disk."""
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "samples.i16").symlink_to("/dev/full")
    w = _writer(folder)
    w.write_pulse(PULSES[0])
    w.flush()  # the pulse is on disk before the disk fills
    with pytest.raises(OSError, match=r"writing .*samples\.i16: No space left on device") as err:
        w.write_block(FIRST + BLOCK, np.ones((BLOCK, 4), np.int16))  # after a lost block: a gap, then the block
        w.flush()
    assert err.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match=r"samples\.i16: No space left on device.*stopped"):
        w.write_pulse(PULSES[1])  # nothing is appended after a failed write
    w.close({"frames": 2})  # does not raise again
    w.close()
    (folder / "samples.i16").unlink()
    (folder / "samples.i16").write_bytes(b"")  # what the full disk holds of it: nothing
    rec, meta = load_session(folder)
    assert rec.pulses == PULSES[:1] and len(rec.samples_uv) == 0
    assert rec.gaps == []  # no gap line describes zeros that never reached the disk
    assert not meta["closed_cleanly"] and "samples.i16: No space left on device" in meta["write_error"]
    assert rec.counters == {"frames": 2}


def test_full_disk_while_appending_pulses_keeps_what_was_flushed(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "pulses.jsonl").symlink_to("/dev/full")
    w = _writer(folder, flush_interval_s=0.0)  # every append is flushed
    blocks = _blocks()[:2]
    for first, counts in blocks:
        w.write_block(first, counts)
    with pytest.raises(OSError, match=r"writing .*pulses\.jsonl: No space left on device") as err:
        w.write_pulse(PULSES[0])
    assert err.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match=r"pulses\.jsonl.*stopped"):
        w.write_block(FIRST + 2 * BLOCK, np.ones((BLOCK, 4), np.int16))
    w.close({"frames": 2})
    (folder / "pulses.jsonl").unlink()
    with open(folder / "samples.i16", "ab") as f:
        f.write(b"\x01\x02\x03")  # a row torn by the failing disk is dropped, not refused
    rec, meta = load_session(folder)
    np.testing.assert_array_equal(meta["counts"], np.concatenate([c for _, c in blocks]))
    assert rec.pulses == [] and not meta["closed_cleanly"]
    out = session_to_nwb(folder, tmp_path / "s.nwb")
    assert validate_nwb(out) == []
    with NWBHDF5IO(str(out), "r") as io:
        notes = io.read().notes
    assert "stopped by a write error" in notes and "pulses.jsonl: No space left on device" in notes


def test_error_first_met_in_close_is_raised_once_and_named(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "gaps.jsonl").symlink_to("/dev/full")
    w = _writer(folder, flush_interval_s=3600.0)  # nothing flushed before close()
    w.write_block(FIRST, np.ones((BLOCK, 4), np.int16))
    w.write_block(FIRST + 2 * BLOCK, np.ones((BLOCK, 4), np.int16))  # gap: zeros synced, line buffered
    with pytest.raises(OSError, match=r"writing .*gaps\.jsonl: No space left on device"):
        w.close()
    w.close()
    (folder / "gaps.jsonl").unlink()
    rec, meta = load_session(folder)
    assert len(rec.samples_uv) == 3 * BLOCK and "gaps.jsonl" in meta["write_error"]
