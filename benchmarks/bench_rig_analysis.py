"""Benchmarks of the rig analysis, each against a naive baseline measured in the same run (both must agree).

1. Tracking throughput (frames/s) of ``SegmentTracker.update`` on 640×160 frames of the simulated camera, on one
   core (OpenCV and BLAS limited to 1 thread), against the same algorithm written as per-pixel / per-column Python
   loops; the requirement is >= 100 frames/s. Decoding the MJPG is timed separately.
2. Analysis throughput (seconds of recording analysed per second) of the conduction-velocity pipeline of
   ``labkit.rig.analysis`` (epochs, artefact template and subtraction, zero-phase band-pass, first-spike arrival
   times, per-trial velocity) on a simulated 4-pair recording at 30 kS/s, 1 pulse/s, against a per-trial,
   per-sample Python loop doing the same steps (the band-pass is the same scipy call, per trial and pair); they
   must agree on >= 95 % of the arrival times (a sample within float rounding of the threshold may flip).
"""

import argparse
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from labkit.rig.analysis.cleaning import artefact_template, subtract_artefact
from labkit.rig.analysis.epochs import bandpass, epochs
from labkit.rig.analysis.propagation import fit_velocities
from labkit.rig.analysis.spikes import arrival_times, noise_sigma
from labkit.rig.analysis.tracking import SegmentTracker, read_frames
from labkit.rig.simulator.video import render_video
from labkit.rig.simulator.worm import Earthworm


def _best_rate(fn, n_items: float, repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_items / best


# ---- 1. tracking ---------------------------------------------------------------------------------------------


def naive_lengths(frame: np.ndarray, n_zones: int) -> np.ndarray | None:
    """SegmentTracker's zone lengths, one pixel and one column at a time (None when the frame is not usable)."""
    h, w = frame.shape[:2]
    top, bottom = int(0.25 * h), int(0.75 * h)
    width = [0.0] * w
    for x in range(w):
        for y in range(top, bottom):
            b, r = int(frame[y, x, 0]), int(frame[y, x, 2])
            if r - b > 50:
                width[x] += 1
    mid = (bottom - top) // 2 + top
    midline = [sum(float(frame[y, x, 2]) for y in range(mid - 3, mid + 4)) / 7 for x in range(w)]
    limit = max(3, 0.3 * float(np.percentile(width, 90)))
    cols = [x for x in range(w) if width[x] >= limit]
    head, tail = cols[0], cols[-1]
    inset = int(0.75 * float(np.median([width[x] for x in cols])))
    half_head, half_tail = width[min(head + inset, w - 1)] / 2, width[max(tail - inset, 0)] / 2
    lo, hi = int(head + half_head) + 2, int(tail - half_tail) - 1
    on = [1.0 if lo <= x < hi else 0.0 for x in range(w)]
    span = max(4, int(round(2 * (tail - head) / n_zones)))

    def box_mean(values, n, x):
        a, b = max(0, x - n // 2), min(w, x + n - n // 2)
        return sum(values[a:b]) / max(sum(on[a:b]), 1)

    p = [midline[x] * on[x] for x in range(w)]
    detail = [box_mean(p, 3, x) - box_mean(p, span, x) if on[x] else 0.0 for x in range(w)]
    crossings = []
    for x in range(w - 1):
        a, b = detail[x], detail[x + 1]
        if on[x] and on[x + 1] and a != 0 and np.sign(a) != np.sign(b):
            crossings.append(x + a / (a - b))
    ends = [head + half_head] + crossings + [tail + 1 - half_tail]
    lengths = np.diff(ends)
    return lengths if len(lengths) == n_zones else None


def bench_tracking(n_frames: int) -> None:
    worm = Earthworm(seed=0, spontaneous_rate_hz=0.0)
    for k in range(math.ceil(n_frames / 30)):
        worm.deliver(0.3 + k, 6.0, 3.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.avi"
        render_video(worm, path, 0.0, n_frames / 30, fps=30.0, led_times_s=0.3 + np.arange(n_frames // 30 + 1), seed=0)
        t0 = time.perf_counter()
        frames = list(read_frames(path))
        decode = len(frames) / (time.perf_counter() - t0)
    assert frames[0].shape == (160, 640, 3)

    def fast():
        tracker = SegmentTracker()
        return [tracker.update(f) for f in frames]

    results = fast()
    n_zones = len(results[0].lengths_px)
    rate = _best_rate(fast, len(frames))
    sample = frames[:: max(1, len(frames) // 8)][:8]
    t0 = time.perf_counter()
    naive = [naive_lengths(f, n_zones) for f in sample]
    naive_rate = len(sample) / (time.perf_counter() - t0)
    fast_sample = [SegmentTracker(n_zones=n_zones).update(f).lengths_px for f in sample]
    for a, b in zip(naive, fast_sample):
        assert (a is None) == (not np.all(np.isfinite(b))), "trackers disagree on usability"
        if a is not None:
            np.testing.assert_allclose(a, b, atol=1e-3, err_msg="trackers disagree")
    usable = np.mean([r.ok for r in results])
    verdict = "met" if rate >= 100 else "NOT met"
    print(
        f"tracking 640x160, one core: {rate:.0f} frames/s (requirement >= 100: {verdict}); "
        f"naive per-pixel loop {naive_rate:.2f} frames/s; ratio {rate / naive_rate:.0f}x; "
        f"MJPG decode {decode:.0f} frames/s; usable frames {usable:.1%} of {len(frames)}"
    )


# ---- 2. analysis ---------------------------------------------------------------------------------------------


def naive_arrivals(x, fs, stim, vpp, quiet, window_ms, band_hz, k, sigma, duration_ms):
    """Epochs, artefact template, subtraction, band-pass and first-spike arrival: per trial, pair and sample."""
    n_win = int(round((window_ms[1] - window_ms[0]) / 1e3 * fs))
    t = [window_ms[0] + i / fs * 1e3 for i in range(n_win)]
    first = [int(np.rint((s + window_ms[0] / 1e3) * fs)) for s in stim]
    n_pairs = x.shape[1]
    template = [[0.0] * n_pairs for _ in range(n_win)]
    quiet_rows = [i for i in range(len(stim)) if quiet[i]]
    for j in range(n_win):
        if 0 <= t[j] < duration_ms:
            for c in range(n_pairs):
                template[j][c] = sum(x[first[i] + j, c] / vpp[i] for i in quiet_rows) / len(quiet_rows)
    dt = t[1] - t[0]
    m = max(3, int(round(0.6 / dt)))
    out = np.full((len(stim), n_pairs), np.nan)
    for i in range(len(stim)):
        for c in range(n_pairs):
            trace = np.array([x[first[i] + j, c] - vpp[i] * template[j][c] for j in range(n_win)])
            y = bandpass(trace, fs, band_hz)
            for j in range(n_win):
                if abs(y[j]) > k * sigma[c]:
                    sign, i0, best = (1 if y[j] > 0 else -1), j, abs(y[j])
                    for jj in range(j, min(j + m, n_win)):
                        if sign * y[jj] <= 0:
                            break
                        if sign * y[jj] > best:
                            i0, best = jj, sign * y[jj]
                    i0 = min(max(i0, 1), n_win - 2)
                    ym, y0, yp = y[i0 - 1], y[i0], y[i0 + 1]
                    curv = ym - 2 * y0 + yp
                    delta = 0.5 * (ym - yp) / curv if curv != 0 else 0.0
                    out[i, c] = t[0] + (i0 + min(max(delta, -0.5), 0.5)) * dt
                    break
    return out


def bench_analysis(seconds: int) -> None:
    fs, window, band, k, duration = 30000.0, (-5.0, 20.0), (200.0, 5000.0), 5.0, 3.2
    worm = Earthworm(fs_hz=fs, seed=0)
    g = np.random.default_rng(0)
    stim = 0.5 + np.arange(seconds - 1, dtype=float)
    vpp = np.where(np.arange(len(stim)) % 3 == 0, 1.8, g.choice([3.0, 4.0, 5.0, 6.0], len(stim)))  # 1.8 V: quiet
    for s, v in zip(stim, vpp):
        worm.deliver(float(s), float(v), 3.0)
    x = worm.acquire(0, int(seconds * fs))

    def fast(n):
        e, t = epochs(x, fs, stim[:n], window)
        quiet = vpp[:n] == 1.8
        clean = subtract_artefact(e, artefact_template(e, vpp[:n], quiet, t, duration_ms=duration), vpp[:n])
        f = bandpass(clean, fs, band, axis=1)
        sigma = noise_sigma(f[:, t < 0].transpose(2, 0, 1).reshape(x.shape[1], -1), axis=1)
        arrivals = arrival_times(f, t, k=k, sigma=sigma)
        return arrivals, sigma, fit_velocities(worm.electrode_positions_mm, arrivals)

    _, _, velocity = fast(len(stim))
    rate = _best_rate(lambda: fast(len(stim)), seconds)
    n = 10  # the naive loop gets 10 pulses (10 s of recording)
    arrivals, sigma, _ = fast(n)
    t0 = time.perf_counter()
    naive = naive_arrivals(x, fs, stim[:n], vpp[:n], vpp[:n] == 1.8, window, band, k, sigma, duration)
    naive_rate = n / (time.perf_counter() - t0)
    same = np.isclose(naive, arrivals, rtol=0, atol=1e-6) | (np.isnan(naive) & np.isnan(arrivals))
    assert same.mean() >= 0.95, f"analyses disagree on {np.mean(~same):.0%} of the arrivals"  # rounding at threshold
    print(
        f"analysis (epochs, artefact template, band-pass, arrivals, velocity): {rate:.0f} s of 4-pair 30 kS/s "
        f"recording per s ({seconds} s, {len(stim)} pulses, median velocity {np.nanmedian(velocity):.2f} m/s); "
        f"naive per-sample loop {naive_rate:.2f} s/s; ratio {rate / naive_rate:.0f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with threadpool_limits(1):
        bench_tracking(args.frames)
        bench_analysis(args.seconds)


if __name__ == "__main__":
    main()
