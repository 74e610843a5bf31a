r"""Manifold geometry of pseudo-classes, its change across layers, and which edges drive that change.

Gaussian approximations of the mean-field manifold measures (Chung, Lee & Sompolinsky 2018, "Classification and
geometry of general perceptual manifolds"; Cohen, Chung, Lee & Sompolinsky 2020) for a point cloud with centre
:math:`\mu` (measured from the layer's global mean) and covariance eigenvalues :math:`\lambda_i`:

.. math::  R = \frac{\sqrt{\sum_i \lambda_i}}{\|\mu\|},\qquad D = \frac{(\sum_i\lambda_i)^2}{\sum_i\lambda_i^2},
           \qquad \alpha \approx \frac{1 + R^{-2}}{D},

radius, participation-ratio dimension and capacity; plus the mean Gaussian-KDE log density of the members
(``labkit.detectors.density.kde_log_density``). :math:`\sum\lambda_i = \mathrm{tr}\,C` and
:math:`\sum\lambda_i^2 = \|C\|_F^2`, so no eigendecomposition is needed and the measures are differentiable.

**Change across layers and edge contributions.** Pseudo-classes of different layers do not correspond one to one,
so the change is followed per predicted class :math:`g` (the output layer's pseudo-class): with
:math:`J_g = \sum_l [\Delta_l \log R_g + \Delta_l \log D_g]` over consecutive representations (hidden layers, then
logits) — which telescopes to last minus first — each edge's contribution is
:math:`c_{ge} = \partial J_g / \partial g_e` at gates :math:`g = 1` (first-order effect of the edge on the
compression of the class manifold). :math:`p_{ge} \propto |c_{ge}|` is the categorical distribution over circuit
components. Per input, the *geometry alignment* :math:`A(x) = E\sum_e p_{\hat y e}\,|s_e(x)| / \sum_e |s_e(x)|`
(:math:`E` edges; 1 = attribution spread like a random edge) asks whether the input's attribution flows through the
edges that shape its class's manifold; :math:`-\log A(x)` is FACADE's geometry term.

**Off-manifold residual.** Per pseudo-class the principal subspace of dimension :math:`k = \mathrm{round}(D)`;
the residual energy :math:`\|(I - UU^\top)(h-\mu_c)\|^2` relative to its mean over the members (for a pseudo-class
too small to have an off-subspace residual, the layer's median over the other pseudo-classes).
"""

from typing import NamedTuple

import numpy as np
import torch

from labkit.classifiers import as_tensor
from labkit.detectors.density import kde_log_density

__all__ = [
    "Manifold",
    "manifold_measures",
    "log_radius_dimension",
    "pseudo_class_geometry",
    "class_trajectories",
    "edge_contributions",
    "ClusterSubspaces",
]

_TINY = 1e-12  # floor of a radius or residual scale (a collapsed layer has zero spread)


class Manifold(NamedTuple):
    radius: float
    dimension: float
    capacity: float


def log_radius_dimension(h: torch.Tensor, center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable :math:`\\log R` and :math:`\\log D` of the rows of ``h`` (covariance or Gram form,
    whichever matrix is smaller: :math:`\\|H^\\top H\\|_F = \\|HH^\\top\\|_F`)."""
    mu = h.mean(dim=0)
    hc = h - mu
    n = h.shape[0]
    trace = hc.square().sum() / n
    frob2 = ((hc.T @ hc) if n > h.shape[1] else (hc @ hc.T)).square().sum() / n**2
    return 0.5 * torch.log(trace) - torch.log((mu - center).norm()), 2 * torch.log(trace) - torch.log(frob2)


def manifold_measures(x: np.ndarray, center: np.ndarray | None = None) -> Manifold:
    """Radius, participation-ratio dimension and capacity of the point cloud ``x`` (centre measured from ``center``)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        raise ValueError(f"need at least 2 points for a covariance, got {len(x)}")
    center = np.zeros(x.shape[1]) if center is None else np.asarray(center, dtype=np.float64)
    log_r, log_d = log_radius_dimension(torch.as_tensor(x), torch.as_tensor(center))
    r, d = float(log_r.exp()), float(log_d.exp())
    return Manifold(r, d, (1 + r**-2) / d)


def pseudo_class_geometry(h: np.ndarray, labels: np.ndarray, bandwidth: float, min_size: int = 5) -> dict:
    """Per pseudo-class with at least ``min_size`` members: size, radius, dimension, capacity, mean KDE log density."""
    center = h.mean(axis=0)
    rows = []
    for c in np.unique(labels):
        members = h[labels == c]
        if len(members) >= min_size:
            m = manifold_measures(members, center)
            rows.append((c, len(members), *m, kde_log_density(members, members, bandwidth).mean()))
    names = ("pseudo_class", "size", "radius", "dimension", "capacity", "kde_log_density")
    return {k: np.array(v) for k, v in zip(names, zip(*rows))} if rows else {k: np.array([]) for k in names}


def _representations(trace) -> list:
    return trace.hidden + [trace.logits]


@torch.no_grad()
def class_trajectories(model, x, groups: np.ndarray, n_groups: int) -> dict:
    """``log R`` and ``log D`` of every group's cloud in every representation (hidden layers, then logits):
    arrays ``(n_groups, L+1)``, NaN where a group has fewer than 3 members."""
    model.eval()
    reps = _representations(model.trace(as_tensor(x)))
    out = {key: np.full((n_groups, len(reps)), np.nan) for key in ("log_radius", "log_dimension")}
    for g in range(n_groups):
        members = torch.as_tensor(np.asarray(groups) == g)
        if members.sum() >= 3:
            for l, h in enumerate(reps):
                lr, ld = log_radius_dimension(h[members].double(), h.double().mean(dim=0))
                out["log_radius"][g, l], out["log_dimension"][g, l] = float(lr), float(ld)
    return out


def edge_contributions(model, x, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Categorical distributions ``(n_groups, n_edges)`` over edges,
    :math:`p_{ge} \\propto |\\partial J_g/\\partial g_e|`; uniform for a group with fewer than 3 members."""
    model.eval()
    x = as_tensor(x)
    gates = [torch.ones_like(lin.weight, requires_grad=True) for lin in model.linears]
    n_edges = sum(g.numel() for g in gates)
    out = np.full((n_groups, n_edges), 1.0 / n_edges)
    with torch.no_grad():
        centers = [h.double().mean(dim=0) for h in _representations(model.trace(x))]
    for g in range(n_groups):
        members = torch.as_tensor(np.asarray(groups) == g)
        if members.sum() < 3:
            continue
        reps = _representations(model.trace(x[members], gates))
        (lr0, ld0), (lr1, ld1) = (log_radius_dimension(reps[i].double(), centers[i]) for i in (0, -1))
        grads = torch.autograd.grad((lr1 - lr0) + (ld1 - ld0), gates)
        mass = torch.cat([gr.flatten() for gr in grads]).abs().double()
        out[g] = (mass / mass.sum()).numpy()
    return out


class ClusterSubspaces:
    """Per pseudo-class mean, RMS radius and principal subspace (dimension ``round(D)``) of one layer."""

    def fit(self, h: np.ndarray, labels: np.ndarray, n_clusters: int) -> "ClusterSubspaces":
        d = h.shape[1]
        self.means_ = np.zeros((n_clusters, d))
        self.radii_ = np.zeros(n_clusters)
        self.bases_ = [np.zeros((d, 0))] * n_clusters
        self.residual_ = np.zeros(n_clusters)
        for c in range(n_clusters):  # a loop over clusters, not points
            members = h[labels == c]
            if not len(members):
                continue
            self.means_[c] = members.mean(axis=0)
            centred = members - self.means_[c]
            self.radii_[c] = np.sqrt(np.mean(np.sum(centred**2, axis=1)))
            if len(members) >= 3:
                k = int(np.clip(round(manifold_measures(members).dimension), 1, len(members) - 1))
                self.bases_[c] = np.linalg.svd(centred, full_matrices=False)[2][:k].T
            self.residual_[c] = np.mean(self._residual(centred, self.bases_[c]))
        positive = self.radii_[self.radii_ > 0]
        self.floor_ = float(np.median(positive)) if len(positive) else 1.0  # for singletons
        # a pseudo-class with at most k + 1 members lies inside its own subspace (in-sample residual ~ 0): use the
        # layer's median residual of the other pseudo-classes as its reference instead
        valid = self.residual_ > 1e-12 * self.floor_**2
        self.residual_[~valid] = np.median(self.residual_[valid]) if valid.any() else self.floor_**2
        return self

    @staticmethod
    def _residual(centred: np.ndarray, basis: np.ndarray) -> np.ndarray:
        return np.sum((centred - centred @ basis @ basis.T) ** 2, axis=1)

    def relative_distance(self, h: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``‖h − μ_c‖ / r_c`` (RMS radius, floored at the median radius for singletons)."""
        r = np.where(self.radii_[labels] > 0, self.radii_[labels], self.floor_)
        return np.linalg.norm(h - self.means_[labels], axis=1) / np.maximum(r, _TINY)  # a dead layer: 0, not 0/0

    def relative_residual(self, h: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Off-subspace residual energy relative to the pseudo-class's mean residual over its members."""
        out = np.empty(len(h))
        for c in np.unique(labels):
            sel = labels == c
            out[sel] = self._residual(h[sel] - self.means_[c], self.bases_[c])
        return out / np.maximum(self.residual_[labels], _TINY)
