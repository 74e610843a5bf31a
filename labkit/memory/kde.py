"""The capacity of the Gaussian kernel-density memory (notebook 02a): theory, measurement and the notebook's config.

The memory itself (Schaeffer et al. 2024, arXiv 2402.10202), energy E(x) = −log Σ_n exp(−‖x − x_n‖² / (2σ²)) with
mean-shift retrieval (= the modern-Hopfield update for equal-norm patterns), is :mod:`labkit.memory.mean_shift`; its
:class:`GaussianKDEMemory` and :func:`retrieve` are re-exported here, so notebook 02a reaches everything through this
module.

Capacity. Patterns uniform on the sphere of radius √d, λ = 1/σ², N = e^{αd}. Starting at a stored pattern x_i, the
pattern's own kernel weighs e^{λd} (relative to the common factor) against the crosstalk of the others,
Σ_{n≠i} e^{λ x_iᵀx_n} ≈ N max_q e^{d(λq + ½ ln(1 − q²))}, maximal at the typical overlap
q* = (√(1 + 4λ²) − 1)/(2λ). The pattern survives while the signal wins, i.e. while α < α₁ with

    α₁(λ) = λ(1 − q*) − ½ ln(1 − q*²),        α₁(0.5) ≈ 0.387,  α₁(1) ≈ 0.623,

the Lucibello–Mézard exponent (Lucibello & Mézard 2024); at finite d the numerics approach it from below.

Ramsauer et al. 2021 (Theorem 3) guarantee, with probability 1 − p, storage of N = √p c^{(d−1)/4} random patterns
on a sphere of radius M = K√(d−1), where b = 2K²β/5, a = 2/(d−1) (1 + ln(2βK²p(d−1))), c = b / W₀(e^{a + ln b}).
For radius √d (K² = d/(d−1)) and d → ∞, a → 0 and ln N / d → ¼ ln(b / W₀(b)) with b = 2λ/5: about 0.074 at λ = 1
and 0.042 at λ = 0.5, a worst-case rate far below α₁ (the project's earlier paper notes quoted ≈ 0.079 without a
derivation, the same order). That d → ∞ rate is what :func:`ramsauer_exponent` returns and the notebook plots: at the
d used here the theorem's side condition c ≥ (2/√p)^{4/(d−1)} fails for any useful p, so its finite-d form is vacuous.

Retrieval protocol used here (decided here): start EXACTLY at the stored pattern x_i (the question is
whether x_i is still a fixed point's neighbourhood, not how wide its basin is), run mean-shift to convergence, and
count a success when the state stays within r √d of x_i (r = 0.1 by default, i.e. 10% of the pattern norm). A
trajectory that leaves the ball is stopped there as a failure; judging the fixed point instead gave the same verdict
on every query checked (tests; benchmark: 256 of 256 queries across the cliff at d = 16). The critical
load N_c is where the fraction retrieved first falls through ½, interpolated linearly in ln N (:func:`critical_n`).
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.special import lambertw

from labkit import repro
from labkit.config import ConfigError, NotebookConfig, non_negative_int, param, positive_float, positive_int, tuple_of
from labkit.memory.mean_shift import MAX_ELEMENTS, GaussianKDEMemory, _check_lam, _descend, retrieve

__all__ = [
    "GaussianKDEMemory",  # re-exported from labkit.memory.mean_shift
    "retrieve",  # re-exported from labkit.memory.mean_shift
    "q_star",
    "alpha1",
    "ramsauer_exponent",
    "sphere_patterns",
    "capacity_trials",
    "CapacityCounts",
    "capacity_curve",
    "bootstrap_critical_n",
    "samples_per_point",
    "critical_n",
    "n_grid",
    "capacity_sweep",
    "INDEPENDENT_CRITICAL_N",
    "KDECapacityConfig",
]

#: N_c (50 % retrieved) at λ = 1 from an independent mean-shift check (a separate implementation, not this module):
#: {d: (N_c, its rounding: half a unit of the last digit given)}. Earlier reference values of ln N_c / d (0.51 at
#: d = 12, 0.55 at d = 16) marked where almost nothing is retrieved and were biased high; they are not used.
INDEPENDENT_CRITICAL_N = {12: (240, 5), 16: (3200, 50)}


def q_star(lam: float) -> float:
    """The crosstalk-dominating overlap q* = (√(1 + 4λ²) − 1)/(2λ), root of λ(1 − q²) = q."""
    lam = _check_lam(lam)
    return (np.sqrt(1 + 4 * lam**2) - 1) / (2 * lam)


def alpha1(lam: float) -> float:
    """The capacity exponent α₁(λ) = λ(1 − q*) − ½ ln(1 − q*²): N_c ≈ exp(α₁ d) for d → ∞."""
    q = q_star(lam)
    return float(_check_lam(lam) * (1 - q) - 0.5 * np.log(1 - q**2))


def ramsauer_exponent(lam: float) -> float:
    """Ramsauer et al.'s worst-case storage rate lim ln N / d = ¼ ln(b / W₀(b)), b = 2λ/5 (radius-√d patterns)."""
    b = 2 * _check_lam(lam) / 5
    return float(0.25 * np.log(b / lambertw(b).real))


def sphere_patterns(n: int, d: int, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """``n`` patterns uniform on the sphere of radius √d in R^d, shape (n, d)."""
    x = rng.standard_normal((n, d))
    x *= np.sqrt(d) / np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(dtype, copy=False)


def capacity_trials(
    d: int,
    lam: float,
    n_patterns,
    n_trials: int,
    seed: int,
    *,
    n_queries: int = 64,
    min_samples: int = 0,
    radius: float = 0.1,
    n_steps: int = 200,
    tol: float = 1e-4,
    dtype=np.float32,
    max_elements: int = MAX_ELEMENTS,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Stored patterns retrieved and queried, per trial and N: ``(hits, queries)``, arrays of shape
    (trials, len(n_patterns)) with zeros where a trial did not test that N.

    Trial t draws patterns uniform on the sphere of radius √d from ``repro.rng(seed, d, t)``; the memory of size N
    holds the first N of them (so curves are nested and smooth in N), and the first min(n_queries, N) patterns are
    the queries. Small memories offer few queries per trial, so an N gets extra trials until it has at least
    ``min_samples`` queries (cheap: those memories are small). A query succeeds when mean-shift started exactly at
    it stays within ``radius`` √d of it until it converges (or ``n_steps`` pass); a query that leaves the ball is
    stopped there as a failure, which saves the hundreds of steps a failed retrieval takes to settle on a mixture
    state.
    """
    n_patterns = np.asarray(n_patterns)
    if (
        n_patterns.ndim != 1
        or n_patterns.size == 0
        or not np.issubdtype(n_patterns.dtype, np.integer)
        or n_patterns.min() < 1
    ):
        raise ValueError(f"n_patterns must be a non-empty 1-D sequence of integers >= 1, got {n_patterns!r}")
    for name, value in (("d", d), ("n_trials", n_trials), ("n_queries", n_queries)):
        positive_int.check(name, value)
    non_negative_int.check("min_samples", min_samples)
    positive_float.check("radius", radius)  # a fraction of the pattern norm √d
    from tqdm.auto import tqdm

    per_trial = np.minimum(n_queries, n_patterns)
    trials = samples_per_point(n_patterns, n_trials, n_queries, min_samples) // per_trial
    hits = np.zeros((int(trials.max()), n_patterns.size))
    queries = np.where(np.arange(len(hits))[:, None] < trials, per_trial, 0)
    bar = tqdm(total=int(trials.sum()), desc=f"d={d} λ={lam:g}", disable=not progress, leave=False)
    for trial in range(len(hits)):
        todo = np.flatnonzero(trials > trial)
        stored = sphere_patterns(int(n_patterns[todo].max()), d, repro.rng(seed, d, trial), dtype)
        for k in todo:
            _, left = _descend(
                stored[: n_patterns[k]],
                stored[: per_trial[k]],
                lam,
                n_steps,
                tol,
                dtype,
                max_elements,
                radius * np.sqrt(d),
            )
            hits[trial, k] = np.sum(~left)
            bar.update()
    bar.close()
    return hits, queries


class CapacityCounts(NamedTuple):
    """One (λ, d) of a capacity measurement: the N grid ``n_patterns`` and the per-trial ``hits`` and ``queries`` of
    :func:`capacity_trials` (shape (trials, len(n_patterns)))."""

    n_patterns: np.ndarray
    hits: np.ndarray
    queries: np.ndarray

    @property
    def fraction(self) -> np.ndarray:
        """Fraction of stored patterns retrieved at each N, pooled over all trials and queries."""
        return self.hits.sum(axis=0) / self.queries.sum(axis=0)


def capacity_curve(d: int, lam: float, n_patterns, n_trials: int, seed: int, **kwargs) -> np.ndarray:
    """Fraction of stored patterns retrieved for each N in ``n_patterns``, pooled over the trials and queries of
    :func:`capacity_trials` (same arguments), shape (len(n_patterns),)."""
    return CapacityCounts(n_patterns, *capacity_trials(d, lam, n_patterns, n_trials, seed, **kwargs)).fraction


def bootstrap_critical_n(counts: CapacityCounts, n_boot: int, seed: int, level: float = 0.5) -> np.ndarray:
    """Monte-Carlo spread of :func:`critical_n`: N_c of ``n_boot`` bootstrap resamples of the trials of ``counts``,
    pooled as in :attr:`CapacityCounts.fraction`. The trials are the independent units (the queries of one trial
    share its memory). Each N is resampled among its own trials, with one uniform draw per row shared by every N, so N
    with the same trials (all N near N_c) are resampled jointly, as the nested curves they are. NaN where a resample
    never crosses ``level``."""
    positive_int.check("n_boot", n_boot)
    n_patterns = counts.n_patterns
    hits, queries = np.asarray(counts.hits, dtype=float), np.asarray(counts.queries)
    trials = (queries > 0).sum(axis=0)  # (len(n),), trials 0..trials-1 tested each N
    rows, cols = np.arange(len(hits))[:, None], np.arange(hits.shape[1])
    rng = repro.rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        pick = (rng.random(len(hits))[:, None] * trials).astype(int)  # a row of each column's own trials
        keep = rows < trials
        fraction = (hits[pick, cols] * keep).sum(axis=0) / (queries[pick, cols] * keep).sum(axis=0)
        out[b] = critical_n(n_patterns, fraction, level)
    return out


def samples_per_point(n_patterns, n_trials: int, n_queries: int, min_samples: int = 0) -> np.ndarray:
    """Queries behind each point of :func:`capacity_curve`: trials × min(n_queries, N), with trials raised to
    max(n_trials, ⌈min_samples / min(n_queries, N)⌉)."""
    per_trial = np.minimum(n_queries, np.asarray(n_patterns))
    return np.maximum(n_trials, -(-min_samples // per_trial)) * per_trial


def critical_n(n_patterns, fraction, level: float = 0.5) -> float:
    """N where ``fraction`` first falls from ≥ level to < level, interpolated linearly in ln N; NaN if it never does."""
    n = np.asarray(n_patterns, dtype=float)
    f = np.asarray(fraction, dtype=float)
    if n.shape != f.shape or n.ndim != 1:
        raise ValueError(f"n_patterns and fraction must be 1-D of equal length, got {n.shape} and {f.shape}")
    if np.any(np.diff(n) <= 0):
        raise ValueError("n_patterns must be strictly increasing")
    below = np.flatnonzero((f[1:] < level) & (f[:-1] >= level))
    if below.size == 0:
        return float("nan")
    k = below[0]
    t = (f[k] - level) / (f[k] - f[k + 1])
    return float(np.exp(np.log(n[k]) + t * (np.log(n[k + 1]) - np.log(n[k]))))


def n_grid(d: int, lo: float, hi: float, n_points: int, n_max: int) -> np.ndarray:
    """Distinct pattern counts N = round(exp(u d)) for u evenly spaced in [lo, hi] (units of ln N / d), capped."""
    u = np.linspace(lo, hi, n_points)
    return np.unique(np.clip(np.round(np.exp(u * d)), 1, n_max).astype(int))


def capacity_sweep(
    lambdas, dims, *, u_lo: float, u_margin: float, n_points: int, n_max: int, n_trials: int, seed: int, **curve_kwargs
) -> dict:
    """:func:`capacity_trials` for every (λ, d), on the grid ln N / d ∈ [u_lo, α₁(λ) + u_margin] (:func:`n_grid`).

    Returns {(λ, d): :class:`CapacityCounts`}; ``curve_kwargs`` go to :func:`capacity_trials`.
    """
    curves = {}
    for lam in lambdas:
        for d in dims:
            n = n_grid(d, u_lo, alpha1(lam) + u_margin, n_points, n_max)
            curves[(lam, d)] = CapacityCounts(n, *capacity_trials(d, lam, n, n_trials, seed, **curve_kwargs))
    return curves


@dataclass(frozen=True)
class KDECapacityConfig(NotebookConfig):
    """Notebook 02a: capacity of the Gaussian-KDE memory (patterns uniform on the sphere of radius √d, λ = 1/σ²).

    For each λ in ``lambdas`` and d in ``dims``: N on a grid of ``n_points`` values with ln N / d evenly spaced
    from ``u_lo`` to α₁(λ) + ``u_margin`` (capped at ``n_max``); ``n_trials`` pattern sets per d, the first
    ``n_queries`` patterns of each as queries (small N get extra trials up to ``min_samples`` queries); success =
    mean-shift from the pattern stays within ``radius`` √d.
    N_c = where the fraction retrieved crosses ½ (log-N interpolation). The claims' tolerances are fixed here:
    ``ref_n_se`` (at λ = 1 and each d of :data:`INDEPENDENT_CRITICAL_N`, ln N_c / d must lie within this many
    bootstrap standard errors, ``ref_n_boot`` resamples of the trials, plus the independent value's own rounding,
    of the independent estimate; fixed before the reported run) and
    ``cliff_ratio`` (the fraction must fall from ≥ 0.95 to ≤ 0.05 within this factor in N at λ = 1, d = 16; the
    independent check found a factor of about 3). Classical binary Hopfield: ``hop_neurons`` neurons, loads
    ``hop_loads``.
    paper: d up to 20 at both λ, more trials and queries (an hour-scale CPU run; a GPU port is not needed).
    """

    lambdas: tuple = param((1.0, 0.5), tuple_of(positive_float))
    dims: tuple = param((4, 6, 8, 10, 12, 14, 16), tuple_of(positive_int))
    n_points: int = param(32, positive_int)
    u_lo: float = param(0.1, positive_float)
    u_margin: float = param(0.1, positive_float)
    n_max: int = param(40_000, positive_int)
    n_trials: int = param(8, positive_int)
    n_queries: int = param(128, positive_int)
    min_samples: int = param(512, positive_int)
    radius: float = param(0.1, positive_float)
    n_steps: int = param(200, positive_int)
    ref_n_se: float = param(3.0, positive_float)
    ref_n_boot: int = param(400, positive_int)
    cliff_ratio: float = param(3.0, positive_float)
    hop_neurons: int = param(400, positive_int)
    hop_loads: tuple = param((0.02, 0.05, 0.08, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.25, 0.3), tuple_of(positive_float))
    hop_trials: int = param(4, positive_int)

    SCALES = {
        "smoke": dict(
            dims=(4, 8, 12, 16),
            n_points=6,
            n_trials=1,
            n_queries=16,
            min_samples=16,
            n_max=8000,
            n_steps=100,
            hop_neurons=100,
            hop_loads=(0.05, 0.1, 0.2, 0.3),
            hop_trials=1,
        ),
        "quick": {},
        "paper": dict(
            dims=(4, 6, 8, 10, 12, 14, 16, 18, 20),
            n_points=48,
            n_max=400_000,
            n_trials=20,
            n_queries=128,
            hop_neurons=2000,
            hop_trials=10,
        ),
    }

    def validate(self) -> None:
        if 1.0 not in self.lambdas:
            raise ConfigError(
                f"KDECapacityConfig: bad value for 'lambdas': {self.lambdas!r}; allowed: a list that "
                "contains 1.0 (the claims are checked at λ = 1)"
            )
        if len(self.dims) < 2 or list(self.dims) != sorted(set(self.dims)):
            raise ConfigError(
                f"KDECapacityConfig: bad value for 'dims': {self.dims!r}; allowed: at least two "
                "strictly increasing dimensions"
            )
        if self.n_points < 3:
            raise ConfigError(
                f"KDECapacityConfig: bad value for 'n_points': {self.n_points!r}; allowed: an integer >= 3"
            )
