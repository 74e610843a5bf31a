"""The rig's wire protocol: COBS-delimited binary frames with CRC-16/CCITT, a sequence number and a timestamp.

Frame, before COBS (all little-endian; the full specification is docs/rig-protocol.md)::

    offset  size  field
    0       1     type      (MsgType)
    1       1     flags     (0; reserved)
    2       4     seq       per-sender counter, +1 per frame, wraps at 2**32
    6       8     t_us      sender clock in µs (device: since power-up; host: its monotonic clock)
    14      n     payload   (per type, below)
    14+n    2     crc       CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of bytes 0 .. 14+n-1

On the wire each frame is ``COBS(frame) + b"\\x00"`` (Cheshire & Baker 1999: the zero byte appears only as the
delimiter, overhead ≤ 1 + n/254 bytes). A decoder resynchronises at the next zero after any damage, and the
sequence number exposes lost frames (the weakness of protocols without one, e.g. 7-bit sample streams).

Samples travel as int16 counts in *offset binary* (``count ^ 0x8000`` as uint16): small signals then contain
almost no zero bytes, which keeps COBS cheap to decode.

A receiver never trusts a payload: whatever a well-formed frame (COBS and CRC correct) contains, decoding it either
gives a message or raises :class:`FrameError`, which :class:`FrameDecoder` counts (``bad_frames``) before going on.
"""

import binascii
import enum
import json
import math
import struct
from dataclasses import astuple, dataclass
from typing import Any, ClassVar, Collection, NamedTuple

import numpy as np

__all__ = [
    "PROTOCOL_VERSION", "MsgType", "ErrorCode", "Waveform", "HEADER", "MAX_FRAME_BYTES", "MAX_BLOCK_SAMPLES",
    "MAX_SEQ_JUMP", "HOST_TO_DEVICE", "DEVICE_TO_HOST", "seq_newer",
    "Hello", "Info", "Configure", "Start", "Stop", "Arm", "Disarm", "Stimulate", "Heartbeat", "Ack", "Error",
    "PulseEcho", "DataBlock", "Frame", "crc16", "cobs_encode", "cobs_decode", "FrameError", "Encoder",
    "FrameDecoder", "parse_frame",
]

PROTOCOL_VERSION = 2             # 2: replay window, device counters in HEARTBEAT, BAD_SEQ (docs/rig-protocol.md)
HEADER = struct.Struct("<BBIQ")
CRC = struct.Struct("<H")
MAX_FRAME_BYTES = 16384          # larger decoded frames are malformed by definition
MAX_BLOCK_SAMPLES = 2000         # so that a DATA frame of 4 channels fits: 14 + 15 + 2 * 2000 * 4 + 2 <= 16384
MAX_SEQ_JUMP = 2**16             # a host seq further ahead than this is refused (see seq_newer)


class MsgType(enum.IntEnum):
    # host -> device
    HELLO = 0x01
    CONFIGURE = 0x02
    START = 0x03
    STOP = 0x04
    ARM = 0x05
    DISARM = 0x06
    STIMULATE = 0x07
    HEARTBEAT = 0x08             # both directions
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
    BAD_SEQ = 12                 # a replayed / duplicated command, or a seq that jumps too far ahead: not executed


HOST_TO_DEVICE = frozenset(t for t in MsgType if t < 0x80)
DEVICE_TO_HOST = frozenset(t for t in MsgType if t >= 0x80) | {MsgType.HEARTBEAT}


def seq_newer(seq: int, last: int) -> bool:
    """Whether u32 ``seq`` comes after ``last`` in serial-number arithmetic (RFC 1982, SERIAL_BITS = 32), at most
    MAX_SEQ_JUMP ahead: ``0 < (seq - last) mod 2**32 <= MAX_SEQ_JUMP``. The wrap 2**32 - 1 -> 0 is a step forward; an
    equal or older seq is a replay, and a jump far ahead is a corrupted seq (no host loses 65,536 frames in a row)."""
    return 0 < (seq - last) % 2**32 <= MAX_SEQ_JUMP


class Waveform(enum.IntEnum):
    BIPOLAR_SINE = 1             # one full sine cycle: charge-balanced by construction
    MONOPHASIC_SQUARE = 2        # known to the protocol, refused by the device (not charge-balanced)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE; ``crc16(b"123456789") == 0x29B1``."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result contains no zero byte."""
    out = bytearray()
    for chunk in bytes(data).split(b"\x00"):
        while len(chunk) >= 254:
            out.append(0xFF)
            out += chunk[:254]
            chunk = chunk[254:]
        out.append(len(chunk) + 1)
        out += chunk
    return bytes(out)


class FrameError(ValueError):
    """A frame that cannot be decoded: bad COBS, bad CRC, wrong length, unknown type or bad payload."""


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("zero byte inside a COBS frame")
        end = i + code
        if end > n:
            raise FrameError("COBS block runs past the end of the frame")
        out += data[i + 1:end]
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --- messages ---------------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class Hello(_Fixed):
    TYPE = MsgType.HELLO


@dataclass(frozen=True)
class Start(_Fixed):
    TYPE = MsgType.START


@dataclass(frozen=True)
class Stop(_Fixed):
    TYPE = MsgType.STOP


@dataclass(frozen=True)
class Arm(_Fixed):
    TYPE = MsgType.ARM


@dataclass(frozen=True)
class Disarm(_Fixed):
    TYPE = MsgType.DISARM


@dataclass(frozen=True)
class Configure(_Fixed):
    TYPE = MsgType.CONFIGURE
    FORMAT = struct.Struct("<IBH")
    sample_rate_hz: int
    n_channels: int
    block_samples: int


@dataclass(frozen=True)
class Stimulate(_Fixed):
    TYPE = MsgType.STIMULATE
    FORMAT = struct.Struct("<IfIB")
    request_id: int
    vpp: float
    period_us: int
    waveform: int


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


@dataclass(frozen=True)
class Ack(_Fixed):
    TYPE = MsgType.ACK
    FORMAT = struct.Struct("<BI")
    ref_type: int
    ref_seq: int


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
        delivered = (echo.period_ms_measured <= echo.period_ms_requested if echo.flags & 1   # aborted
                     else echo.period_ms_measured > 0)
        if (echo.waveform not in tuple(Waveform) or not all(math.isfinite(v) and v >= 0 for v in values)
                or echo.period_ms_requested == 0 or not delivered):
            raise FrameError(f"PULSE echo no device can send: {echo}")
        return echo


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
            return cls(*cls.HEAD.unpack_from(payload), payload[cls.HEAD.size:].decode())
        except UnicodeDecodeError as e:
            raise FrameError(f"ERROR message is not UTF-8: {e}") from None


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
        except (ValueError, RecursionError) as e:          # bad UTF-8 or JSON, too many digits, too deeply nested
            raise FrameError(f"INFO payload is not usable UTF-8 JSON: {type(e).__name__}: {e}") from None
        if not isinstance(info, dict):
            raise FrameError("INFO payload must be a JSON object")
        return cls(info)


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


MESSAGES: dict[MsgType, Any] = {m.TYPE: m for m in (Hello, Configure, Start, Stop, Arm, Disarm, Stimulate, Heartbeat,
                                                      Info, Ack, Error, PulseEcho, DataBlock)}


class Frame(NamedTuple):
    type: MsgType
    seq: int
    t_us: int
    msg: Any


class Encoder:
    """Turns messages into wire bytes, numbering them (one Encoder per sender)."""

    def __init__(self) -> None:
        self.seq = 0

    def encode(self, msg, t_us: int) -> bytes:
        body = HEADER.pack(msg.TYPE, 0, self.seq, t_us) + msg.pack()
        if len(body) + CRC.size > MAX_FRAME_BYTES:
            raise ValueError(f"{msg.TYPE.name} frame of {len(body) + CRC.size} bytes exceeds the "
                             f"{MAX_FRAME_BYTES}-byte maximum")
        self.seq = (self.seq + 1) % 2**32
        return cobs_encode(body + CRC.pack(crc16(body))) + b"\x00"


def parse_frame(decoded: bytes, decodes: Collection[MsgType] = frozenset(MsgType)) -> Frame:
    """One COBS-decoded frame -> Frame; raises FrameError on any defect. The payload is decoded for the types in
    ``decodes`` only: a frame of another known type comes back with ``msg`` None, its payload unread."""
    if not HEADER.size + CRC.size <= len(decoded) <= MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(decoded)} bytes; allowed: {HEADER.size + CRC.size} to {MAX_FRAME_BYTES}")
    body, (crc,) = decoded[:-2], CRC.unpack(decoded[-2:])
    if crc16(body) != crc:
        raise FrameError("CRC mismatch")
    kind, _flags, seq, t_us = HEADER.unpack_from(body)
    try:
        kind = MsgType(kind)
    except ValueError:
        raise FrameError(f"unknown message type 0x{kind:02x}") from None
    if kind not in decodes:
        return Frame(kind, seq, t_us, None)
    try:
        msg = MESSAGES[kind].unpack(body[HEADER.size:])
    except FrameError:
        raise
    except Exception as e:                                 # a decoder defect must not kill the receiving thread
        raise FrameError(f"{kind.name} payload could not be decoded: {type(e).__name__}: {e}") from None
    return Frame(kind, seq, t_us, msg)


class FrameDecoder:
    """Incremental decoder for one direction of the link. Never raises on bad input: it counts.

    ``decodes``: the message types whose payload this receiver reads (the device: HOST_TO_DEVICE; the host:
    DEVICE_TO_HOST); frames of the other known types come back with ``msg`` None (see :func:`parse_frame`).
    Counters: ``frames`` (good), ``bad_frames`` (discarded: COBS, CRC, length, type or payload defects; bytes before
    the first delimiter are decoded if they form a whole frame, else skipped uncounted: joining a stream mid-frame
    is not an error), ``lost_frames`` (sequence numbers skipped between good frames:
    frames lost or damaged in transit), ``out_of_order`` (a good frame whose seq went backwards).
    """

    def __init__(self, decodes: Collection[MsgType] = frozenset(MsgType)) -> None:
        self.decodes = frozenset(decodes)
        self._buf = bytearray()
        self._synced = False
        self._expected: int | None = None
        self.frames = self.bad_frames = self.lost_frames = self.out_of_order = 0
        self.last_error = ""

    def counters(self) -> dict[str, int]:
        return {"frames": self.frames, "bad_frames": self.bad_frames, "lost_frames": self.lost_frames,
                "out_of_order": self.out_of_order}

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        parts = self._buf.split(b"\x00")
        tail = parts.pop()
        if len(tail) > 2 * MAX_FRAME_BYTES:     # no delimiter for far too long: garbage, drop it
            self.bad_frames += 1
            self.last_error = "no frame delimiter within the maximum frame size"
            tail = b""
        self._buf = bytearray(tail)
        out = []
        for raw in parts:
            first, self._synced = not self._synced, True
            if not raw:
                continue
            try:
                frame = parse_frame(cobs_decode(raw), self.decodes)
            except FrameError as e:
                if not first:                    # bytes before the first delimiter may be a partial frame
                    self.bad_frames += 1
                    self.last_error = str(e)
                continue
            self.frames += 1
            if self._expected is not None:
                gap = (frame.seq - self._expected) % 2**32
                if gap >= 2**31:
                    self.out_of_order += 1
                else:
                    self.lost_frames += gap
            self._expected = (frame.seq + 1) % 2**32
            out.append(frame)
        return out
