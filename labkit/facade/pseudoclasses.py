r"""Pseudo-classes: the modes of each hidden layer's activations, and how inputs travel between them.

**DP-means** (Kulis & Jordan 2012; :mod:`labkit.dpmeans`) clusters each hidden layer's activations at a
resolution :math:`\lambda`: a point farther than :math:`\lambda` from every centroid opens a new cluster, so
:math:`\lambda\to0` gives one cluster per distinct point and :math:`\lambda\to\infty` one cluster.

Per layer :math:`l` the threshold is :math:`\lambda_l = \lambda\,s_l` with :math:`s_l` the median distance from a
point to its ``k_scale``-th nearest neighbour in that layer (so one λ means the same resolution in every layer).
Layer :math:`l` is clustered with seed ``derived_seed(random_state, l)`` (:mod:`labkit.seeds`). New inputs go to
the nearest centroid. The *purity* of a layer's pseudo-classes (:func:`purity`) is the mean over its
pseudo-classes of the share of members from the most common true class (1: every pseudo-class is a sub-mode of one
class).

**Paths.** An input's pseudo-classes :math:`(c_1, \dots, c_L)` across the hidden layers, followed by the predicted
class :math:`c_{L+1}=\hat y`, are modelled as a Markov chain with Laplace (add-one) smoothing,
:math:`p(c_1)\prod_l p(c_{l+1}\mid c_l)`, :math:`p(b\mid a) = (N_{ab}+1)/(N_a + K_{l+1})`; the path negative
log-likelihood is FACADE's first term. (Our concrete instantiation of the FACADE proposal, Pai et al. 2023,
arXiv 2307.10563, ICML 2023 AdvML-Frontiers workshop; the poster draws the same flows as a Sankey diagram.)
"""

import numpy as np

from labkit.detectors.knn import nearest_distances
from labkit.dpmeans import dp_means, nearest_centroid
from labkit.seeds import derived_seed

__all__ = ["PseudoClasses", "purity"]


class PseudoClasses:
    """DP-means pseudo-classes per layer (resolution ``lam`` in units of the layer's median ``k_scale``-NN distance)
    and the Markov chain over each input's path, ending in its predicted class."""

    def __init__(self, lam: float = 2.0, k_scale: int = 10, max_iter: int = 50, random_state: int = 0):
        self.lam = lam
        self.k_scale = k_scale
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, layers: list, outputs: np.ndarray, n_outputs: int) -> "PseudoClasses":
        """``layers``: activations ``(n, d_l)`` per hidden layer; ``outputs``: predicted classes in
        ``[0, n_outputs)``."""
        self.scales_ = [
            float(np.median(nearest_distances(h, h, self.k_scale, exclude_self=True)[:, -1])) for h in layers
        ]
        self.lambdas_ = [self.lam * s for s in self.scales_]
        fits = [
            dp_means(h, lam, self.max_iter, derived_seed(self.random_state, l))
            for l, (h, lam) in enumerate(zip(layers, self.lambdas_))
        ]
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


def purity(labels: np.ndarray, assignments: np.ndarray) -> np.ndarray:
    """Per column of ``assignments`` (``(n,)`` or ``(n, L)`` pseudo-classes): the mean over its pseudo-classes of
    the share of their members that carry the most common of the true ``labels`` (each pseudo-class counts once,
    whatever its size). Returns a float for 1-D ``assignments``, else an array ``(L,)``."""
    labels, assignments = np.asarray(labels), np.asarray(assignments)
    if len(labels) != len(assignments) or assignments.ndim not in (1, 2):
        raise ValueError(
            f"need n labels and assignments (n,) or (n, L), got shapes {labels.shape} and {assignments.shape}"
        )
    _, labels = np.unique(labels, return_inverse=True)

    def one(column):
        return float(np.mean([np.bincount(labels[column == c]).max() / np.sum(column == c) for c in np.unique(column)]))

    if assignments.ndim == 1:
        return one(assignments)
    return np.array([one(assignments[:, l]) for l in range(assignments.shape[1])])
