r"""Pseudo-classes: the modes of each hidden layer's activations, and how inputs travel between them.

**DP-means** (Kulis & Jordan 2012, "Revisiting k-means: new algorithms via Bayesian nonparametrics") is the
small-variance limit of a Dirichlet-process Gaussian mixture. It minimises
:math:`\sum_i \|x_i - \mu_{z_i}\|^2 + \lambda^2 K` over assignments and the number of clusters :math:`K`: a point
farther than :math:`\lambda` from every centroid opens a new cluster, then centroids become their members' means,
until the assignment is stable. :math:`\lambda` sets the *resolution* — :math:`\lambda\to0` gives one cluster per
distinct point, :math:`\lambda\to\infty` one cluster. Within a pass the centroids are frozen (batch DP-means), so
distances to the existing centroids are computed for all points at once and only the clusters opened during the
pass are checked point by point.

Per layer :math:`l` the threshold is :math:`\lambda_l = \lambda\,s_l` with :math:`s_l` the median distance from a
point to its ``k_scale``-th nearest neighbour in that layer (so one λ means the same resolution in every layer).
New inputs go to the nearest centroid.

**Paths.** An input's pseudo-classes :math:`(c_1, \dots, c_L)` across the hidden layers, followed by the predicted
class :math:`c_{L+1}=\hat y`, are modelled as a Markov chain with Laplace (add-one) smoothing,
:math:`p(c_1)\prod_l p(c_{l+1}\mid c_l)`, :math:`p(b\mid a) = (N_{ab}+1)/(N_a + K_{l+1})`; the path negative
log-likelihood is FACADE's first term. (Our concrete instantiation of the FACADE proposal, Pai et al. 2023,
arXiv 2307.10563, ICML 2023 AdvML-Frontiers workshop; the poster draws the same flows as a Sankey diagram.)
"""

import numpy as np
import torch

from labkit import repro
from labkit.detectors.knn import nearest_distances

__all__ = ["dp_means", "nearest_centroid", "PseudoClasses"]


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centroid and the distance to it, for every row of ``x``."""
    d = torch.cdist(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(centroids, dtype=torch.float64))
    dist, idx = d.min(dim=1)
    return idx.numpy(), dist.numpy()


def dp_means(x: np.ndarray, lam: float, max_iter: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Batch DP-means with threshold ``lam`` (a distance); returns ``(centroids (K, d), labels (n,))``.
    Points are visited in a seeded random order; empty clusters are dropped after each pass."""
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam!r}")
    x = np.asarray(x, dtype=np.float64)
    order = repro.rng(seed).permutation(len(x))
    centroids = x.mean(axis=0, keepdims=True)
    labels = np.full(len(x), -1)
    for _ in range(max_iter):
        near, dist = nearest_centroid(x, centroids)
        new = []                                           # clusters opened in this pass
        for i in order[dist[order] > lam]:
            if new:
                gap = np.linalg.norm(x[new] - x[i], axis=1)
                j = int(gap.argmin())
                if gap[j] <= lam and gap[j] < dist[i]:
                    near[i] = len(centroids) + j
                    continue
            near[i] = len(centroids) + len(new)
            new.append(i)
        centroids = np.concatenate([centroids, x[new]])
        used, near = np.unique(near, return_inverse=True)  # drop empty clusters, relabel 0..K-1
        sums = np.zeros((len(used), x.shape[1]))
        np.add.at(sums, near, x)
        centroids = sums / np.bincount(near)[:, None]
        if np.array_equal(near, labels):
            break
        labels = near
    return centroids, labels


class PseudoClasses:
    """DP-means pseudo-classes per layer (resolution ``lam`` in units of the layer's median ``k_scale``-NN distance)
    and the Markov chain over each input's path, ending in its predicted class."""

    def __init__(self, lam: float = 2.0, k_scale: int = 10, max_iter: int = 50, random_state: int = 0):
        self.lam = lam
        self.k_scale = k_scale
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, layers: list, outputs: np.ndarray, n_outputs: int) -> "PseudoClasses":
        """``layers``: activations ``(n, d_l)`` per hidden layer; ``outputs``: predicted classes in ``[0, n_outputs)``."""
        self.scales_ = [float(np.median(nearest_distances(h, h, self.k_scale, exclude_self=True)[:, -1]))
                        for h in layers]
        self.lambdas_ = [self.lam * s for s in self.scales_]
        fits = [dp_means(h, lam, self.max_iter, self.random_state + l)
                for l, (h, lam) in enumerate(zip(layers, self.lambdas_))]
        self.centroids_ = [c for c, _ in fits]
        self.n_outputs_ = n_outputs
        paths = np.column_stack([lab for _, lab in fits] + [np.asarray(outputs)])
        sizes = self.n_states_
        self.log_initial_ = np.log((np.bincount(paths[:, 0], minlength=sizes[0]) + 1) / (len(paths) + sizes[0]))
        self.log_transitions_ = []
        for l in range(len(sizes) - 1):
            counts = np.zeros((sizes[l], sizes[l + 1]))
            np.add.at(counts, (paths[:, l], paths[:, l + 1]), 1)
            self.log_transitions_.append(np.log((counts + 1) / (counts.sum(axis=1, keepdims=True) + sizes[l + 1])))
        self.train_paths_ = paths
        return self

    @property
    def n_states_(self) -> list[int]:
        """Number of pseudo-classes per layer, then the number of classes."""
        return [len(c) for c in self.centroids_] + [self.n_outputs_]

    def assign(self, layers: list) -> tuple[np.ndarray, np.ndarray]:
        """Nearest-centroid pseudo-class ``(n, L)`` and distance to it ``(n, L)`` in every layer."""
        fits = [nearest_centroid(h, c) for h, c in zip(layers, self.centroids_)]
        return np.column_stack([a for a, _ in fits]), np.column_stack([d for _, d in fits])

    def path_nll(self, assignments: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """Negative log-likelihood of every path (pseudo-classes, then the predicted class) under the chain."""
        paths = np.column_stack([assignments, np.asarray(outputs)])
        nll = -self.log_initial_[paths[:, 0]]
        for l, logt in enumerate(self.log_transitions_):
            nll -= logt[paths[:, l], paths[:, l + 1]]
        return nll
