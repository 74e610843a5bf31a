"""The host driver against the in-process simulator (rigsim://): sessions, limits, recording, NWB."""

import os
import threading
import time

import numpy as np
import pytest
import serial

from labkit.rig import LimitError, Rig, RigError, load_session
from labkit.rig.firmware import device as firmware
from labkit.rig.firmware.framing import FrameDecoder
from labkit.rig.firmware.protocol import DEVICE_TO_HOST, Heartbeat, MsgType
from labkit.rig.host.nwb import session_to_nwb, validate_nwb
from tests.rig.conftest import run_session

URL = "rigsim://?seed=1&fs=30000&mgf_velocity_m_s=25"


@pytest.fixture
def rig(tmp_path):
    with Rig(URL, session_root=tmp_path) as r:
        yield r


def test_url_handler_is_registered_and_rejects_bad_parameters():
    with pytest.raises(serial.SerialException, match="no_such_param"):
        serial.serial_for_url("rigsim://?no_such_param=1")


def test_the_host_handles_only_device_to_host_types_and_info_and_ack_only_answer_requests():
    assert set(Rig.HANDLERS) == set(DEVICE_TO_HOST) - {MsgType.INFO, MsgType.ACK}


def test_full_session_in_process_gives_a_valid_nwb_file(rig, tmp_path):
    pulses, rec = run_session(rig, tmp_path / "session")
    assert [p.vpp_requested for p in pulses] == pytest.approx(np.linspace(2, 6, 10))
    assert all(abs(p.vpp_measured - p.vpp_requested) < 0.1 * p.vpp_requested for p in pulses)
    assert rec.samples_uv.shape == (6000, 4) and rig.counters["lost_frames"] == 0 and rig.counters["bad_frames"] == 0
    loaded, meta = load_session(tmp_path / "session")
    assert meta["closed_cleanly"] and len(loaded.pulses) == 10
    assert loaded.duration_s > 1.5 and not loaded.gaps
    t0 = loaded.first_sample_index / loaded.sample_rate_hz
    assert all(t0 <= p.t_start_s < t0 + loaded.duration_s for p in loaded.pulses)
    sim = rig.serial.sim  # the simulator behind rigsim://: its camera
    t_stop = t0 + loaded.duration_s
    video = sim.render_video(tmp_path / "session" / "video.avi", t0, t_stop, fps=30.0)
    led_frames = [t for t, on in zip(video["frame_times_s"], video["led_on"]) if on]
    assert len(led_frames) >= 10  # the LED marks every pulse
    frame_times = np.asarray(video["frame_times_s"])
    motion = {
        "frame_times_s": frame_times,
        "values": sim.worm.segment_strain(frame_times),
        "zone_positions_mm": sim.worm.zone_centres_mm,
        "description": "simulator ground-truth longitudinal strain per body zone",
    }
    nwb = session_to_nwb(
        tmp_path / "session",
        tmp_path / "session.nwb",
        motion=motion,
        video={"file": video["file"], "frame_times_s": frame_times},
    )
    assert validate_nwb(nwb) == []


def test_read_returns_consecutive_samples_with_their_pulses(rig):
    rig.configure()
    rig.arm()
    a = rig.read(0.1)
    pulse = rig.stimulate(vpp=5.0, period_ms=2.0)
    b = rig.read(0.3)
    assert b.first_sample_index >= a.first_sample_index + len(a.samples_uv)
    assert b.times_s[0] == pytest.approx(b.first_sample_index / 30000)
    assert np.all(np.diff(b.times_s) > 0)
    if b.times_s[0] <= pulse.t_start_s < b.times_s[-1]:
        assert b.pulses == [pulse]


def test_read_since_returns_every_sample_exactly_once_without_waiting(rig):
    rig.configure(sample_rate=30000, channels=4)
    rig.read(0.01)  # the stream has started
    first, counts = rig.read_since(None, 10**9)
    start, pieces = first, [counts]
    for _ in range(5):
        time.sleep(0.02)
        nxt, counts = rig.read_since(first + len(pieces[-1]), 10**9)
        assert nxt == first + len(pieces[-1])
        first = nxt
        pieces.append(counts)
    joined = np.concatenate(pieces)
    again, counts = rig.read_since(start, 10**9)
    assert again == start and np.array_equal(counts[: len(joined)], joined)
    newest_first, newest = rig.read_since(None, 7)
    assert len(newest) == 7 and newest.shape[1] == 4 and newest_first >= start


def test_out_of_limit_requests_raise_before_anything_is_sent(rig):
    rig.configure()
    rig.arm()
    sent_before = rig._encoder.seq
    for kwargs, words in [
        ({"vpp": 12, "period_ms": 3}, "allowed: 0 < vpp <= 10.0 V"),
        ({"vpp": 3, "period_ms": 0.1}, "allowed: 0.5 to 20.0 ms"),
        ({"vpp": 3, "period_ms": 3, "waveform": "square"}, "allowed: bipolar_sine"),
        ({"vpp": 3, "period_ms": 3, "waveform": "monophasic_square"}, "not charge-balanced"),
    ]:
        with pytest.raises(LimitError, match=words):
            rig.stimulate(**kwargs)
    heartbeats = rig._encoder.seq - sent_before
    assert not rig.pulses and heartbeats >= 0  # only heartbeats went out meanwhile
    rig.stimulate(vpp=3, period_ms=3)
    with pytest.raises(LimitError, match="rate limit"):
        rig.stimulate(vpp=3, period_ms=3)
    assert len(rig.pulses) == 1


def test_stimulate_needs_arming_and_the_device_says_so(rig):
    rig.configure()
    with pytest.raises(RigError, match="device refused STIMULATE: stimulate while disarmed"):
        rig.stimulate(vpp=3, period_ms=3)


def test_bad_configuration_names_the_allowed_values(rig):
    with pytest.raises(RigError, match=r"allowed: \[30000.0\]"):
        rig.configure(sample_rate=20000)
    with pytest.raises(RigError, match="allowed: 1 to 4"):
        rig.configure(channels=6)


def test_stop_while_streaming_ends_the_stream(rig):
    rig.configure()
    rig.arm()
    rig.read(0.05)
    rig.stop()
    assert not rig.device_state or rig.device_state.armed == 0
    with pytest.raises(RigError, match="timed out"):
        rig.read(0.1)


def test_watchdog_fires_when_heartbeats_stop():
    with Rig(URL, heartbeat_s=10.0) as rig:  # a host that goes quiet after arming
        rig.configure()
        rig.arm()
        rig.read(0.5)
        assert [e.code for e in rig.device_events] == [9]
        with pytest.raises(RigError, match="disarmed"):
            rig.stimulate(vpp=3, period_ms=3)


def test_fewer_channels(rig):
    rig.configure(channels=2)
    rec = rig.read(0.05)
    assert rec.samples_uv.shape == (1500, 2) and len(rec.electrode_positions_mm) == 2


def _until(condition, timeout_s=2.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _capture_writes(rig):
    """From now on, the types of the frames the host writes: call the result to get them."""
    decoder, types, write = FrameDecoder(), [], rig.serial.write

    def capture(data):
        types.extend(f.type for f in decoder.feed(b"\x00" + bytes(data)))
        return write(data)

    rig.serial.write = capture
    return lambda: types


class ManualClock:
    """The simulator's device time, advanced by hand (µs)."""

    def __init__(self, t_us: int):
        self.t_us = t_us

    def __call__(self) -> int:
        return self.t_us


def test_a_pulse_stopped_midway_is_reported_and_recorded_as_aborted(rig, tmp_path):
    sim = rig.serial.sim
    rig.configure()
    rig.read(0.02)
    clock = ManualClock(sim.now_us())
    sim.set_clock(clock)  # device time stands still until moved
    rig.arm()
    with rig.record("session"):
        result = []
        worker = threading.Thread(target=lambda: result.append(rig.stimulate(vpp=3.0, period_ms=20.0)))
        worker.start()
        _until(lambda: sim.device.pending is not None)  # the pulse has started
        clock.t_us += 5000
        time.sleep(0.01)  # the device has seen 5 ms pass
        rig.stop()  # STOP 5 ms into the 20 ms pulse
        worker.join(2.0)
    (pulse,) = result
    assert pulse.aborted and pulse.period_ms_measured == 5.0 and pulse.period_ms_requested == 20.0
    assert rig.pulses == [pulse]
    loaded, _ = load_session(tmp_path / "session")
    assert loaded.pulses == [pulse]


def test_the_device_receive_counters_reach_the_host(rig):
    rig.serial.write(b"\x00\x07\x01garbage\x00")  # one bad frame for the device
    with rig._write_lock:
        rig._encoder.encode(Heartbeat(), 0)  # one frame lost in transit
        stale = rig._encoder.encode(Heartbeat(), 0)
        rig.serial.write(stale + stale)  # and one replayed
    _until(lambda: rig.counters["device_bad_seq_frames"] == 1, timeout_s=1.0)
    c = rig.counters
    assert (c["device_bad_frames"], c["device_lost_frames"], c["device_bad_seq_frames"]) == (1, 1, 1)


def test_a_device_speaking_another_protocol_version_is_refused(monkeypatch):
    monkeypatch.setattr(firmware, "PROTOCOL_VERSION", 1)
    with pytest.raises(RigError, match="protocol 1; this host speaks 2"):
        Rig(URL).open()


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"vpp": True, "period_ms": 3.0}, TypeError, "vpp must be a real number .* got bool"),
        ({"vpp": "4", "period_ms": 3.0}, TypeError, "vpp must be a real number .* got str"),
        ({"vpp": 4.0, "period_ms": None}, TypeError, "period_ms must be a real number .* got NoneType"),
        (
            {"vpp": 4.0, "period_ms": 3.0, "waveform": 1},
            TypeError,
            "waveform must be a str, got int 1; allowed: bipolar_sine",
        ),
        (
            {"vpp": 4.0, "period_ms": 3.0, "waveform": None},
            TypeError,
            "waveform must be a str, got NoneType None; allowed",
        ),
        ({"vpp": float("nan"), "period_ms": 3.0}, LimitError, "allowed: 0 < vpp <= 10.0 V"),
    ],
)
def test_bad_stimulation_arguments_get_one_clear_error_and_nothing_is_sent(rig, kwargs, error, words):
    rig.arm()
    sent = _capture_writes(rig)
    with pytest.raises(error, match=words):
        rig.stimulate(**kwargs)
    assert set(sent()) <= {MsgType.HEARTBEAT} and rig.serial.sim.device.pulses_delivered == 0


def test_any_real_number_is_a_valid_stimulation_argument(rig):
    rig.arm()
    pulse = rig.stimulate(np.float32(4.0), np.int64(3))
    assert pulse.vpp_requested == 4.0 and pulse.period_ms_requested == 3.0


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"channels": 2.5}, TypeError, "channels must be an integer, got float"),
        ({"channels": "4"}, TypeError, "channels must be an integer, got str"),
        ({"channels": True}, TypeError, "channels must be an integer, got bool"),
        ({"channels": 0}, LimitError, "channels=0 unsupported; allowed: 1 to 4"),
        (
            {"block_samples": -1},
            LimitError,
            r"block_samples=-1; allowed: 1 to 2000, or None \(the device's default, 300\)",
        ),
        ({"block_samples": 0}, LimitError, "block_samples=0; allowed: 1 to 2000"),
        ({"block_samples": 2.0}, TypeError, "block_samples must be an integer, got float"),
        ({"sample_rate": "30000"}, TypeError, "sample_rate must be a real number"),
        ({"sample_rate": 20000}, LimitError, r"sample_rate=20000 unsupported by this device; allowed: \[30000.0\]"),
        ({"channels": 2, "block_samples": 5000}, LimitError, "block_samples=5000"),
    ],
)
def test_bad_configuration_is_refused_before_anything_is_sent_and_the_previous_one_stays(rig, kwargs, error, words):
    rig.configure(channels=2, block_samples=150)
    rig.stop()
    sent = _capture_writes(rig)
    with pytest.raises(error, match=words):
        rig.configure(**kwargs)
    device = rig.serial.sim.device
    assert (device.n_channels, device.block_samples, rig.n_channels) == (2, 150, 2)
    assert set(sent()) <= {MsgType.HEARTBEAT}


@pytest.mark.parametrize(
    "seconds, error",
    [
        (float("nan"), ValueError),
        (-1, ValueError),
        (0, ValueError),
        (1e6, ValueError),
        ("1", TypeError),
        (True, TypeError),
    ],
)
def test_bad_read_durations_are_refused(rig, seconds, error):
    rig.configure()
    with pytest.raises(error, match="seconds"):
        rig.read(seconds)


def test_every_call_after_close_says_the_rig_is_closed(tmp_path):
    rig = Rig(URL, session_root=tmp_path).open()
    rig.configure()
    rig.close()
    calls = [
        rig.configure,
        rig.arm,
        rig.disarm,
        rig.stop,
        lambda: rig.stimulate(3.0, 3.0),
        lambda: rig.read(0.1),
        lambda: rig.read_since(None, 10),
        lambda: rig.record("x").__enter__(),
    ]
    for call in calls:
        with pytest.raises(RigError, match="the rig is closed"):
            call()
    rig.close()  # closing twice is harmless


def test_record_refuses_folders_outside_the_session_root(rig, tmp_path):
    rig.configure()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "root-link")
    for folder in ["../x", "a/../../x", str(tmp_path.parent / "x"), "/tmp/x"]:
        with pytest.raises(ValueError, match=f"folder=.*outside the session root {tmp_path}"):
            with rig.record(folder):
                pass
    with Rig(URL, session_root=tmp_path / "root") as narrow:
        narrow.configure()
        with pytest.raises(ValueError, match="outside the session root"):  # a symlink out of the root
            with narrow.record(tmp_path / "root-link" / "s"):
                pass
    with pytest.raises(TypeError, match="folder must be a str or a path"):
        with rig.record(3):
            pass
    with rig.record("mouse-1/session-1"):  # relative folders are under the root
        rig.read(0.05)
    with rig.record(tmp_path / "session-2"):  # absolute ones inside it are fine
        rig.read(0.05)
    assert load_session(tmp_path / "mouse-1" / "session-1")[0].duration_s >= 0.05


def test_the_session_root_defaults_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Rig(URL) as rig:
        assert rig.session_root == tmp_path.resolve()
        rig.configure()
        with rig.record("session"):
            rig.read(0.05)
        with pytest.raises(ValueError, match="outside the session root"):
            with rig.record("../escaped"):
                pass
    assert (tmp_path / "session" / "session.json").exists() and not (tmp_path.parent / "escaped").exists()


def test_record_gives_up_when_no_data_arrives(tmp_path):
    with Rig(URL, session_root=tmp_path, timeout_s=0.3) as rig:
        rig.serial.sim.set_clock(lambda: 0)  # a device whose clock stands still sends no data
        rig.configure()
        with pytest.raises(RigError, match=r"timed out waiting for the first data block \(Rig timeout_s=0.3 s\)"):
            with rig.record("session"):
                pass
