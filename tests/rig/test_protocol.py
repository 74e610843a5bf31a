"""Framing and decoding: round trips, and a decoder that survives any damage, counts it exactly and resyncs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.rig import protocol as p


def test_crc_check_value():
    assert p.crc16(b"123456789") == 0x29B1


@given(st.binary(max_size=2000))
def test_cobs_round_trip_has_no_zero_bytes(data):
    encoded = p.cobs_encode(data)
    assert 0 not in encoded
    assert p.cobs_decode(encoded) == data
    assert len(encoded) <= len(data) + 1 + len(data) // 254 + 1


MESSAGES = [
    p.Hello(), p.Start(), p.Stop(), p.Arm(), p.Disarm(), p.Configure(30000, 4, 300),
    p.Stimulate(7, 3.5, 3000, p.Waveform.BIPOLAR_SINE), p.Heartbeat(1, 1, 123456789), p.Ack(p.MsgType.ARM, 41),
    p.Error(p.ErrorCode.LIMIT_VPP, p.MsgType.STIMULATE, 9, "vpp=12 V is outside the hard limit"),
    p.PulseEcho(7, 10_000_000, 3.5, 3.25, 3.0, 2.5, 1, 0)  # float32-exact values, p.Info({"firmware": "x", "limits": {"max_vpp": 10}}),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_message_round_trip(msg):
    frame, = p.FrameDecoder().feed(p.Encoder().encode(msg, t_us=42))
    assert frame.msg == msg and frame.seq == 0 and frame.t_us == 42 and frame.type == msg.TYPE


@given(st.lists(st.integers(-32768, 32767), min_size=4, max_size=4 * 400).filter(lambda v: len(v) % 4 == 0))
def test_data_block_round_trip(values):
    counts = np.array(values, np.int16).reshape(-1, 4)
    frame, = p.FrameDecoder().feed(p.Encoder().encode(p.DataBlock(99, 0.2, counts), 1))
    np.testing.assert_array_equal(frame.msg.counts, counts)
    assert frame.msg.first_sample == 99 and frame.msg.scale_uv_per_count == pytest.approx(0.2)


def _stream(n_frames, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    enc = p.Encoder()
    frames = [enc.encode(p.DataBlock(300 * i, 0.2, rng.integers(-400, 400, (30, 4)).astype(np.int16)), i)
              for i in range(n_frames)]
    return frames


def _check_exact(decoder, good_seqs):
    """Lost-frame count equals the sequence numbers missing between the first and last good frame."""
    if good_seqs:
        assert decoder.lost_frames == (good_seqs[-1] - good_seqs[0] + 1) - len(good_seqs)


@given(st.binary(max_size=5000))
def test_random_bytes_never_raise(data):
    dec = p.FrameDecoder()
    for i in range(0, len(data), 97):
        dec.feed(data[i:i + 97])
    assert dec.frames + dec.bad_frames >= 0


@settings(max_examples=200)
@given(st.data())
def test_bit_flips_are_counted_and_resync_within_one_frame(data):
    frames = _stream(12)
    k = data.draw(st.integers(1, 10), label="damaged frame")
    bit = data.draw(st.integers(0, 8 * len(frames[k]) - 1), label="bit")
    damaged = bytearray(frames[k])
    damaged[bit // 8] ^= 1 << (bit % 8)
    dec = p.FrameDecoder()
    got = dec.feed(b"".join(frames[:k]) + bytes(damaged) + b"".join(frames[k + 1:]))
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
    stop = data.draw(st.integers(start + 1, len(frames[k]) - 1))   # keep the delimiter: the next frame survives
    damaged = frames[k][:start] + frames[k][stop:]
    dec = p.FrameDecoder()
    got = dec.feed(b"".join(frames[:k]) + damaged + b"".join(frames[k + 1:]))
    assert [f.seq for f in got] == [i for i in range(10) if i != k]
    emptied = start == 0 and stop == len(frames[k]) - 1          # nothing but the delimiter left: a dropped frame
    assert dec.bad_frames == (0 if emptied else 1) and dec.lost_frames == 1


@given(st.sets(st.integers(1, 48), max_size=20), st.integers(1, 500))
def test_dropped_frames_give_exact_gap_counts_whatever_the_chunking(dropped, chunk):
    frames = _stream(50)
    wire = b"".join(f for i, f in enumerate(frames) if i not in dropped)
    dec = p.FrameDecoder()
    got = [f for i in range(0, len(wire), chunk) for f in dec.feed(wire[i:i + chunk])]
    assert [f.seq for f in got] == [i for i in range(50) if i not in dropped]
    assert dec.lost_frames == len(dropped) and dec.bad_frames == 0


def test_joining_mid_frame_is_not_an_error_but_later_damage_is():
    frames = _stream(3)
    dec = p.FrameDecoder()
    assert [f.seq for f in dec.feed(frames[0][5:] + frames[1] + frames[2])] == [1, 2]
    assert dec.bad_frames == 0
    dec.feed(b"\x07\x01garbage\x00")
    assert dec.bad_frames == 1 and dec.last_error


def test_unknown_type_and_bad_payload_are_bad_frames():
    body = p.HEADER.pack(0x55, 0, 0, 0)
    wire = p.cobs_encode(body + p.CRC.pack(p.crc16(body))) + b"\x00"
    body2 = p.HEADER.pack(p.MsgType.CONFIGURE, 0, 1, 0) + b"\x01"
    wire2 = p.cobs_encode(body2 + p.CRC.pack(p.crc16(body2))) + b"\x00"
    dec = p.FrameDecoder()
    assert dec.feed(b"\x00" + wire + wire2) == [] and dec.bad_frames == 2


def test_a_stream_without_delimiters_is_bounded():
    dec = p.FrameDecoder()
    dec.feed(b"\x00")
    for _ in range(10):
        dec.feed(b"\x01" * 10_000)
    assert len(dec._buf) <= 2 * p.MAX_FRAME_BYTES and dec.bad_frames >= 1
