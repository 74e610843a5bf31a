"""Bayesian-nonparametric memory creation: a Pitman–Yor (Chinese-restaurant) prior decides when to open a memory.

Source: the memory-creation example of Schaeffer et al. 2024 (arXiv 2402.10202); Pitman–Yor / CRP predictive
rule (Pitman 2006, "Combinatorial Stochastic Processes"); DP-means as the small-variance limit (Kulis & Jordan 2012,
"Revisiting k-means: New Algorithms via Bayesian Nonparametrics").

Model, on standardised data (zero mean, unit variance per feature, so a prior centred at 0 is sensible):

* prior over assignments, after n − 1 points in K memories with counts N_k (concentration α ≥ 0, discount
  0 ≤ d < 1): existing memory k with probability (N_k − d)/(α + n − 1), a new one with (α + dK)/(α + n − 1);
* likelihood of memory k: N(x; μ_k, σ² I) with σ² = (2β)⁻¹, i.e. the ClAM kernel exp(−β‖x − μ_k‖²);
* a new memory's mean is drawn from N(0, τ² I) with τ² = (2ρ)⁻¹, so its prior predictive is
  N(x; 0, (σ² + τ²) I) ∝ exp(−(β⁻¹ + ρ⁻¹)⁻¹ ‖x‖²).

The predictive density of the next point (memories μ_k used as point estimates, assumed here) is therefore

    p(x) = [ Σ_k (N_k − d) N(x; μ_k, σ² I) + (α + dK) N(x; 0, (σ² + τ²) I) ] / (α + n − 1),

and, in energy units (temperature 1/β, constants dropped),

    E(v) = −(1/β) log[ (α + dK) (ρ/(β + ρ))^{d/2} exp(−(β⁻¹ + ρ⁻¹)⁻¹ ‖v‖²) + Σ_k (N_k − d) exp(−β‖μ_k − v‖²) ],

    log p(v) = −β E(v) − log(α + n − 1) − (d/2) log(π/β)            (exact; :meth:`CRPPredictiveMemory.log_density`).

The new-memory term needs the factor (ρ/(β + ρ))^{d/2} = (σ²/(σ² + τ²))^{d/2}, the ratio of the two Gaussians'
normalisers (derived here; the energy as first written in the project's earlier paper notes lacks it). Without it the
new-memory option is over-weighted by ((β + ρ)/ρ)^{d/2}, a factor that explodes with the dimension (d = 64 for digits).

Streaming (:class:`CRPMemory`): points are visited in a random order. For each, the log joints ℓ_k = log(N_k − d)
− β‖x − μ_k‖² and ℓ_new = log(α + dK) + (d/2) log(ρ/(β + ρ)) − (β⁻¹ + ρ⁻¹)⁻¹‖x‖² feed the ELBO memory's dynamics
(:mod:`labkit.memory.elbo`) from uniform assignments; if the new-memory option wins, a memory opens at x with count
1; otherwise the assignments q restricted to the existing memories (renormalised) are added to the soft counts and
each mean moves by the soft running-mean rule μ_k ← μ_k + q_k (x − μ_k)/N_k. Optional refinement passes then rerun
soft EM over all points with the memories fixed in number (the prior weights N_k − d as mixing weights), dropping
any memory whose weight N_k − d falls to ~0.

Small-variance limit: with α = ((β + ρ)/ρ)^{d/2} exp(−βλ), d = 0 and β → ∞, the new memory wins exactly when
min_k ‖x − μ_k‖² > λ and assignments become hard: streaming becomes one online pass of DP-means and each refinement
pass a k-means step; Kulis & Jordan's batch DP-means (:func:`labkit.dpmeans.dp_means`, threshold √λ as a distance)
alternates such assignment passes with mean updates until the assignment is stable.
"""

import numbers

import numpy as np
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from labkit.memory.base import EnergyMemory
from labkit.memory.clam import squared_distances
from labkit.memory.elbo import ELBOMemory, log_softmax

__all__ = ["CRPPredictiveMemory", "CRPMemory"]


def _check_prior(alpha, discount, beta, rho) -> None:
    if not (isinstance(discount, numbers.Real) and 0 <= discount < 1):
        raise ValueError(f"discount must be in [0, 1), got {discount!r}")
    if not (isinstance(alpha, numbers.Real) and alpha >= 0):
        raise ValueError(f"alpha must be >= 0 (alpha = 0 with discount = 0 never opens a second memory), got {alpha!r}")
    for name, value in (("beta", beta), ("rho", rho)):
        if not (isinstance(value, numbers.Real) and value > 0):
            raise ValueError(f"{name} must be > 0, got {value!r}")


def _log_joint(X, memories, counts, alpha, discount, beta, rho, with_new: bool = True) -> np.ndarray:
    """ℓ for X (n, d) up to a shared constant: columns = existing memories, then (if ``with_new`` and its weight
    α + dK is > 0) the new-memory option."""
    d = X.shape[1]
    existing = np.log(counts - discount) - beta * squared_distances(X, memories)
    weight_new = alpha + discount * len(memories)
    if not with_new or weight_new == 0:
        return existing
    new = np.log(weight_new) + 0.5 * d * np.log(rho / (beta + rho)) - np.sum(X**2, axis=1) / (1 / beta + 1 / rho)
    return np.concatenate([existing, new[:, None]], axis=1)


class CRPPredictiveMemory(EnergyMemory):
    """The Pitman–Yor predictive as a memory over (standardised) states v ∈ R^d: existing memories + a new one."""

    def __init__(
        self,
        memories: np.ndarray,
        counts: np.ndarray,
        alpha: float = 1.0,
        discount: float = 0.0,
        beta: float = 1.0,
        rho: float = 0.5,
    ):
        _check_prior(alpha, discount, beta, rho)
        self.memories = np.asarray(memories, dtype=float)
        self.counts = np.asarray(counts, dtype=float)
        if self.memories.ndim != 2 or len(self.memories) < 1:
            raise ValueError(f"memories must have shape (K, d) with K >= 1, got {self.memories.shape}")
        if self.counts.shape != (len(self.memories),) or np.any(self.counts <= discount):
            raise ValueError(
                f"counts must have shape ({len(self.memories)},) with every count > discount={discount}, "
                f"got {self.counts!r}"
            )
        self.alpha, self.discount, self.beta, self.rho = float(alpha), float(discount), float(beta), float(rho)

    def _log_terms(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        flat = v.reshape(-1, v.shape[-1])
        return _log_joint(flat, self.memories, self.counts, self.alpha, self.discount, self.beta, self.rho).reshape(
            *v.shape[:-1], -1
        )

    def energy(self, v: np.ndarray) -> np.ndarray:
        return -logsumexp(self._log_terms(v), axis=-1) / self.beta

    def update(self, v: np.ndarray) -> np.ndarray:
        """EM (mean-shift) step: v ← Σ_k r_k μ_k/σ_k² / Σ_k r_k/σ_k², r = responsibilities (new memory: mean 0,
        variance σ² + τ²). It maximises the EM lower bound, so the energy does not rise."""
        v = np.asarray(v, dtype=float)
        r = softmax(self._log_terms(v), axis=-1)
        precision = np.full(r.shape[-1], 2 * self.beta)
        precision[len(self.memories) :] = 1 / (1 / (2 * self.beta) + 1 / (2 * self.rho))
        means = np.concatenate([self.memories, np.zeros((r.shape[-1] - len(self.memories), v.shape[-1]))])
        w = r * precision
        return (w @ means) / w.sum(axis=-1, keepdims=True)

    def log_density(self, v: np.ndarray) -> np.ndarray:
        """Exact log predictive density: −βE(v) − log(α + n − 1) − (d/2) log(π/β), with n − 1 = Σ_k N_k."""
        d = self.memories.shape[1]
        total = self.alpha + self.counts.sum()
        return -self.beta * self.energy(v) - np.log(total) - 0.5 * d * np.log(np.pi / self.beta)


def _standardise(X):
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return (X - mean) / scale, mean, scale


class CRPMemory(ClusterMixin, BaseEstimator):
    """Memories opened on demand by a Pitman–Yor prior, points streamed through the ELBO dynamics (sklearn conventions).

    Parameters: ``alpha`` concentration (≥ 0), ``discount`` d ∈ [0, 1), ``beta`` likelihood precision (σ² = 1/(2β),
    in standardised units), ``rho`` prior precision of new memories' means (τ² = 1/(2ρ)), ``n_refine`` soft-EM passes
    after streaming, ``n_steps`` / ``step_size`` of the ELBO dynamics per decision, ``random_state`` (visiting order).

    Learned: ``cluster_centers_`` (original units), ``counts_`` (soft counts), ``n_clusters_``, ``labels_``,
    ``n_created_`` (memories opened while streaming), ``mean_`` / ``scale_`` (the standardisation), ``memory_``
    (:class:`CRPPredictiveMemory` over standardised states).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        discount: float = 0.0,
        beta: float = 1.0,
        rho: float = 0.5,
        n_refine: int = 0,
        n_steps: int = 50,
        step_size: float = 1.0,
        random_state=None,
    ):
        self.alpha = alpha
        self.discount = discount
        self.beta = beta
        self.rho = rho
        self.n_refine = n_refine
        self.n_steps = n_steps
        self.step_size = step_size
        self.random_state = random_state

    def _assign(self, Z, memories, counts, with_new: bool) -> np.ndarray:
        """Assignments q from the ELBO dynamics; the last column is the new-memory option when ``with_new``."""
        ell = _log_joint(Z, memories, counts, self.alpha, self.discount, self.beta, self.rho, with_new)
        mem = ELBOMemory(ell, step_size=self.step_size)
        return np.exp(log_softmax(mem.retrieve(np.zeros_like(ell), n_steps=self.n_steps, tol=1e-6)))

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=1)
        _check_prior(self.alpha, self.discount, self.beta, self.rho)
        if not (isinstance(self.n_refine, (int, np.integer)) and self.n_refine >= 0):
            raise ValueError(f"n_refine must be an integer >= 0, got {self.n_refine!r}")
        Z, self.mean_, self.scale_ = _standardise(X)
        order = check_random_state(self.random_state).permutation(len(Z))
        memories, counts = Z[order[:1]].copy(), np.ones(1)
        for i in order[1:]:
            z = Z[i : i + 1]
            q = self._assign(z, memories, counts, with_new=True)[0]
            if len(q) > len(memories) and q.argmax() == len(memories):
                memories, counts = np.vstack([memories, z]), np.append(counts, 1.0)
                continue
            w = q[: len(memories)] / q[: len(memories)].sum()
            counts = counts + w
            memories = memories + (w / counts)[:, None] * (z - memories)
        self.n_created_ = len(memories)
        for _ in range(self.n_refine):
            q = self._assign(Z, memories, counts, with_new=False)
            counts = q.sum(axis=0)
            keep = counts - self.discount > 1e-9
            memories, counts = (q[:, keep].T @ Z) / counts[keep, None], counts[keep]
        self.counts_, self.n_clusters_ = counts, len(memories)
        self.cluster_centers_ = memories * self.scale_ + self.mean_
        self.memory_ = CRPPredictiveMemory(memories, counts, self.alpha, self.discount, self.beta, self.rho)
        self.labels_ = self.predict(X)
        return self

    def predict(self, X) -> np.ndarray:
        """The existing memory each point is assigned to by the ELBO dynamics (no new memories are opened)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        Z = (X - self.mean_) / self.scale_
        return self._assign(Z, self.memory_.memories, self.counts_, with_new=False).argmax(axis=1)
