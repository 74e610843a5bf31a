"""The rig's messages: every type the host and the device exchange, its number on the wire and its payload.

A message type is one declaration here: a :class:`MsgType` value and a frozen dataclass registered with
:func:`message` (its ``TYPE`` names the value; ``pack`` / ``unpack`` give the payload, fixed structs via
:class:`_Fixed`). The device's handler for a host command is the other half (labkit.rig.firmware.device). How
messages travel (COBS frames, CRC, sequence numbers) is labkit.rig.firmware.framing; the full specification is
docs/rig-protocol.md.

Samples travel as int16 counts in *offset binary* (``count ^ 0x8000`` as uint16): small signals then contain
almost no zero bytes, which keeps COBS cheap to decode.

A receiver never trusts a payload: whatever a well-formed frame (COBS and CRC correct) contains, decoding it either
gives a message or raises :class:`FrameError`, which the frame decoder counts (``bad_frames``) before going on.
"""

import enum
import json
import math
import struct
from dataclasses import astuple, dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_BLOCK_SAMPLES",
    "MsgType",
    "ErrorCode",
    "Waveform",
    "HOST_TO_DEVICE",
    "DEVICE_TO_HOST",
    "FrameError",
    "MESSAGES",
    "message",
    "Hello",
    "Info",
    "Configure",
    "Start",
    "Stop",
    "Arm",
    "Disarm",
    "Stimulate",
    "Heartbeat",
    "Ack",
    "Error",
    "PulseEcho",
    "DataBlock",
]

PROTOCOL_VERSION = 2  # 2: replay window, device counters in HEARTBEAT, BAD_SEQ (docs/rig-protocol.md)
MAX_BLOCK_SAMPLES = 2000  # so that a DATA frame of 4 channels fits: 14 + 15 + 2 * 2000 * 4 + 2 <= 16384


class MsgType(enum.IntEnum):
    # host -> device
    HELLO = 0x01
    CONFIGURE = 0x02
    START = 0x03
    STOP = 0x04
    ARM = 0x05
    DISARM = 0x06
    STIMULATE = 0x07
    HEARTBEAT = 0x08  # both directions
    # device -> host
    INFO = 0x81
    ACK = 0x82
    ERROR = 0x83
    PULSE = 0x84
    DATA = 0x85


class ErrorCode(enum.IntEnum):
    UNKNOWN_TYPE = 1
    LIMIT_VPP = 3
    LIMIT_PERIOD = 4
    LIMIT_RATE = 5
    WAVEFORM = 6
    NOT_ARMED = 7
    BAD_CONFIG = 8
    WATCHDOG = 9
    BUSY = 11
    BAD_SEQ = 12  # a replayed / duplicated command, or a seq that jumps too far ahead: not executed


HOST_TO_DEVICE = frozenset(t for t in MsgType if t < 0x80)
DEVICE_TO_HOST = frozenset(t for t in MsgType if t >= 0x80) | {MsgType.HEARTBEAT}


class Waveform(enum.IntEnum):
    BIPOLAR_SINE = 1  # one full sine cycle: charge-balanced by construction
    MONOPHASIC_SQUARE = 2  # known to the protocol, refused by the device (not charge-balanced)


class FrameError(ValueError):
    """A frame that cannot be decoded: bad COBS, bad CRC, wrong length, unknown type or bad payload."""


MESSAGES: dict[MsgType, Any] = {}


def message(cls):
    """Register ``cls`` as the payload codec of ``cls.TYPE`` (the table labkit.rig.firmware.framing.parse_frame
    decodes with)."""
    if cls.TYPE in MESSAGES:
        raise TypeError(f"{cls.TYPE.name} already has a message class: {MESSAGES[cls.TYPE].__name__}")
    MESSAGES[cls.TYPE] = cls
    return cls


@dataclass(frozen=True)
class _Fixed:
    """A message whose payload is one fixed struct of its fields, in order."""

    TYPE: ClassVar[MsgType]
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<")

    def pack(self) -> bytes:
        return self.FORMAT.pack(*astuple(self))

    @classmethod
    def unpack(cls, payload: bytes):
        if len(payload) != cls.FORMAT.size:
            raise FrameError(f"{cls.TYPE.name} payload must be {cls.FORMAT.size} bytes, got {len(payload)}")
        return cls(*cls.FORMAT.unpack(payload))


@message
@dataclass(frozen=True)
class Hello(_Fixed):
    TYPE = MsgType.HELLO


@message
@dataclass(frozen=True)
class Start(_Fixed):
    TYPE = MsgType.START


@message
@dataclass(frozen=True)
class Stop(_Fixed):
    TYPE = MsgType.STOP


@message
@dataclass(frozen=True)
class Arm(_Fixed):
    TYPE = MsgType.ARM


@message
@dataclass(frozen=True)
class Disarm(_Fixed):
    TYPE = MsgType.DISARM


@message
@dataclass(frozen=True)
class Configure(_Fixed):
    TYPE = MsgType.CONFIGURE
    FORMAT = struct.Struct("<IBH")
    sample_rate_hz: int
    n_channels: int
    block_samples: int


@message
@dataclass(frozen=True)
class Stimulate(_Fixed):
    TYPE = MsgType.STIMULATE
    FORMAT = struct.Struct("<IfIB")
    request_id: int
    vpp: float
    period_us: int
    waveform: int


@message
@dataclass(frozen=True)
class Heartbeat(_Fixed):
    """Host: all zero. Device: its state, so the host sees arming and streaming change, and its receive counters
    (mod 2**32) for the frames the host sent: discarded, lost in transit, refused for their seq (BAD_SEQ)."""

    TYPE = MsgType.HEARTBEAT
    FORMAT = struct.Struct("<BBQIII")
    armed: int = 0
    streaming: int = 0
    next_sample: int = 0
    bad_frames: int = 0
    lost_frames: int = 0
    bad_seq_frames: int = 0


@message
@dataclass(frozen=True)
class Ack(_Fixed):
    TYPE = MsgType.ACK
    FORMAT = struct.Struct("<BI")
    ref_type: int
    ref_seq: int


@message
@dataclass(frozen=True)
class PulseEcho(_Fixed):
    """What the stimulator measured it delivered (flags bit 0: aborted by STOP, DISARM or the watchdog).

    An echo no device can send is a bad frame: an unknown waveform, a voltage or duration that is not finite and
    >= 0, a requested period <= 0, a pulse not aborted that lasted 0 ms or an aborted one longer than requested."""

    TYPE = MsgType.PULSE
    FORMAT = struct.Struct("<IQffffBB")
    request_id: int
    t_start_us: int
    vpp_requested: float
    vpp_measured: float
    period_ms_requested: float
    period_ms_measured: float
    waveform: int
    flags: int = 0

    @classmethod
    def unpack(cls, payload: bytes) -> "PulseEcho":
        echo = super().unpack(payload)
        values = (echo.vpp_requested, echo.vpp_measured, echo.period_ms_requested, echo.period_ms_measured)
        delivered = (
            echo.period_ms_measured <= echo.period_ms_requested
            if echo.flags & 1  # aborted
            else echo.period_ms_measured > 0
        )
        if (
            echo.waveform not in tuple(Waveform)
            or not all(math.isfinite(v) and v >= 0 for v in values)
            or echo.period_ms_requested == 0
            or not delivered
        ):
            raise FrameError(f"PULSE echo no device can send: {echo}")
        return echo


@message
@dataclass(frozen=True)
class Error:
    """A refused command (ref_seq = its seq) or a spontaneous event such as the watchdog (ref_seq = 0)."""

    TYPE: ClassVar[MsgType] = MsgType.ERROR
    HEAD: ClassVar[struct.Struct] = struct.Struct("<HBI")
    code: int
    ref_type: int
    ref_seq: int
    message: str

    def pack(self) -> bytes:
        return self.HEAD.pack(self.code, self.ref_type, self.ref_seq) + self.message.encode()

    @classmethod
    def unpack(cls, payload: bytes) -> "Error":
        if len(payload) < cls.HEAD.size:
            raise FrameError("ERROR payload too short")
        try:
            return cls(*cls.HEAD.unpack_from(payload), payload[cls.HEAD.size :].decode())
        except UnicodeDecodeError as e:
            raise FrameError(f"ERROR message is not UTF-8: {e}") from None


@message
@dataclass(frozen=True)
class Info:
    """The device's self-description: a UTF-8 JSON object (see docs/rig-protocol.md for its keys)."""

    TYPE: ClassVar[MsgType] = MsgType.INFO
    info: dict

    def pack(self) -> bytes:
        return json.dumps(self.info, sort_keys=True).encode()

    @classmethod
    def unpack(cls, payload: bytes) -> "Info":
        try:
            info = json.loads(payload.decode())
        except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, too many digits, too deeply nested
            raise FrameError(f"INFO payload is not usable UTF-8 JSON: {type(e).__name__}: {e}") from None
        if not isinstance(info, dict):
            raise FrameError("INFO payload must be a JSON object")
        return cls(info)


@message
@dataclass(frozen=True, eq=False)
class DataBlock:
    """``counts`` (n_samples, n_channels) int16 starting at device sample ``first_sample``; µV = counts × scale."""

    TYPE: ClassVar[MsgType] = MsgType.DATA
    HEAD: ClassVar[struct.Struct] = struct.Struct("<QHBf")
    first_sample: int
    scale_uv_per_count: float
    counts: np.ndarray

    def pack(self) -> bytes:
        n, ch = self.counts.shape
        body = (np.ascontiguousarray(self.counts, dtype="<i2").view("<u2") ^ 0x8000).tobytes()
        return self.HEAD.pack(self.first_sample, n, ch, self.scale_uv_per_count) + body

    @classmethod
    def unpack(cls, payload: bytes) -> "DataBlock":
        if len(payload) < cls.HEAD.size:
            raise FrameError("DATA payload too short")
        first, n, ch, scale = cls.HEAD.unpack_from(payload)
        if ch == 0 or len(payload) != cls.HEAD.size + 2 * n * ch:
            raise FrameError(f"DATA payload length {len(payload)} does not match {n} samples x {ch} channels")
        raw = np.frombuffer(payload, dtype="<u2", offset=cls.HEAD.size)
        return cls(first, scale, (raw ^ 0x8000).view("<i2").reshape(n, ch))


_unregistered = set(MsgType) - set(MESSAGES)
if _unregistered:
    raise TypeError(f"message types without a @message class: {sorted(t.name for t in _unregistered)}")
