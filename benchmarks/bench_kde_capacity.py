"""Benchmark: throughput of the Gaussian-KDE capacity sweep (``labkit.memory.kde``), fast path vs a plain loop.

Setting: λ = 1, d = 16, memories of N = 1,000 … 8,000 patterns uniform on the sphere of radius √d (across the
retrieval cliff, so both quick successes and slow failures are timed), 64 stored patterns as queries each.

- baseline: a plain per-query loop in float64 — each query runs mean-shift alone (one matrix-vector product, a
  stable softmax, one more product per step) to its fixed point, then is judged against the 0.1 √d ball;
- fast path: :func:`labkit.memory.kde.capacity_curve`'s kernel — all queries of a chunk move together (BLAS
  matrix products), converged queries drop out, a query that leaves the ball stops at once, float32;
- the same fast path in float64 and without the ball stop, to show what each ingredient buys.

Prints pattern-retrievals per second for each and the ratio to the baseline (same patterns, same run), and checks
that every variant reaches the same verdicts. The baseline also runs with one BLAS thread (like the fast path), so
the ratio measures the algorithm; a last line times one of the fast path's skinny matmuls with 1 and 2 BLAS threads,
which is why the fast path pins BLAS to one thread. The machines are shared and noisy: read the ratios, not the
seconds.
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from labkit import repro
from labkit.memory import kde

D, LAM, RADIUS, N_STEPS, TOL = 16, 1.0, 0.1, 200, 1e-4


def plain_loop(patterns: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The baseline: one query at a time, float64, run to its fixed point; returns which stayed near their start."""
    ok = np.zeros(len(queries), dtype=bool)
    half_sq = 0.5 * np.sum(patterns**2, axis=1)
    for i, x0 in enumerate(queries):
        x = x0.copy()
        for _ in range(N_STEPS):
            logits = LAM * (patterns @ x - half_sq)
            w = np.exp(logits - logits.max())
            x_next = (w / w.sum()) @ patterns
            done = np.max(np.abs(x_next - x)) <= TOL
            x = x_next
            if done:
                break
        ok[i] = np.linalg.norm(x - x0) <= RADIUS * np.sqrt(D)
    return ok


def fast(patterns, queries, dtype, stop_at_ball: bool) -> np.ndarray:
    leave = RADIUS * np.sqrt(D) if stop_at_ball else np.inf
    x, left = kde._descend(patterns, queries, LAM, N_STEPS, TOL, dtype, kde.MAX_ELEMENTS, leave)
    return ~left & (np.linalg.norm(x.astype(float) - queries, axis=1) <= RADIUS * np.sqrt(D))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 2000, 4000, 8000], help="memory sizes N")
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="fast-path repeats (best time kept)")
    args = parser.parse_args()
    repro.setup()

    stored = kde.sphere_patterns(max(args.n), D, repro.rng(0, D, 0))
    variants = {
        "fast float32 + ball stop": (np.float32, True),
        "fast float64 + ball stop": (np.float64, True),
        "fast float32, to fixed point": (np.float32, False),
    }
    times = {name: 0.0 for name in ["plain per-query loop (float64)", *variants]}
    verdicts = {name: [] for name in times}
    for n in args.n:
        patterns, queries = stored[:n], stored[: args.queries]
        with threadpool_limits(1, user_api="blas"):
            t0 = time.perf_counter()
            verdicts["plain per-query loop (float64)"].append(plain_loop(patterns, queries))
            times["plain per-query loop (float64)"] += time.perf_counter() - t0
        for name, (dtype, stop) in variants.items():
            best = np.inf
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                ok = fast(patterns.astype(dtype), queries, dtype, stop)
                best = min(best, time.perf_counter() - t0)
            times[name] += best
            verdicts[name].append(ok)
    total = len(args.n) * args.queries
    base = times["plain per-query loop (float64)"]
    reference = np.concatenate(verdicts["plain per-query loop (float64)"])
    print(
        f"KDE capacity sweep, λ = {LAM:g}, d = {D}, N = {args.n}, {args.queries} queries each "
        f"({total} pattern-retrievals); fraction retrieved per N: "
        f"{[float(v.mean()) for v in verdicts['plain per-query loop (float64)']]}"
    )
    for name, t in times.items():
        agree = np.mean(np.concatenate(verdicts[name]) == reference)
        print(f"  {name:<32}{total / t:>10,.0f} retrievals/s  {base / t:>6.1f}x   (verdicts agree: {agree:.1%})")
    x, p = stored[: args.queries].astype(np.float32), stored.astype(np.float32)
    matmul = {}
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            t0 = time.perf_counter()
            for _ in range(20):
                x @ p.T
            matmul[threads] = (time.perf_counter() - t0) / 20
    print(
        f"one ({args.queries} × {D}) @ ({D} × {len(p)}) float32 matmul: 1 BLAS thread {1e3 * matmul[1]:.2f} ms, "
        f"2 threads {1e3 * matmul[2]:.2f} ms ({matmul[2] / matmul[1]:.1f}x slower)"
    )


if __name__ == "__main__":
    main()
