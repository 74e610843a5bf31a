"""The host and the simulated device when things go wrong: hostile frames, a dying host thread, a full disk, a lost
link, replays and reconnections. The device must never stay armed while the host cannot see it."""

import errno
import json
import os
import threading
import time

import numpy as np
import pytest
import serial

from labkit.rig import Rig, RigError, load_session
from labkit.rig.firmware.framing import Encoder
from labkit.rig.firmware.protocol import DataBlock, Heartbeat, MsgType, PulseEcho
from labkit.rig.host.recording import SessionWriter
from labkit.rig.simulator.sim import SimulatedRig, serve_pty
from tests.rig.firmware.test_protocol import frame

URL = "rigsim://?seed=1"
WATCHDOG_S = 0.25


@pytest.fixture
def rig(tmp_path):
    with Rig(URL, session_root=tmp_path) as r:
        yield r


def until(condition, timeout_s=2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def disarmed_within(rig, seconds=WATCHDOG_S + 0.25) -> bool:
    return until(lambda: not rig.serial.sim.device.armed, seconds)


HOSTILE = [
    frame(MsgType.INFO, b"[" * 5000),
    frame(MsgType.INFO, b"9" * 5000),
    frame(MsgType.INFO, b"\xff\xfe{}"),
    frame(MsgType.INFO, b"[1, 2]"),
    frame(MsgType.ERROR, b"\x01\x00\x01\x00\x00\x00\x00\xc3\x28"),
    frame(MsgType.DATA, DataBlock.HEAD.pack(0, 2100, 4, 0.2) + b"\x01\x80" * 8400),  # > 16384 bytes
    frame(MsgType.PULSE, b"\x00" * 5),
    frame(MsgType.PULSE, PulseEcho(1, 0, 3, 3, 3, 3, 9).pack()),
    frame(0x7F, b""),
]


def test_hostile_frames_from_the_device_are_counted_and_the_host_goes_on(rig):
    rig.configure()
    rig.arm()
    rig.read(0.05)
    before = rig.counters["bad_frames"]
    rig.serial.sim.send_raw(b"".join(HOSTILE))
    assert until(lambda: rig.counters["bad_frames"] == before + len(HOSTILE))
    rec = rig.read(0.1)  # the stream goes on...
    assert len(rec.samples_uv) == 3000 and not rec.gaps
    assert rig.stimulate(3.0, 3.0).vpp_requested == 3.0  # ...and so do commands


def test_a_data_block_with_a_corrupted_sample_index_does_not_derail_the_stream(rig):
    rig.configure()
    rig.read(0.05)
    sim = rig.serial.sim
    for first in (2**63, rig._stream.end + 10**6, 0):  # far ahead, ahead, behind
        sim.send_raw(Encoder().encode(DataBlock(first, 0.2, np.full((300, 4), 7, np.int16)), 0))
    rec = rig.read(0.2)
    assert not rec.gaps and not np.any(np.all(rec.samples_uv == 7 * 0.2, axis=1))
    assert rig.counters["implausible_frames"] == 3


def test_echoes_no_device_can_send_are_bad_frames_and_duplicates_are_dropped(rig):
    rig.configure()
    sim = rig.serial.sim
    impossible = [
        PulseEcho(9, 10**6, 3.0, 3.0, 3.0, 3.0, 77, 0),  # unknown waveform
        PulseEcho(9, 10**6, 3.0, float("nan"), 3.0, 3.0, 1, 0),  # not a number
        PulseEcho(9, 10**6, 3.0, 3.0, 3.0, 0.0, 1, 0),  # delivered for 0 ms, not aborted
        PulseEcho(9, 10**6, 3.0, 3.0, 3.0, 4.0, 1, 1),
    ]  # aborted after longer than requested
    sim.send_raw(b"".join(Encoder().encode(e, 0) for e in impossible))
    assert until(lambda: rig.counters["bad_frames"] == 4) and not rig.pulses
    with rig.record("session"):
        rig.arm()
        echoes = []
        dispatch = rig._dispatch

        def tap(frame_):
            if frame_.type == MsgType.PULSE:
                echoes.append(frame_.msg)
            dispatch(frame_)

        rig._dispatch = tap
        pulse = rig.stimulate(3.0, 3.0)
        sim.send_raw(Encoder().encode(echoes[0], 0))  # the same echo again (a duplicate)
        assert until(lambda: rig.counters["implausible_frames"] == 1)
        rig.read(0.05)
    assert rig.pulses == [pulse] and load_session(rig.session_root / "session")[0].pulses == [pulse]


def test_a_dying_reader_thread_stops_the_heartbeats_and_the_device(rig):
    dispatch = rig._dispatch

    def broken(frame_):
        if frame_.type == MsgType.PULSE:
            raise RuntimeError("boom")
        dispatch(frame_)

    rig._dispatch = broken
    rig.arm()
    with pytest.raises(RigError, match="rig failed: reader thread: RuntimeError: boom; the device was sent STOP"):
        rig.stimulate(3.0, 20.0)  # its echo kills the reader
    assert disarmed_within(rig)
    with pytest.raises(RigError, match="reader thread: RuntimeError: boom"):
        rig.arm()  # and every later call says why
    assert rig.failure.startswith("rig failed: reader thread")
    sent = rig._encoder.seq
    time.sleep(0.2)
    assert rig._encoder.seq == sent  # no more heartbeats


def test_a_full_disk_stops_the_device_and_says_so(rig, tmp_path):
    folder = tmp_path / "session"
    folder.mkdir()
    os.symlink("/dev/full", folder / "samples.i16")  # a real ENOSPC on the first flush
    rig.configure()
    with pytest.raises(RigError) as failure:
        with rig.record(folder):
            rig.arm()
            rig.read(1.0)
    message = str(failure.value)
    assert "[Errno 28]" in message and "samples.i16" in message and "the device was sent STOP" in message
    assert disarmed_within(rig)
    with pytest.raises(RigError, match="No space left on device"):
        rig.arm()
    assert json.loads((folder / "session.json").read_text())["n_channels"] == 4


def test_a_disk_filling_up_mid_session_leaves_a_readable_session(rig, tmp_path, monkeypatch):
    write_block, calls = SessionWriter.write_block, []

    def filling(self, first_index, counts):
        calls.append(first_index)
        if len(calls) > 10:
            raise OSError(errno.ENOSPC, f"writing {self.folder / 'samples.i16'}: {os.strerror(errno.ENOSPC)}")
        write_block(self, first_index, counts)

    monkeypatch.setattr(SessionWriter, "write_block", filling)
    rig.configure()
    with pytest.raises(RigError, match=r"rig failed: recording: \[Errno 28\] writing .*samples.i16: No space left"):
        with rig.record("session"):
            rig.arm()
            rig.read(1.0)
    assert disarmed_within(rig)
    rec, meta = load_session(tmp_path / "session")
    assert len(rec.samples_uv) == 10 * 300 and meta["closed_cleanly"] is not None


def test_a_failing_heartbeat_thread_stops_everything(rig):
    send = rig._send

    def broken(msg, before_write=None):
        if isinstance(msg, Heartbeat):
            raise RuntimeError("heartbeat bug")
        send(msg, before_write)

    rig.arm()
    rig._send = broken
    assert disarmed_within(rig)
    with pytest.raises(RigError, match="rig failed: heartbeat thread: RuntimeError: heartbeat bug"):
        rig.stimulate(3.0, 3.0)
    assert rig.serial.sim.device.pulses_delivered == 0


def test_a_link_that_stops_taking_writes_is_reported_and_the_watchdog_disarms(rig):
    rig.arm()

    def dead(data):
        raise serial.SerialException("write failed: cable pulled")

    rig.serial.write = dead
    assert disarmed_within(rig)
    with pytest.raises(RigError, match="link lost: write failed: cable pulled; STOP could not be sent"):
        rig.arm()


@pytest.fixture
def pty_device():
    """One simulated device on a pseudo-terminal, for several host connections in turn."""
    sim, stop, ready = SimulatedRig(seed=2), threading.Event(), []
    server = threading.Thread(target=serve_pty, args=(sim, ready.append, stop), daemon=True)
    server.start()
    assert until(lambda: ready)
    yield sim, ready[0]
    stop.set()
    server.join()
    sim.close()


def test_a_new_host_connection_on_the_same_device_works(pty_device, tmp_path):
    sim, port = pty_device
    with Rig(port, session_root=tmp_path) as first:
        first.arm()
        first.stimulate(3.0, 3.0)
        assert first._encoder.seq > 3
    with Rig(port, session_root=tmp_path) as second:  # its seq starts at 0 again
        second.arm()
        time.sleep(0.15)
        assert second.stimulate(3.0, 3.0).request_id == 1
        second.close()
        second.open()  # and re-opening the same Rig
        second.arm()
        time.sleep(0.15)
        second.stimulate(3.0, 3.0)
    assert sim.device.pulses_delivered == 3


def test_a_stimulate_frame_replayed_on_the_link_is_not_delivered_again(pty_device, tmp_path):
    sim, port = pty_device
    with Rig(port, session_root=tmp_path) as rig:
        frames, write = [], rig.serial.write

        def tap(data):
            frames.append(bytes(data))
            return write(data)

        rig.serial.write = tap
        rig.arm()
        rig.stimulate(3.0, 3.0)
        (stimulate,) = [f for f in frames if f[1] == MsgType.STIMULATE]  # COBS keeps a non-zero type byte
        time.sleep(0.15)  # past the rate limit
        write(stimulate)
        assert until(lambda: sim.device.bad_seq_frames == 1)
        assert sim.device.pulses_delivered == 1 and len(rig.pulses) == 1 and rig.arm() is None
