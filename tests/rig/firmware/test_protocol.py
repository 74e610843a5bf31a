"""Framing and decoding: round trips, and a decoder that survives any damage, counts it exactly and resyncs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.rig.firmware import framing
from labkit.rig.firmware import protocol as p


def test_crc_check_value():
    assert framing.crc16(b"123456789") == 0x29B1


@given(st.binary(max_size=2000))
def test_cobs_round_trip_has_no_zero_bytes(data):
    encoded = framing.cobs_encode(data)
    assert 0 not in encoded
    assert framing.cobs_decode(encoded) == data
    assert len(encoded) <= len(data) + 1 + len(data) // 254 + 1


MESSAGES = [
    p.Hello(),
    p.Start(),
    p.Stop(),
    p.Arm(),
    p.Disarm(),
    p.Configure(30000, 4, 300),
    p.Stimulate(7, 3.5, 3000, p.Waveform.BIPOLAR_SINE),
    p.Heartbeat(1, 1, 123456789),
    p.Heartbeat(0, 1, 5, 2, 3, 4),
    p.Ack(p.MsgType.ARM, 41),
    p.Error(p.ErrorCode.LIMIT_VPP, p.MsgType.STIMULATE, 9, "vpp=12 V is outside the hard limit"),
    p.PulseEcho(
        7, 10_000_000, 3.5, 3.25, 3.0, 2.5, 1, 0
    ),  # float32-exact values, p.Info({"firmware": "x", "limits": {"max_vpp": 10}}),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_message_round_trip(msg):
    (frame,) = framing.FrameDecoder().feed(framing.Encoder().encode(msg, t_us=42))
    assert frame.msg == msg and frame.seq == 0 and frame.t_us == 42 and frame.type == msg.TYPE


@given(st.lists(st.integers(-32768, 32767), min_size=4, max_size=4 * 400).filter(lambda v: len(v) % 4 == 0))
def test_data_block_round_trip(values):
    counts = np.array(values, np.int16).reshape(-1, 4)
    (frame,) = framing.FrameDecoder().feed(framing.Encoder().encode(p.DataBlock(99, 0.2, counts), 1))
    np.testing.assert_array_equal(frame.msg.counts, counts)
    assert frame.msg.first_sample == 99 and frame.msg.scale_uv_per_count == pytest.approx(0.2)


def _stream(n_frames, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    enc = framing.Encoder()
    frames = [
        enc.encode(p.DataBlock(300 * i, 0.2, rng.integers(-400, 400, (30, 4)).astype(np.int16)), i)
        for i in range(n_frames)
    ]
    return frames


def _check_exact(decoder, good_seqs):
    """Lost-frame count equals the sequence numbers missing between the first and last good frame."""
    if good_seqs:
        assert decoder.lost_frames == (good_seqs[-1] - good_seqs[0] + 1) - len(good_seqs)


@given(st.binary(max_size=5000))
def test_random_bytes_never_raise(data):
    dec = framing.FrameDecoder()
    for i in range(0, len(data), 97):
        dec.feed(data[i : i + 97])
    assert dec.frames + dec.bad_frames >= 0


@settings(max_examples=200)
@given(st.data())
def test_bit_flips_are_counted_and_resync_within_one_frame(data):
    frames = _stream(12)
    k = data.draw(st.integers(1, 10), label="damaged frame")
    bit = data.draw(st.integers(0, 8 * len(frames[k]) - 1), label="bit")
    damaged = bytearray(frames[k])
    damaged[bit // 8] ^= 1 << (bit % 8)
    dec = framing.FrameDecoder()
    got = dec.feed(b"".join(frames[:k]) + bytes(damaged) + b"".join(frames[k + 1 :]))
    seqs = [f.seq for f in got]
    # only frame k (and frame k+1, if its delimiter was destroyed) can be lost; all others decode
    assert set(range(12)) - {k, k + 1} <= set(seqs) <= set(range(12))
    assert dec.bad_frames >= 1
    _check_exact(dec, seqs)


@settings(max_examples=200)
@given(st.data())
def test_truncated_and_dropped_bytes(data):
    frames = _stream(10)
    k = data.draw(st.integers(1, 8))
    start = data.draw(st.integers(0, len(frames[k]) - 2))
    stop = data.draw(st.integers(start + 1, len(frames[k]) - 1))  # keep the delimiter: the next frame survives
    damaged = frames[k][:start] + frames[k][stop:]
    dec = framing.FrameDecoder()
    got = dec.feed(b"".join(frames[:k]) + damaged + b"".join(frames[k + 1 :]))
    assert [f.seq for f in got] == [i for i in range(10) if i != k]
    emptied = start == 0 and stop == len(frames[k]) - 1  # nothing but the delimiter left: a dropped frame
    assert dec.bad_frames == (0 if emptied else 1) and dec.lost_frames == 1


@given(st.sets(st.integers(1, 48), max_size=20), st.integers(1, 500))
def test_dropped_frames_give_exact_gap_counts_whatever_the_chunking(dropped, chunk):
    frames = _stream(50)
    wire = b"".join(f for i, f in enumerate(frames) if i not in dropped)
    dec = framing.FrameDecoder()
    got = [f for i in range(0, len(wire), chunk) for f in dec.feed(wire[i : i + chunk])]
    assert [f.seq for f in got] == [i for i in range(50) if i not in dropped]
    assert dec.lost_frames == len(dropped) and dec.bad_frames == 0


def test_joining_mid_frame_is_not_an_error_but_later_damage_is():
    frames = _stream(3)
    dec = framing.FrameDecoder()
    assert [f.seq for f in dec.feed(frames[0][5:] + frames[1] + frames[2])] == [1, 2]
    assert dec.bad_frames == 0
    dec.feed(b"\x07\x01garbage\x00")
    assert dec.bad_frames == 1 and dec.last_error


def test_unknown_type_and_bad_payload_are_bad_frames():
    body = framing.HEADER.pack(0x55, 0, 0, 0)
    wire = framing.cobs_encode(body + framing.CRC.pack(framing.crc16(body))) + b"\x00"
    body2 = framing.HEADER.pack(p.MsgType.CONFIGURE, 0, 1, 0) + b"\x01"
    wire2 = framing.cobs_encode(body2 + framing.CRC.pack(framing.crc16(body2))) + b"\x00"
    dec = framing.FrameDecoder()
    assert dec.feed(b"\x00" + wire + wire2) == [] and dec.bad_frames == 2


def test_a_stream_without_delimiters_is_bounded():
    dec = framing.FrameDecoder()
    dec.feed(b"\x00")
    for _ in range(10):
        dec.feed(b"\x01" * 10_000)
    assert len(dec._buf) <= 2 * framing.MAX_FRAME_BYTES and dec.bad_frames >= 1


def frame(kind: int, payload: bytes, seq: int = 0) -> bytes:
    """A well-formed frame (correct COBS and CRC) of any type and payload, bypassing the Encoder's checks."""
    body = framing.HEADER.pack(kind, 0, seq, 0) + payload
    return framing.cobs_encode(body + framing.CRC.pack(framing.crc16(body))) + b"\x00"


HOSTILE_PAYLOADS = {
    "deep JSON": (p.MsgType.INFO, b"[" * 5000),
    "5000-digit integer": (p.MsgType.INFO, b'{"firmware": ' + b"9" * 5000 + b"}"),
    "invalid UTF-8": (p.MsgType.INFO, b'{"firmware": "\xff\xfe"}'),
    "JSON that is not an object": (p.MsgType.INFO, b"[1, 2, 3]"),
    "ERROR message not UTF-8": (p.MsgType.ERROR, p.Error.HEAD.pack(1, 1, 1) + b"\xc3\x28"),
    "DATA of the wrong length": (p.MsgType.DATA, p.DataBlock.HEAD.pack(0, 10, 4, 0.2) + b"\x01\x80" * 39),
}


@pytest.mark.parametrize("name", HOSTILE_PAYLOADS)
def test_a_well_formed_frame_with_a_hostile_payload_is_a_bad_frame(name):
    kind, payload = HOSTILE_PAYLOADS[name]
    good = framing.Encoder().encode(p.Heartbeat(), 1)
    dec = framing.FrameDecoder()
    got = dec.feed(b"\x00" + frame(kind, payload) + good)
    assert [f.type for f in got] == [p.MsgType.HEARTBEAT] and dec.bad_frames == 1
    with pytest.raises(p.FrameError):
        framing.parse_frame(framing.cobs_decode(frame(kind, payload)[:-1]))


def test_frames_longer_than_the_maximum_are_invalid_even_when_they_arrive_in_one_read():
    n = 2100  # 4 channels: 16,800 bytes of samples
    big = frame(p.MsgType.DATA, p.DataBlock.HEAD.pack(0, n, 4, 0.2) + b"\x01\x80" * (4 * n))
    assert len(framing.cobs_decode(big[:-1])) > framing.MAX_FRAME_BYTES
    dec = framing.FrameDecoder()
    assert dec.feed(b"\x00" + big) == [] and dec.bad_frames == 1 and "16384" in dec.last_error
    with pytest.raises(ValueError, match="16384"):  # and no sender produces one
        framing.Encoder().encode(p.DataBlock(0, 0.2, np.zeros((n, 4), np.int16)), 0)


def test_a_receiver_does_not_read_the_payload_of_the_other_direction():
    dec = framing.FrameDecoder(decodes=p.HOST_TO_DEVICE)
    (got,) = dec.feed(b"\x00" + frame(p.MsgType.INFO, b"[" * 5000, seq=3))
    assert (got.type, got.seq, got.msg) == (p.MsgType.INFO, 3, None) and dec.bad_frames == 0
    assert set(p.HOST_TO_DEVICE) & set(p.DEVICE_TO_HOST) == {p.MsgType.HEARTBEAT}
    assert set(p.HOST_TO_DEVICE) | set(p.DEVICE_TO_HOST) == set(p.MsgType)


def test_every_message_type_is_one_registered_class():
    """A message type is one declaration: its MsgType value and its @message class (labkit.rig.firmware.protocol)."""
    assert set(p.MESSAGES) == set(p.MsgType)
    assert all(cls.TYPE == kind for kind, cls in p.MESSAGES.items())

    class Again:
        TYPE = p.MsgType.ARM

    with pytest.raises(TypeError, match="ARM already has a message class: Arm"):
        p.message(Again)
    assert p.MESSAGES[p.MsgType.ARM] is p.Arm
