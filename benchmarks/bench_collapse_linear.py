"""Benchmark: vectorised ``linear.simulate`` against the straightforward per-seed, per-iteration lstsq loop.

Configuration of the issue: d=10, T=100, σ²=1, 50 iterations, 1000 seeds. Both implementations consume the
same random draws (so they also return the same numbers, checked here); each is timed in this process, best
of ``REPEATS``, and the ratio baseline / vectorised is printed per regime. The machines are shared and noisy:
read the ratios, not the seconds.
"""

import functools
import time

import numpy as np
from threadpoolctl import threadpool_limits

from labkit.collapse import linear

CONFIG = dict(d=10, T=100, sigma2=1.0, n_iter=50, n_seeds=1000, seed=0)
REPEATS = 3


def best_time(fn, repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    with threadpool_limits(2):
        print(f"config: {CONFIG}")
        print(f"{'regime':<22}{'lstsq loop (s)':>16}{'simulate (s)':>14}{'ratio':>9}")
        for regime in linear.REGIMES:
            args = dict(CONFIG, regime=regime)
            slow_t, slow = best_time(functools.partial(linear.simulate_lstsq, **args), 1)
            fast_t, fast = best_time(functools.partial(linear.simulate, **args), REPEATS)
            assert np.allclose(fast, slow, rtol=1e-8), f"{regime}: implementations disagree"
            print(f"{regime:<22}{slow_t:>16.3f}{fast_t:>14.4f}{slow_t / fast_t:>8.1f}x")


if __name__ == "__main__":
    main()
