"""Fuzzing both ends of the rig link with structurally valid frames (correct COBS and CRC) whose contents are hostile:
deeply nested or huge JSON, invalid UTF-8, wrong payload lengths for every type, frames over 16,384 bytes, unknown
and wrong-direction types, random field values and sequence numbers.

Each receiver must let no exception escape, count exactly the frames the specification calls bad, and go on working
(a following valid HELLO is answered, a following valid command executed, following valid DATA blocks stored); the
device must never deliver a pulse outside its hard limits or while disarmed. ``test_report`` (last) prints how many
frames each side was fed (``pytest -s``).
"""

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.rig import Rig, load_session
from labkit.rig.firmware import framing
from labkit.rig.firmware import protocol as p
from labkit.rig.firmware.device import Device
from labkit.rig.firmware.limits import SafetyLimits
from tests.reliability.test_rig_link import until
from tests.rig.firmware.test_protocol import frame

FUZZED = {"device (Device.receive)": 0, "device (through a live Rig's link)": 0, "host (a live Rig's reader)": 0}
OUTCOMES = {"crashes": 0, "pulses outside the hard limits": 0, "pulses while disarmed": 0, "armed while blind": 0}


@pytest.fixture(scope="module", autouse=True)
def report():
    """After the module: what was fuzzed per side and what went wrong (each test asserts its own outcomes)."""
    yield
    print("\nrig link fuzzing: frames fed per side:", json.dumps(FUZZED), "| outcomes:", json.dumps(OUTCOMES))


FIXED = {t: m.FORMAT.size for t, m in p.MESSAGES.items() if hasattr(m, "FORMAT")}  # fixed-size payloads
LIMITS = SafetyLimits()


@dataclass(frozen=True)
class Hostile:
    """A well-formed frame and what the spec says of it: ``payload_ok`` (its payload decodes), or ``always_bad``
    (unknown type, or too long: bad for every receiver)."""

    wire: bytes
    kind: int
    payload_ok: bool
    always_bad: bool = False

    def bad_for(self, decodes) -> bool:
        return self.always_bad or (self.kind in decodes and not self.payload_ok)


def _json_values():
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )


@st.composite
def payloads(draw):
    """(type, payload, payload_ok) for every type, hostile or valid by construction."""
    case = draw(
        st.sampled_from(
            [
                "fixed right size",
                "fixed wrong size",
                "deep json",
                "huge integer",
                "bad utf-8",
                "json not an object",
                "json object",
                "error text",
                "error bad utf-8",
                "error too short",
                "data consistent",
                "data inconsistent",
                "data no channels",
            ]
        )
    )
    if case.startswith("fixed"):
        kind = draw(st.sampled_from(sorted(FIXED)))
        if case == "fixed right size":
            body = draw(st.binary(min_size=FIXED[kind], max_size=FIXED[kind]))
            try:  # a PULSE echo may be one no device can send
                ok = kind != p.MsgType.PULSE or bool(p.PulseEcho.unpack(body))
            except p.FrameError:
                ok = False
            return kind, body, ok
        size = draw(st.integers(0, 64).filter(lambda n: n != FIXED[kind]))
        return kind, draw(st.binary(min_size=size, max_size=size)), False
    if case == "deep json":  # nested beyond the recursion limit, < 16 kB
        unit = draw(st.sampled_from([b"[", b'{"a":', b'[{"b":']))
        return p.MsgType.INFO, unit * draw(st.integers(1100, 16_000 // len(unit))), False
    if case == "huge integer":
        digits = draw(st.integers(4301, 9000))
        return p.MsgType.INFO, b'{"firmware": ' + b"7" * digits + b"}", False
    if case == "bad utf-8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"]))
        return p.MsgType.INFO, b'{"firmware": "' + bad + b'"}', False
    if case == "json not an object":
        value = draw(_json_values().filter(lambda v: not isinstance(v, dict)))
        return p.MsgType.INFO, json.dumps(value).encode(), False
    if case == "json object":
        obj = draw(st.dictionaries(st.text(max_size=8), _json_values(), max_size=6))
        return p.MsgType.INFO, json.dumps(obj).encode(), True
    head = p.Error.HEAD.pack(
        draw(st.integers(0, 2**16 - 1)), draw(st.integers(0, 255)), draw(st.integers(0, 2**32 - 1))
    )
    if case == "error text":
        return p.MsgType.ERROR, head + draw(st.text(max_size=40)).encode(), True
    if case == "error bad utf-8":
        return p.MsgType.ERROR, head + b"ok \xff\xfe", False
    if case == "error too short":
        return p.MsgType.ERROR, head[: draw(st.integers(0, len(head) - 1))], False
    first, scale = draw(st.integers(0, 2**64 - 1)), draw(st.floats(width=32))
    n, ch = draw(st.integers(0, 300)), draw(st.integers(1, 8))
    if case == "data consistent":
        samples = draw(st.binary(min_size=2 * n * ch, max_size=2 * n * ch))
        return p.MsgType.DATA, p.DataBlock.HEAD.pack(first, n, ch, scale) + samples, True
    if case == "data no channels":
        return p.MsgType.DATA, p.DataBlock.HEAD.pack(first, n, 0, scale), False
    extra = draw(st.integers(1, 7))
    return p.MsgType.DATA, p.DataBlock.HEAD.pack(first, n, ch, scale) + b"\x01" * (2 * n * ch + extra), False


@st.composite
def hostile_frames(draw, seq=st.integers(0, 2**32 - 1)):
    seq = draw(seq)
    how = draw(st.sampled_from(["payload", "payload", "payload", "unknown type", "oversized"]))
    if how == "unknown type":
        kind = draw(st.integers(0, 255).filter(lambda t: t not in {m.value for m in p.MsgType}))
        return Hostile(frame(kind, draw(st.binary(max_size=40)), seq), kind, False, always_bad=True)
    if how == "oversized":  # longer than 16,384 bytes once decoded
        kind = draw(st.sampled_from(list(p.MsgType)))
        size = draw(st.integers(framing.MAX_FRAME_BYTES - framing.HEADER.size - framing.CRC.size + 1, 24_000))
        return Hostile(frame(kind, bytes([draw(st.integers(1, 255))]) * size, seq), kind, False, always_bad=True)
    kind, payload, ok = draw(payloads())
    return Hostile(frame(kind, payload, seq), kind, ok)


class CheckingFrontend:
    """A front end that checks every pulse it is asked to deliver against the hard limits and the arming."""

    fs_hz = 30000.0
    electrode_positions_mm = np.array([20.0, 35.0, 50.0, 65.0])

    def __init__(self):
        self.device: Device | None = None
        self.delivered: list[float] = []

    def deliver(self, t_s, vpp, period_ms):
        ok = (
            math.isfinite(vpp)
            and 0 < vpp <= LIMITS.max_vpp
            and LIMITS.min_period_ms <= period_ms <= LIMITS.max_period_ms
            and (not self.delivered or t_s - self.delivered[-1] >= 1 / LIMITS.max_rate_hz - 1e-9)
        )
        OUTCOMES["pulses outside the hard limits"] += not ok
        OUTCOMES["pulses while disarmed"] += not self.device.armed
        self.delivered.append(t_s)
        return {"vpp_measured": vpp, "period_ms_measured": period_ms, "fibres": ()}

    def acquire(self, start_index, n):
        return np.zeros((n, 4))


def valid_commands(encoder: framing.Encoder):
    """Host commands with hostile values, correctly numbered by ``encoder``."""
    return st.one_of(
        st.just(p.Arm()),
        st.just(p.Stop()),
        st.just(p.Heartbeat()),
        st.just(p.Start()),
        st.builds(p.Configure, st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(0, 2**16 - 1)),
        st.builds(
            p.Stimulate, st.integers(0, 2**32 - 1), st.floats(width=32), st.integers(0, 2**32 - 1), st.integers(0, 255)
        ),
    ).map(lambda msg: encoder.encode(msg, 0))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_device_survives_hostile_frames_and_never_exceeds_its_limits(data):
    frontend, host = CheckingFrontend(), framing.Encoder()
    device = frontend.device = Device(frontend, block_samples=30)
    decoder = framing.FrameDecoder()
    items = data.draw(
        st.lists(st.one_of(hostile_frames(), hostile_frames(), valid_commands(host)), min_size=4, max_size=24),
        label="frames",
    )
    hostile = [h for h in items if isinstance(h, Hostile)]
    now, answers = 0, []
    try:
        device.receive(b"\x00", now)  # in sync: every frame after this one counts
        for item in items:
            wire = item.wire if isinstance(item, Hostile) else item
            cut = data.draw(st.integers(0, len(wire)), label="split")
            device.receive(wire[:cut], now)
            device.receive(wire[cut:], now)
            now += data.draw(st.integers(0, 150_000), label="µs")
            device.step(now)
            answers += decoder.feed(device.take_output())
        new_host = framing.Encoder()  # a following valid HELLO is answered...
        device.receive(new_host.encode(p.Hello(), now) + new_host.encode(p.Arm(), now), now)
        device.step(now)
        after = decoder.feed(device.take_output())
    except Exception:
        OUTCOMES["crashes"] += 1
        raise
    FUZZED["device (Device.receive)"] += len(hostile)
    assert [f.type for f in after if f.type != p.MsgType.HEARTBEAT][:2] == [p.MsgType.INFO, p.MsgType.ACK]
    assert device.armed  # ...and a following ARM executed
    assert device.link_counters["bad_frames"] == sum(h.bad_for(p.HOST_TO_DEVICE) for h in hostile)
    wrong_direction = [h for h in hostile if not h.always_bad and h.kind not in p.HOST_TO_DEVICE]
    unknown = [f for f in answers if f.type == p.MsgType.ERROR and f.msg.code == p.ErrorCode.UNKNOWN_TYPE]
    assert len(unknown) == len(wrong_direction)  # refused, payload unread
    assert OUTCOMES["pulses outside the hard limits"] == OUTCOMES["pulses while disarmed"] == 0


@pytest.fixture(scope="module")
def live_rig(tmp_path_factory):
    """A Rig on the in-process simulator, streaming and recording, shared by the examples of a test."""
    root = tmp_path_factory.mktemp("fuzz")
    with Rig("rigsim://?seed=4", session_root=root) as rig:
        rig.configure()
        with rig.record("session"):
            yield rig
    load_session(root / "session")  # what was recorded stays readable


def _check_alive(rig) -> None:
    """The host has not failed, its threads run, and the stream goes on (the next valid DATA blocks are stored)."""
    blind = rig.failure is not None or not all(t.is_alive() for t in rig._threads)
    OUTCOMES["armed while blind"] += blind and rig.serial.sim.device.armed
    OUTCOMES["crashes"] += blind
    assert not blind, rig.failure
    assert len(rig.read(0.02).samples_uv) == 600


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(hostile_frames(), min_size=1, max_size=8))
def test_the_host_reader_survives_hostile_frames_from_the_device(live_rig, frames):
    rig = live_rig
    before = rig.counters["bad_frames"]
    rig.serial.sim.send_raw(b"".join(h.wire for h in frames))
    expected = before + sum(h.bad_for(p.DEVICE_TO_HOST) for h in frames)
    assert until(lambda: rig.counters["bad_frames"] >= expected), rig.counters
    _check_alive(rig)
    assert rig.counters["bad_frames"] == expected  # exactly the bad ones
    FUZZED["host (a live Rig's reader)"] += len(frames)


def _stale_or_bad(h: Hostile) -> bool:
    """Frames a live link can take without changing the device's state: bad ones, wrong-direction types."""
    return h.always_bad or h.kind not in p.HOST_TO_DEVICE or not h.payload_ok


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(hostile_frames().filter(_stale_or_bad), min_size=1, max_size=6))
def test_the_device_behind_a_live_link_survives_hostile_frames(live_rig, frames):
    rig = live_rig
    before = rig.serial.sim.device.link_counters["bad_frames"]
    with rig._write_lock:  # between two of the host's frames
        rig.serial.write(b"".join(h.wire for h in frames))
    expected = before + sum(h.bad_for(p.HOST_TO_DEVICE) for h in frames)
    assert until(lambda: rig.counters["device_bad_frames"] >= expected), rig.counters  # reported in HEARTBEAT
    assert rig.counters["device_bad_frames"] == expected
    rig.arm()  # commands still work
    rig.disarm()
    _check_alive(rig)
    FUZZED["device (through a live Rig's link)"] += len(frames)
