"""ClAM: clustering with an associative memory whose energy is a Gaussian-mixture negative log likelihood.

Source: Saha et al. 2023, "End-to-end Differentiable Clustering with Associative Memories" (ICML), as read through the
probabilistic lens of Schaeffer et al. 2024 (arXiv 2402.10202). With memories μ_1..μ_K and inverse temperature β,

    E(v) = −(1/β) log Σ_k exp(−β ‖μ_k − v‖²),

    τ dv/dt = Σ_k (μ_k − v) softmax_k(−β ‖μ_k − v‖²) = −½ ∇E(v).

The bridge: a mixture of K Gaussians with uniform weights 1/K and covariance σ² I, σ² = (2β)⁻¹, has

    log p(v) = −β E(v) − log K − (d/2) log(π / β),

so E is β⁻¹ × its negative log likelihood up to a constant (:meth:`ClAMMemory.log_density` is the exact log p).
Running the dynamics is a gradient E-step; learning the memories is an M-step.

Discretisation: v ← v + η Σ_k s_k (μ_k − v), s = softmax. For η = 1 this is the EM/mean-shift fixed-point update
v ← Σ_k s_k μ_k, which maximises the EM lower bound Q(v') = Σ_k s_k log N(v'; μ_k, σ² I) (concave in v'); any η in
(0, 1] lands on the segment between v and that maximiser, where Q ≥ Q(v), so E never rises for η ≤ 1.

:class:`ClAM` learns the memories as the paper does: minimise the reconstruction loss mean ‖x − v_T(x)‖² of the
state v_T reached after T unrolled steps from v_0 = x, by Adam with autograd through the unrolled dynamics. A point's
cluster is the memory its state ends nearest to.
"""

from typing import ClassVar

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import kmeans_plusplus
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from labkit import repro
from labkit.config import Check, check_estimator_params, positive_float, positive_int, unit_interval
from labkit.memory.base import EnergyMemory

__all__ = ["ClAMMemory", "ClAM", "clam_step", "squared_distances"]


def squared_distances(v: np.ndarray, memories: np.ndarray) -> np.ndarray:
    """‖μ_k − v‖² for states (..., d) and memories (K, d); shape (..., K). Expanded as ‖v‖² − 2 v·μ + ‖μ‖² (one
    matrix product, no (..., K, d) temporary), clipped at 0 against rounding."""
    sq = np.sum(v**2, axis=-1)[..., None] - 2 * v @ memories.T + np.sum(memories**2, axis=-1)
    return np.maximum(sq, 0.0)


def clam_step(v: torch.Tensor, memories: torch.Tensor, beta: float, step_size: float) -> torch.Tensor:
    """One Euler step of τ dv/dt = Σ_k (μ_k − v) softmax_k(−β‖μ_k − v‖²) for states (n, d), memories (K, d)."""
    sq = ((v**2).sum(-1, keepdim=True) - 2 * v @ memories.T + (memories**2).sum(-1)).clamp_min(0)
    s = torch.softmax(-beta * sq, dim=-1)
    return v + step_size * (s @ memories - v)


class ClAMMemory(EnergyMemory):
    """ClAM's energy over states v ∈ R^d with memories (K, d), inverse temperature ``beta`` and step η ∈ (0, 1]."""

    def __init__(self, memories: np.ndarray, beta: float = 1.0, step_size: float = 1.0):
        memories = np.asarray(memories, dtype=float)
        if memories.ndim != 2 or memories.shape[0] < 1:
            raise ValueError(f"memories must have shape (K, d) with K >= 1, got {memories.shape}")
        positive_float.check("beta", beta, "ClAMMemory")
        unit_interval.check("step_size", step_size, "ClAMMemory")  # where the energy cannot rise
        self.memories, self.beta, self.step_size = memories, float(beta), float(step_size)

    def energy(self, v: np.ndarray) -> np.ndarray:
        return -logsumexp(-self.beta * squared_distances(np.asarray(v, float), self.memories), axis=-1) / self.beta

    def update(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        flat = torch.from_numpy(v.reshape(-1, v.shape[-1]))
        return clam_step(flat, torch.from_numpy(self.memories), self.beta, self.step_size).numpy().reshape(v.shape)

    def log_density(self, v: np.ndarray) -> np.ndarray:
        """Exact log p(v) of the mixture (1/K) Σ_k N(v; μ_k, (2β)⁻¹ I) = −βE − log K − (d/2) log(π/β)."""
        K, d = self.memories.shape
        return -self.beta * self.energy(v) - np.log(K) - 0.5 * d * np.log(np.pi / self.beta)


class ClAM(ClusterMixin, BaseEstimator):
    """Clustering with associative memories (scikit-learn conventions).

    Parameters: ``n_clusters`` memories; ``beta`` inverse temperature; ``n_steps`` unrolled steps T of size
    ``step_size``; ``max_iter`` epochs of Adam (``learning_rate``) over shuffled mini-batches of ``batch_size``;
    ``random_state`` seeds the k-means++ initialisation and the batch order.

    Learned: ``cluster_centers_`` (the memories, (K, d)), ``labels_``, ``loss_curve_`` (mean reconstruction loss per
    epoch), ``n_iter_``, ``memory_`` (the fitted :class:`ClAMMemory`).
    """

    #: what each parameter may be, checked at :meth:`fit` (``__init__`` only stores); plus n_clusters <= n_samples
    _parameter_constraints: ClassVar[dict[str, Check]] = {
        "n_clusters": positive_int,
        "beta": positive_float,
        "n_steps": positive_int,
        "step_size": unit_interval,
        "max_iter": positive_int,
        "learning_rate": positive_float,
        "batch_size": positive_int,
    }

    def __init__(
        self,
        n_clusters: int = 8,
        beta: float = 1.0,
        n_steps: int = 10,
        step_size: float = 0.5,
        max_iter: int = 50,
        learning_rate: float = 0.05,
        batch_size: int = 256,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.beta = beta
        self.n_steps = n_steps
        self.step_size = step_size
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state

    def _settle(self, x: torch.Tensor, memories: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n_steps):
            x = clam_step(x, memories, self.beta, self.step_size)
        return x

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        check_estimator_params(self)
        Check(lambda k: k <= len(X), f"at most n_samples={len(X)}").check("n_clusters", self.n_clusters, "ClAM")
        with repro.threads(1):  # many tiny ops: one thread is several times faster
            self._fit(X, check_random_state(self.random_state))
        self.memory_ = ClAMMemory(self.cluster_centers_, self.beta, self.step_size)
        self.labels_ = self.predict(X)
        return self

    def _fit(self, X, rs):
        init, _ = kmeans_plusplus(X, self.n_clusters, random_state=rs)
        gen = torch.Generator().manual_seed(int(rs.randint(2**31 - 1)))
        data = torch.from_numpy(X)
        memories = torch.nn.Parameter(torch.from_numpy(init.copy()))
        opt = torch.optim.Adam([memories], lr=self.learning_rate)
        self.loss_curve_ = []
        for n_iter in range(1, self.max_iter + 1):
            self.n_iter_ = n_iter
            total = 0.0
            for idx in torch.randperm(len(data), generator=gen).split(self.batch_size):
                x = data[idx]
                loss = ((x - self._settle(x, memories)) ** 2).sum(dim=1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            self.loss_curve_.append(total / len(data))
        self.cluster_centers_ = memories.detach().numpy().copy()

    def predict(self, X) -> np.ndarray:
        """Index of the memory nearest to the state each point settles in after ``n_steps`` steps."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        with torch.no_grad(), repro.threads(1):
            v = self._settle(torch.from_numpy(X), torch.from_numpy(self.cluster_centers_)).numpy()
        return squared_distances(v, self.cluster_centers_).argmin(axis=-1)
