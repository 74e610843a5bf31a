"""The host driver against the in-process simulator (rigsim://): sessions, limits, recording, NWB."""

import time

import numpy as np
import pytest
import serial

from labkit.rig import LimitError, Rig, RigError, load_session
from labkit.rig.nwb import session_to_nwb, validate_nwb
from tests.rig.conftest import run_session

URL = "rigsim://?seed=1&fs=30000&mgf_velocity_m_s=25"


@pytest.fixture
def rig():
    with Rig(URL) as r:
        yield r


def test_url_handler_is_registered_and_rejects_bad_parameters():
    with pytest.raises(serial.SerialException, match="no_such_param"):
        serial.serial_for_url("rigsim://?no_such_param=1")


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
    sim = rig.serial.sim                                        # the simulator behind rigsim://: its camera
    t_stop = t0 + loaded.duration_s
    video = sim.render_video(tmp_path / "session" / "video.avi", t0, t_stop, fps=30.0)
    led_frames = [t for t, on in zip(video["frame_times_s"], video["led_on"]) if on]
    assert len(led_frames) >= 10                                # the LED marks every pulse
    frame_times = np.asarray(video["frame_times_s"])
    motion = {"frame_times_s": frame_times, "values": sim.worm.segment_strain(frame_times),
              "zone_positions_mm": sim.worm.zone_centres_mm,
              "description": "simulator ground-truth longitudinal strain per body zone"}
    nwb = session_to_nwb(tmp_path / "session", tmp_path / "session.nwb", motion=motion,
                         video={"file": video["file"], "frame_times_s": frame_times})
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
    rig.read(0.01)                                                   # the stream has started
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
    assert again == start and np.array_equal(counts[:len(joined)], joined)
    newest_first, newest = rig.read_since(None, 7)
    assert len(newest) == 7 and newest.shape[1] == 4 and newest_first >= start


def test_out_of_limit_requests_raise_before_anything_is_sent(rig):
    rig.configure()
    rig.arm()
    sent_before = rig._encoder.seq
    for kwargs, words in [({"vpp": 12, "period_ms": 3}, "allowed: 0 < vpp <= 10.0 V"),
                          ({"vpp": 3, "period_ms": 0.1}, "allowed: 0.5 to 20.0 ms"),
                          ({"vpp": 3, "period_ms": 3, "waveform": "square"}, "allowed: bipolar_sine"),
                          ({"vpp": 3, "period_ms": 3, "waveform": "monophasic_square"}, "not charge-balanced")]:
        with pytest.raises(LimitError, match=words):
            rig.stimulate(**kwargs)
    heartbeats = rig._encoder.seq - sent_before
    assert not rig.pulses and heartbeats >= 0                      # only heartbeats went out meanwhile
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
    with Rig(URL, heartbeat_s=10.0) as rig:     # a host that goes quiet after arming
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
