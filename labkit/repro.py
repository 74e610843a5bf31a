"""Determinism: one place that fixes the plotting style, the thread counts and the seeds.

- Matplotlib: the repository's ``matplotlibrc`` (DejaVu Sans, no hinting, fixed svg hash salt) and PNGs
  saved without a ``Software`` or date stamp, so the same numbers give the same bytes.
- Threads: BLAS/OpenMP pools capped at ``LABKIT_THREADS`` (default 2; the pipeline also exports the
  usual ``*_NUM_THREADS`` variables before the kernel starts), and torch's pool when torch is loaded.
- Randomness: explicit :class:`numpy.random.Generator` objects derived from one integer seed; never
  global seeding.
"""

import os
import sys

import numpy as np

from labkit import paths

__all__ = ["THREAD_VARS", "thread_count", "setup", "rng", "torch_device", "SAVEFIG_KWARGS"]

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")

#: keyword arguments for ``Figure.savefig``: PNG bytes depend on the pixels only
SAVEFIG_KWARGS = {"dpi": 120, "metadata": {"Software": None}}


def thread_count() -> int:
    return int(os.environ.get("LABKIT_THREADS", "2"))


def setup() -> int:
    """Apply the repository style and cap every thread pool; returns the thread count in force."""
    import matplotlib
    from threadpoolctl import threadpool_limits

    matplotlib.rc_file(paths.MATPLOTLIBRC)
    n = thread_count()
    threadpool_limits(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


def rng(seed: int, *key: int) -> np.random.Generator:
    """An independent Generator for ``seed`` and an optional sub-stream ``key`` (e.g. a seed index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def torch_device():
    """The GPU when one is present, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
