r"""DP-means clustering (Kulis & Jordan 2012, "Revisiting k-means: New Algorithms via Bayesian Nonparametrics",
ICML), the small-variance limit of a Dirichlet-process Gaussian mixture.

It minimises, over the assignments :math:`z` and the number of clusters :math:`K`,

.. math::  \sum_i \|x_i - \mu_{z_i}\|^2 + \lambda^2 K ,

i.e. k-means with a price :math:`\lambda^2` per cluster (Kulis & Jordan write the price as :math:`\lambda` and
compare *squared* distances with it; here :math:`\lambda` is a distance, so their :math:`\lambda` is our
:math:`\lambda^2`). Their Algorithm 1, batch form: start from one cluster at the mean of all points; in each pass,
visit the points in a seeded random order; a point farther than :math:`\lambda` from every centroid opens a new
cluster at itself, otherwise it joins the nearest one; then every centroid becomes its members' mean and empty
clusters are dropped; repeat until the assignment is stable (or ``max_iter`` passes). Neither step raises the
objective, so it converges. Within a pass the existing centroids are frozen, so the distances to them are computed
for all points at once and only the clusters opened during the pass are checked point by point.

:math:`\lambda` sets the resolution: :math:`\lambda \to 0` gives one cluster per distinct point,
:math:`\lambda \to \infty` one cluster. Users: ``labkit.facade.pseudoclasses`` (FACADE's pseudo-classes) and the
small-variance limit of ``labkit.memory.crp.CRPMemory`` (tested in ``tests/memory/test_crp.py``).
"""

import numpy as np
import torch

from labkit import repro

__all__ = ["dp_means", "nearest_centroid"]


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centroid and the Euclidean distance to it, for every row of ``x``."""
    d = torch.cdist(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(centroids, dtype=torch.float64))
    dist, idx = d.min(dim=1)
    return idx.numpy(), dist.numpy()


def dp_means(x: np.ndarray, lam: float, max_iter: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Batch DP-means with threshold ``lam`` (a distance) on the rows of ``x``; returns ``(centroids (K, d),
    labels (n,))``, like ``sklearn.cluster.k_means``. Points are visited in the order ``repro.rng(seed)``
    permutes them."""
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam!r}")
    x = np.asarray(x, dtype=np.float64)
    order = repro.rng(seed).permutation(len(x))
    centroids = x.mean(axis=0, keepdims=True)
    labels = np.full(len(x), -1)
    for _ in range(max_iter):
        near, dist = nearest_centroid(x, centroids)
        new = []  # clusters opened in this pass
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
