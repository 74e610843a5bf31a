"""Determinism: one place that fixes the plotting style, the thread counts and the seeds.

- Matplotlib: the repository's ``matplotlibrc`` (DejaVu Sans, no hinting, fixed svg hash salt) and PNGs
  saved without a ``Software`` or date stamp, so the same numbers give the same bytes.
- Threads: BLAS/OpenMP pools capped at the execution setting ``threads`` (``$LABKIT_THREADS``, default 2,
  :mod:`labkit.execution`; the pipeline also exports the usual ``*_NUM_THREADS`` variables before the kernel
  starts), and torch's pool when torch is loaded.
- Randomness: explicit :class:`numpy.random.Generator` objects derived from one integer seed; never
  global seeding.
"""

import contextlib
import sys

import numpy as np

from labkit import execution, paths

__all__ = ["THREAD_VARS", "setup", "threads", "rng", "SAVEFIG_KWARGS"]

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")

#: keyword arguments for ``Figure.savefig``: PNG bytes depend on the pixels only
SAVEFIG_KWARGS = {"dpi": 120, "metadata": {"Software": None}}


def setup() -> int:
    """Apply the repository style, print NumPy scalars as plain numbers (``0.98``, not NumPy 2's
    ``np.float64(0.98)``) and cap every thread pool; returns the thread count in force."""
    import matplotlib
    from threadpoolctl import threadpool_limits

    matplotlib.rc_file(paths.MATPLOTLIBRC)
    np.set_printoptions(legacy="1.25")
    n = execution.current().threads
    threadpool_limits(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


@contextlib.contextmanager
def threads(n: int | None):
    """Run the block with ``n`` BLAS/OpenMP threads and ``n`` torch threads (when torch is loaded), then restore
    them; ``None`` leaves them as :func:`setup` set them. Small matrices and many tiny torch ops run several times
    faster on one thread than on two busy cores."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        if torch:
            torch.set_num_threads(before)


def rng(seed: int, *key: int) -> np.random.Generator:
    """An independent Generator for ``seed`` and an optional sub-stream ``key`` (e.g. a seed index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))
