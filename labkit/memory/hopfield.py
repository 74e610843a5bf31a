"""Hopfield networks, the reference points of the memory family: classical binary and modern continuous.

Classical binary network (Hopfield 1982). Neurons s ∈ {−1, +1}^n store P patterns ξ^μ with Hebbian weights and
no self-coupling,

    W = (1/n) Σ_μ ξ^μ ξ^μᵀ,  W_ii = 0,        E(s) = −½ sᵀ W s,

and retrieve by sign updates s_i ← sgn(Σ_j W_ij s_j) (a zero field keeps s_i). Updating one neuron at a time
(asynchronous) never raises E: flipping s_i changes E by −2 s_i' h_i ≤ 0 because W_ii = 0 and W is symmetric.
Synchronous updates (all neurons at once) may instead fall into 2-cycles. Amit, Gutfreund & Sompolinsky (1985)
found that retrieval from a stored pattern survives up to the load α = P/n ≈ 0.138: at zero temperature the
replica-symmetric retrieval overlap m = erf(y) solves y(√(2α) + (2/√π) e^{−y²}) = erf(y), which has a solution
only while α ≤ α_c = max_y [(erf y − (2/√π) y e^{−y²}) / (√2 y)]² ≈ 0.1379 (:func:`ags_overlap`, :func:`ags_alpha_c`).

Modern continuous network (Ramsauer et al. 2021, "Hopfield Networks is All You Need", eqs. 2–3 and Theorem 1).
Patterns are the rows of X ∈ R^{N×d}; with M = max_n ‖x_n‖,

    E(ξ) = −β⁻¹ log Σ_n exp(β x_nᵀξ) + ½ ξᵀξ + β⁻¹ log N + ½ M²,        ξ ← Xᵀ softmax(β X ξ),

the update is the concave–convex procedure on E, so it never raises E; it is attention with the stored
patterns as keys and values. For equal-norm patterns it equals mean-shift on a Gaussian KDE with σ² = 1/β
(:mod:`labkit.memory.kde`). Its energy is, up to the ½ξᵀξ term, the negative log of a mixture's responsibility
normaliser; it defines no normalisable density by itself, so ``log_density`` stays the unnormalised −E.
"""

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from scipy.special import erf, logsumexp, softmax

from labkit import repro
from labkit.memory.base import EnergyMemory

__all__ = [
    "BinaryHopfield",
    "ModernHopfield",
    "random_binary_patterns",
    "binary_capacity_curve",
    "ags_overlap",
    "ags_alpha_c",
]


class BinaryHopfield(EnergyMemory):
    """Classical Hopfield network: Hebbian weights, energy −½ sᵀWs, sign updates.

    ``synchronous=False`` (default) updates neurons one at a time in index order 0..n−1 within a sweep (the order
    does not matter for the energy guarantee; a fixed order keeps runs deterministic); ``True`` updates all at
    once. :meth:`fit` stores ``weights_`` (n × n) and ``patterns_``.
    """

    def __init__(self, synchronous: bool = False):
        self.synchronous = synchronous

    def fit(self, patterns: np.ndarray) -> "BinaryHopfield":
        patterns = np.asarray(patterns, dtype=float)
        if patterns.ndim != 2 or patterns.size == 0 or not np.all(np.abs(patterns) == 1):
            raise ValueError(
                f"patterns must be a non-empty (P, n) array of ±1, got shape {patterns.shape} "
                f"with values {np.unique(patterns)[:5]}"
            )
        n = patterns.shape[1]
        weights = patterns.T @ patterns / n
        np.fill_diagonal(weights, 0.0)
        self.patterns_, self.weights_ = patterns, weights
        return self

    def _states(self, s) -> np.ndarray:
        s = np.asarray(s, dtype=float)
        if s.ndim < 1 or s.shape[-1] != self.weights_.shape[0] or not np.all(np.abs(s) == 1):
            raise ValueError(f"states must be ±1 arrays of shape (..., {self.weights_.shape[0]}), got shape {s.shape}")
        return s

    def energy(self, s: np.ndarray) -> np.ndarray:
        s = self._states(s)
        return -0.5 * np.einsum("...i,ij,...j->...", s, self.weights_, s)

    def update(self, s: np.ndarray) -> np.ndarray:
        """One sweep: every neuron once (in order, each seeing the latest states) or all at once if synchronous."""
        s = self._states(s).copy()
        if self.synchronous:
            h = s @ self.weights_
            return np.where(h == 0, s, np.sign(h))
        for i in range(s.shape[-1]):  # sequential by definition; vectorised over the batch of states
            h = s @ self.weights_[:, i]
            s[..., i] = np.where(h == 0, s[..., i], np.sign(h))
        return s


def random_binary_patterns(n_patterns: int, n_neurons: int, rng: np.random.Generator) -> np.ndarray:
    """Unbiased random ±1 patterns, shape (n_patterns, n_neurons)."""
    return rng.choice(np.array([-1.0, 1.0]), size=(n_patterns, n_neurons))


def binary_capacity_curve(n_neurons: int, loads, n_trials: int, seed: int, n_sweeps: int = 30) -> np.ndarray:
    """Mean retrieval overlap m = ξ·s*/n reached by asynchronous dynamics started at each stored pattern.

    For each load α in ``loads``, P = round(α n) patterns are stored (trial t: ``repro.rng(seed, n, t)``, nested
    in P as for the KDE curves), every stored pattern is a start, and the dynamics run to a fixed point or
    ``n_sweeps`` sweeps. Returns the overlap averaged over patterns and trials, shape (len(loads),).
    """
    loads = np.asarray(loads, dtype=float)
    if loads.ndim != 1 or loads.size == 0 or np.any(loads <= 0):
        raise ValueError(f"loads must be a non-empty 1-D sequence of numbers > 0, got {loads!r}")
    counts = np.maximum(1, np.round(loads * n_neurons).astype(int))
    overlap = np.zeros(loads.size)
    for trial in range(n_trials):
        patterns = random_binary_patterns(int(counts.max()), n_neurons, repro.rng(seed, n_neurons, trial))
        for k, p in enumerate(counts):
            net = BinaryHopfield().fit(patterns[:p])
            fixed = net.retrieve(patterns[:p], n_steps=n_sweeps, tol=0.0)
            overlap[k] += np.mean(np.sum(fixed * patterns[:p], axis=1) / n_neurons) / n_trials
    return overlap


def _ags_gap(y: float, alpha: float) -> float:
    return erf(y) - y * (np.sqrt(2 * alpha) + 2 / np.sqrt(np.pi) * np.exp(-y * y))


def ags_alpha_c() -> float:
    """The AGS critical load: max_y [(erf y − (2/√π) y e^{−y²}) / (√2 y)]² ≈ 0.1379."""
    res = minimize_scalar(
        lambda y: -(erf(y) - 2 / np.sqrt(np.pi) * y * np.exp(-y * y)) / (np.sqrt(2) * y),
        bounds=(0.5, 3.0),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(res.fun**2)


def ags_overlap(alpha: float) -> float:
    """Zero-temperature retrieval overlap m(α) of the AGS theory (the largest root); NaN above α_c."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    if alpha > ags_alpha_c():
        return float("nan")
    y_peak = minimize_scalar(
        lambda y: -_ags_gap(y, alpha), bounds=(0.5, 3.0), method="bounded", options={"xatol": 1e-10}
    ).x
    if _ags_gap(y_peak, alpha) <= 0:  # α within rounding of α_c: the two roots have merged at the peak
        return float(erf(y_peak))
    return float(erf(brentq(_ags_gap, y_peak, 10.0, args=(alpha,))))


class ModernHopfield(EnergyMemory):
    """Modern continuous Hopfield network (Ramsauer et al. 2021): log-sum-exp energy, softmax-attention update.

    ``beta`` is the inverse temperature; :meth:`fit` stores ``patterns_`` (rows x_n, shape (N, d)).
    """

    def __init__(self, beta: float = 1.0):
        self.beta = beta

    def fit(self, patterns: np.ndarray) -> "ModernHopfield":
        if isinstance(self.beta, bool) or not np.isscalar(self.beta) or not self.beta > 0:
            raise ValueError(f"beta must be a number > 0, got {self.beta!r}")
        patterns = np.asarray(patterns, dtype=float)
        if patterns.ndim != 2 or patterns.size == 0:
            raise ValueError(f"patterns must be a non-empty 2-D array (N, d), got shape {patterns.shape}")
        self.patterns_ = patterns
        return self

    def _states(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim < 1 or x.shape[-1] != self.patterns_.shape[1]:
            raise ValueError(f"states must have shape (..., {self.patterns_.shape[1]}), got shape {x.shape}")
        return x

    def energy(self, x: np.ndarray) -> np.ndarray:
        x = self._states(x)
        n = self.patterns_.shape[0]
        m2 = np.max(np.sum(self.patterns_**2, axis=1))
        lse = logsumexp(self.beta * x @ self.patterns_.T, axis=-1)
        return -lse / self.beta + 0.5 * np.sum(x**2, axis=-1) + np.log(n) / self.beta + 0.5 * m2

    def update(self, x: np.ndarray) -> np.ndarray:
        """ξ ← Xᵀ softmax(β X ξ)."""
        x = self._states(x)
        return softmax(self.beta * x @ self.patterns_.T, axis=-1) @ self.patterns_
