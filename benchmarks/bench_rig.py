"""Benchmarks of the rig link, each against a baseline or a requirement measured in the same run.

1. Host decode throughput (samples/s) of ``FrameDecoder`` against a naive per-byte decoder (byte-at-a-time COBS
   state machine, bitwise CRC, one struct call per sample) on the same recorded wire bytes; both must agree.
   Also the real-time factor against 4 channels × 30 kS/s.
2. Sustained streaming at 4 × 30 kS/s for ``--seconds`` (default 30) over a real pty from a separate simulator
   process: frames lost, bad frames, samples lost, and the host process's CPU share.
3. stimulate → echo round-trip latency over the pty (p50 / p99), for the shortest allowed pulse (0.5 ms) and a
   3 ms pulse; the echo leaves the device when the pulse has been delivered, so the pulse length is included.
"""

import argparse
import resource
import struct
import subprocess
import sys
import time

import numpy as np

from labkit import paths
from labkit.rig import Rig
from labkit.rig.firmware.framing import HEADER, Encoder, FrameDecoder
from labkit.rig.firmware.protocol import DataBlock, MsgType

REAL_TIME_SAMPLES_S = 4 * 30000


def naive_decode(wire: bytes) -> list[int]:
    """Per-byte reference decoder: every sample of every good DATA frame, as a list of ints."""
    out: list[int] = []
    frame, code, remaining = bytearray(), 0, 0
    for byte in wire:
        if byte == 0:  # delimiter: one frame complete
            body, crc = frame[:-2], frame[-2] | frame[-1] << 8
            c = 0xFFFF
            for b in body:  # bitwise CRC-16/CCITT-FALSE
                c ^= b << 8
                for _ in range(8):
                    c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
            if len(frame) > HEADER.size + 2 and c == crc and body[0] == MsgType.DATA:
                n, ch = struct.unpack_from("<HB", body, HEADER.size + 8)
                for i in range(n * ch):
                    (raw,) = struct.unpack_from("<H", body, HEADER.size + 15 + 2 * i)
                    out.append((raw ^ 0x8000) - 65536 if raw < 0x8000 else raw ^ 0x8000)
            frame, code, remaining = bytearray(), 0, 0
        elif remaining == 0:  # a COBS code byte
            if code not in (0, 0xFF):
                frame.append(0)
            code, remaining = byte, byte - 1
        else:
            frame.append(byte)
            remaining -= 1
    return out


def bench_decode(n_frames: int = 400) -> None:
    rng = np.random.default_rng(0)
    enc = Encoder()
    blocks = [rng.normal(0, 60, (300, 4)).astype(np.int16) for _ in range(n_frames)]
    frames = [enc.encode(DataBlock(300 * i, 0.2, b), i) for i, b in enumerate(blocks)]
    wire = b"".join(frames)
    samples = n_frames * 300 * 4
    best = float("inf")
    for _ in range(3):
        dec = FrameDecoder()
        t0 = time.perf_counter()
        got = sum(len(f.msg.counts) * 4 for i in range(0, len(wire), 4096) for f in dec.feed(wire[i : i + 4096]))
        best = min(best, time.perf_counter() - t0)
    assert got == samples and dec.bad_frames == 0
    t0 = time.perf_counter()
    reference = naive_decode(b"".join(frames[: n_frames // 10]))  # a tenth: it is slow
    naive = (time.perf_counter() - t0) * 10
    assert reference == np.concatenate(blocks[: n_frames // 10]).ravel().tolist(), "decoders disagree"
    rate = samples / best
    print(
        f"decode: {rate / 1e6:.2f} M samples/s ({rate / REAL_TIME_SAMPLES_S:.0f}x real time at 4 x 30 kS/s); "
        f"naive per-byte decoder {samples / naive / 1e6:.3f} M samples/s; ratio {naive / best:.0f}x"
    )


def bench_link(seconds: float, n_pulses: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "labkit.rig.simulator.sim", "--pty", "--seed", "0"],
        cwd=paths.ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = proc.stdout.readline().strip()
        with Rig(port) as rig:
            rig.configure(sample_rate=30000, channels=4)
            rig.read(0.5)
            cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            received = sum(len(rig.read(1.0).samples_uv) for _ in range(int(seconds)))
            cpu1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall0
            cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            c = rig.counters
            print(
                f"streaming {int(seconds)} s over {port}: {received} samples x 4 channels, frames lost "
                f"{c['lost_frames']}, bad frames {c['bad_frames']}, samples lost {c['samples_lost']}; "
                f"host CPU {100 * cpu / wall:.1f}% of one core"
            )
            rig.arm()
            for period in (0.5, 3.0):
                latencies = []
                for _ in range(n_pulses):
                    t0 = time.perf_counter()
                    rig.stimulate(vpp=3.0, period_ms=period)
                    latencies.append((time.perf_counter() - t0) * 1e3)
                    time.sleep(0.105)
                p50, p99 = np.percentile(latencies, [50, 99])
                print(f"stimulate -> echo, {period} ms pulse, {n_pulses} pulses: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
            rig.disarm()
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--pulses", type=int, default=100)
    args = parser.parse_args()
    bench_decode()
    bench_link(args.seconds, args.pulses)


if __name__ == "__main__":
    main()
