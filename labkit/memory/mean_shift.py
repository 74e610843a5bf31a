"""The Gaussian kernel-density memory and its mean-shift retrieval.

Store patterns x_1..x_N ∈ R^d. With bandwidth σ (λ = β = 1/σ²) the memory's energy is the negative log of an
unnormalised Gaussian kernel density estimate (the KDE memory of Schaeffer et al. 2024, arXiv 2402.10202; the
formulas below are derived here, consistent with Lucibello & Mézard 2024 and Ramsauer et al. 2021):

    E(x) = −log Σ_n exp(−‖x − x_n‖² / (2σ²)),
    log p(x) = −E(x) − log N − (d/2) log(2πσ²)          (the normalised KDE),
    ∇E(x) = (x − Σ_n w_n x_n) / σ²,   w = softmax_n(−‖x − x_n‖² / (2σ²)).

A gradient step of size σ² is therefore mean-shift, x ← Σ_n w_n x_n (Fukunaga & Hostetler 1975; it never raises E,
Comaniciu & Meer 2002). Expanding ‖x − x_n‖² = ‖x‖² − 2xᵀx_n + ‖x_n‖², the ‖x‖² term cancels in the softmax, so
for equal-norm patterns w = softmax(β Xᵀx) and mean-shift IS the modern-Hopfield update ξ ← X softmax(β Xᵀξ) with
β = 1/σ² (:class:`labkit.memory.hopfield.ModernHopfield`).

Computation (:func:`retrieve`): all queries of a chunk move together (two BLAS matmuls and one exp per step); a query
stops as soon as it has converged; queries are processed in chunks so that the (queries × N) weight matrix never
exceeds ``max_elements`` numbers; the softmax subtracts each row's maximum (log-sum-exp), so it cannot overflow. The
matmuls are skinny (inner dimension d), so BLAS runs single-threaded there (benchmarks/bench_kde_capacity.py
measures why). How many stored patterns this memory retrieves: :mod:`labkit.memory.kde`.
"""

import functools
import math

import numpy as np
from scipy.special import logsumexp

from labkit.config import Check, non_negative_real, positive_float, positive_int
from labkit.memory.base import EnergyMemory

__all__ = ["MAX_ELEMENTS", "GaussianKDEMemory", "retrieve"]

#: the default bound on the size of one chunk's (queries × patterns) matrices, in numbers
MAX_ELEMENTS = 1 << 22


def _mean_shift(patterns: np.ndarray, half_sq: np.ndarray, x: np.ndarray, beta: float) -> np.ndarray:
    """One mean-shift step for a batch x of shape (q, d): softmax over patterns of β(xᵀx_n − ½‖x_n‖²), then average."""
    logits = x @ patterns.T
    logits -= half_sq
    logits *= beta
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits @ patterns


class GaussianKDEMemory(EnergyMemory):
    """A Gaussian KDE as an associative memory: energy −log Σ exp(−‖x − x_n‖²/2σ²), mean-shift retrieval.

    scikit-learn conventions: ``bandwidth`` (σ) is the only parameter; :meth:`fit` stores the patterns as
    ``patterns_`` (shape (N, d)) and returns self.
    """

    def __init__(self, bandwidth: float = 1.0):
        self.bandwidth = bandwidth

    def fit(self, patterns: np.ndarray) -> "GaussianKDEMemory":
        positive_float.check("bandwidth", self.bandwidth, "GaussianKDEMemory")
        self.patterns_ = _as_patterns(patterns)
        return self

    @property
    def beta(self) -> float:
        """λ = β = 1/σ²."""
        return 1.0 / self.bandwidth**2

    def _log_kernels(self, x: np.ndarray) -> np.ndarray:
        x = _as_states(x, self.patterns_.shape[1])
        sq = np.sum(x**2, axis=-1, keepdims=True) - 2 * x @ self.patterns_.T + np.sum(self.patterns_**2, axis=1)
        return -0.5 * self.beta * np.maximum(sq, 0.0)

    def energy(self, x: np.ndarray) -> np.ndarray:
        return -logsumexp(self._log_kernels(x), axis=-1)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """∇E(x) = (x − Σ_n w_n x_n)/σ²."""
        return self.beta * (np.asarray(x, dtype=float) - self.update(x))

    def update(self, x: np.ndarray) -> np.ndarray:
        """Mean-shift: x − σ²∇E(x) = Σ_n w_n x_n."""
        x = _as_states(x, self.patterns_.shape[1])
        half_sq = 0.5 * np.einsum("nd,nd->n", self.patterns_, self.patterns_)
        flat = x.reshape(-1, x.shape[-1])
        return _mean_shift(self.patterns_, half_sq, flat, self.beta).reshape(x.shape)

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """The normalised KDE log density: −E(x) − log N − (d/2) log(2πσ²)."""
        n, d = self.patterns_.shape
        return -self.energy(x) - np.log(n) - 0.5 * d * np.log(2 * np.pi * self.bandwidth**2)


def _as_patterns(patterns, dtype=np.float64) -> np.ndarray:
    patterns = np.asarray(patterns, dtype=dtype)
    if patterns.ndim != 2 or patterns.shape[0] < 1 or patterns.shape[1] < 1:
        raise ValueError(f"patterns must be a non-empty 2-D array (N, d), got shape {patterns.shape}")
    if not np.all(np.isfinite(patterns)):
        raise ValueError("patterns must be finite (found NaN or inf)")
    return patterns


def _as_states(x, d: int) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim < 1 or x.shape[-1] != d:
        raise ValueError(f"states must have shape (..., {d}) to match the patterns, got shape {x.shape}")
    return x


_lam = Check(lambda v: positive_float.test(v) and math.isfinite(v), "a finite number > 0 (λ = 1/σ²)")


def _check_lam(lam) -> float:
    return float(_lam.check("lam", lam))


def retrieve(
    patterns,
    queries,
    beta: float,
    n_steps: int,
    *,
    tol: float = 1e-4,
    dtype=np.float64,
    max_elements: int = MAX_ELEMENTS,
) -> np.ndarray:
    """Mean-shift fixed points reached from ``queries`` (q, d) on the KDE of ``patterns`` (N, d), β = 1/σ².

    Each query iterates x ← Σ_n softmax_n(β(xᵀx_n − ½‖x_n‖²)) x_n until it moves by at most ``tol`` (max-abs) or
    ``n_steps`` steps pass; converged queries stop early. Queries go in chunks of ⌊max_elements / N⌋ (at least one)
    so memory is O(max_elements + N d). Computes in ``dtype`` and returns that dtype.
    """
    return _descend(patterns, queries, beta, n_steps, tol, dtype, max_elements)[0]


def _descend(patterns, queries, beta, n_steps, tol, dtype, max_elements, leave_radius=np.inf):
    """Chunked, early-stopping mean-shift from ``queries``; a query also stops once it is farther than
    ``leave_radius`` from where it started. Returns (final states, mask of the queries that left)."""
    patterns = _as_patterns(patterns, dtype)
    queries = _as_states(queries, patterns.shape[1])
    if queries.ndim != 2:
        raise ValueError(f"queries must be a 2-D array (q, d), got shape {queries.shape}")
    beta = _check_lam(beta)
    positive_int.check("n_steps", n_steps)
    positive_int.check("max_elements", max_elements)
    non_negative_real.check("tol", tol)
    half_sq = (0.5 * np.einsum("nd,nd->n", patterns, patterns)).astype(dtype)
    out = queries.astype(dtype, copy=True)
    left = np.zeros(len(out), dtype=bool)
    chunk = max(1, max_elements // patterns.shape[0])
    with _blas().limit(limits=1, user_api="blas"):
        _descend_chunks(patterns, half_sq, queries, out, left, chunk, beta, n_steps, tol, leave_radius)
    return out, left


@functools.cache
def _blas():
    """One thread-pool controller for the process (creating one is costly; entering its limit is cheap)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _descend_chunks(patterns, half_sq, queries, out, left, chunk, beta, n_steps, tol, leave_radius) -> None:
    """The loop of :func:`_descend`, writing the final states into ``out`` and the leavers into ``left``."""
    for start in range(0, len(out), chunk):
        x, x0, gone = out[start : start + chunk], queries[start : start + chunk], left[start : start + chunk]  # views
        active = np.arange(len(x))
        for _ in range(n_steps):
            x_next = _mean_shift(patterns, half_sq, x[active], beta)
            moved = np.max(np.abs(x_next - x[active]), axis=1)
            x[active] = x_next
            gone[active] = np.linalg.norm(x_next - x0[active], axis=1) > leave_radius
            active = active[(moved > tol) & ~gone[active]]
            if active.size == 0:
                break
