"""The rig's wire framing: COBS-delimited binary frames with CRC-16/CCITT, a sequence number and a timestamp.

Frame, before COBS (all little-endian; the full specification is docs/rig-protocol.md)::

    offset  size  field
    0       1     type      (MsgType)
    1       1     flags     (0; reserved)
    2       4     seq       per-sender counter, +1 per frame, wraps at 2**32
    6       8     t_us      sender clock in µs (device: since power-up; host: its monotonic clock)
    14      n     payload   (per type: labkit.rig.firmware.protocol)
    14+n    2     crc       CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of bytes 0 .. 14+n-1

On the wire each frame is ``COBS(frame) + b"\\x00"`` (Cheshire & Baker 1999: the zero byte appears only as the
delimiter, overhead ≤ 1 + n/254 bytes). A decoder resynchronises at the next zero after any damage, and the
sequence number exposes lost frames (the weakness of protocols without one, e.g. 7-bit sample streams).

Any defect (COBS, CRC, length, type, payload) raises :class:`labkit.rig.firmware.protocol.FrameError` in
:func:`parse_frame`; :class:`FrameDecoder` counts it and goes on.
"""

import binascii
import struct
from collections.abc import Collection
from typing import Any, NamedTuple

from labkit.rig.firmware.protocol import MESSAGES, FrameError, MsgType

__all__ = [
    "HEADER",
    "CRC",
    "MAX_FRAME_BYTES",
    "MAX_SEQ_JUMP",
    "seq_newer",
    "crc16",
    "cobs_encode",
    "cobs_decode",
    "Frame",
    "Encoder",
    "parse_frame",
    "FrameDecoder",
]

HEADER = struct.Struct("<BBIQ")
CRC = struct.Struct("<H")
MAX_FRAME_BYTES = 16384  # larger decoded frames are malformed by definition
MAX_SEQ_JUMP = 2**16  # a host seq further ahead than this is refused (see seq_newer)


def seq_newer(seq: int, last: int) -> bool:
    """Whether u32 ``seq`` comes after ``last`` in serial-number arithmetic (RFC 1982, SERIAL_BITS = 32), at most
    MAX_SEQ_JUMP ahead: ``0 < (seq - last) mod 2**32 <= MAX_SEQ_JUMP``. The wrap 2**32 - 1 -> 0 is a step forward; an
    equal or older seq is a replay, and a jump far ahead is a corrupted seq (no host loses 65,536 frames in a row)."""
    return 0 < (seq - last) % 2**32 <= MAX_SEQ_JUMP


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
        out += data[i + 1 : end]
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


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
            raise ValueError(
                f"{msg.TYPE.name} frame of {len(body) + CRC.size} bytes exceeds the {MAX_FRAME_BYTES}-byte maximum"
            )
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
        msg = MESSAGES[kind].unpack(body[HEADER.size :])
    except FrameError:
        raise
    except Exception as e:  # a decoder defect must not kill the receiving thread
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
        return {
            "frames": self.frames,
            "bad_frames": self.bad_frames,
            "lost_frames": self.lost_frames,
            "out_of_order": self.out_of_order,
        }

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        parts = self._buf.split(b"\x00")
        tail = parts.pop()
        if len(tail) > 2 * MAX_FRAME_BYTES:  # no delimiter for far too long: garbage, drop it
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
                if not first:  # bytes before the first delimiter may be a partial frame
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
