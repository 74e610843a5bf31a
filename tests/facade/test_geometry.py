"""Geometry on Gaussians of known covariance, cluster subspaces and edge contributions (labkit.facade.geometry)."""

import numpy as np
import pytest
import torch

from labkit import repro
from labkit.facade.geometry import (
    ClusterSubspaces,
    edge_contributions,
    log_radius_dimension,
    manifold_measures,
    pseudo_class_geometry,
)


def test_manifold_measures_on_a_gaussian_with_known_covariance():
    eig = np.array([4.0, 2.0, 1.0, 1.0, 0.5])
    mu = np.array([3.0, 0, 0, 4.0, 0])  # ‖μ‖ = 5
    q, _ = np.linalg.qr(repro.rng(3).standard_normal((5, 5)))
    x = repro.rng(4).multivariate_normal(mu, q @ np.diag(eig) @ q.T, size=200_000)
    m = manifold_measures(x)
    radius, dim = np.sqrt(eig.sum()) / 5, eig.sum() ** 2 / (eig**2).sum()
    assert m.radius == pytest.approx(radius, rel=0.01)
    assert m.dimension == pytest.approx(dim, rel=0.01)
    assert m.capacity == pytest.approx((1 + radius**-2) / dim, rel=0.02)
    iso = manifold_measures(repro.rng(5).standard_normal((100_000, 8)) + 1.0, center=np.ones(8) * 0.5)
    assert iso.dimension == pytest.approx(8, rel=0.02)  # isotropic: D = d
    assert iso.radius == pytest.approx(np.sqrt(8) / np.sqrt(8 * 0.25), rel=0.01)


@pytest.mark.parametrize("n", [5, 50])  # Gram form (n ≤ d) and covariance form (n > d)
def test_log_radius_dimension_matches_the_eigenvalues(n):
    x = repro.rng(6).standard_normal((n, 10)) + 2
    lam = np.linalg.eigvalsh(np.cov(x.T, bias=True))
    log_r, log_d = log_radius_dimension(torch.as_tensor(x), torch.zeros(10, dtype=torch.float64))
    assert float(log_r) == pytest.approx(np.log(np.sqrt(lam.sum()) / np.linalg.norm(x.mean(axis=0))), abs=1e-10)
    assert float(log_d) == pytest.approx(np.log(lam.sum() ** 2 / (lam**2).sum()), abs=1e-10)


def test_cluster_subspaces_and_pseudo_class_table():
    g = repro.rng(7)
    flat = np.column_stack([g.standard_normal((300, 2)) * 3, 0.01 * g.standard_normal((300, 3))])  # a 2-D sheet
    sub = ClusterSubspaces().fit(flat, np.zeros(300, int), 1)
    assert sub.bases_[0].shape == (5, 2)
    off = np.array([[0, 0, 1.0, 0, 0]])
    on = np.array([[1.0, 1.0, 0, 0, 0]])
    assert sub.relative_residual(off, np.zeros(1, int))[0] > 100 * sub.relative_residual(on, np.zeros(1, int))[0]
    table = pseudo_class_geometry(flat, np.arange(300) % 3, bandwidth=1.0)
    assert list(table["size"]) == [100, 100, 100] and np.all(table["dimension"] > 1)


def test_edge_contributions_are_distributions(setup):
    model, x, y, _ = setup
    p = edge_contributions(model, x, y, 11)  # group 10 is empty: uniform
    assert p.shape == (11, sum(lin.weight.numel() for lin in model.linears))
    np.testing.assert_allclose(p.sum(axis=1), 1)
    assert np.all(p >= 0) and np.allclose(p[10], p[10, 0])
