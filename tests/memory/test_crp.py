"""CRP / Pitman–Yor memory: exact predictive, monotone retrieval, memory creation set by α, the DP-means limit."""

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from labkit.config import ConfigError
from labkit.dpmeans import dp_means
from labkit.memory.clustering import ClusteringConfig
from labkit.memory.crp import CRPMemory, CRPPredictiveMemory


def _predictive(d=2, alpha=1.3, discount=0.2, beta=2.0, rho=0.5):
    g = np.random.default_rng(0)
    return CRPPredictiveMemory(g.normal(size=(3, d)), np.array([4.0, 1.0, 2.5]), alpha, discount, beta, rho)


def test_log_density_is_the_pitman_yor_predictive():
    mem = _predictive()
    v = np.random.default_rng(1).normal(size=(30, 2))
    s2, t2 = 1 / (2 * mem.beta), 1 / (2 * mem.rho)
    terms = [
        np.log(n - mem.discount) + multivariate_normal(mu, s2 * np.eye(2)).logpdf(v)
        for mu, n in zip(mem.memories, mem.counts)
    ]
    new = multivariate_normal(np.zeros(2), (s2 + t2) * np.eye(2)).logpdf(v)
    terms.append(np.log(mem.alpha + 3 * mem.discount) + new)
    direct = logsumexp(terms, axis=0) - np.log(mem.alpha + mem.counts.sum())
    np.testing.assert_allclose(mem.log_density(v), direct, rtol=1e-6)


def test_predictive_density_integrates_to_one():
    mem = _predictive(d=1)
    total, _ = quad(lambda x: np.exp(mem.log_density(np.array([[x]])))[0], -30, 30, limit=200)
    assert abs(total - 1) < 1e-6


def test_retrieval_step_never_raises_the_energy():
    mem = _predictive()
    v = np.random.default_rng(2).normal(scale=2, size=(40, 2))
    for _ in range(20):
        v_next = mem.update(v)
        assert np.all(mem.energy(v_next) <= mem.energy(v) + 1e-12)
        v = v_next


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(120, centers=[[-6, 0], [6, 0], [0, 8]], cluster_std=0.7, random_state=0)


def test_alpha_zero_gives_one_memory_and_large_alpha_more(blobs):
    X, _ = blobs
    counts = [CRPMemory(alpha=a, beta=4.0, random_state=0).fit(X).n_created_ for a in (0.0, 1e-3, 1.0, 1e3)]
    assert counts[0] == 1
    assert counts == sorted(counts) and counts[-1] > counts[1]


def test_recovers_well_separated_clusters(blobs):
    """Greedy streaming may split one cluster (a second memory opens while the first still has count 1), never more."""
    X, y = blobs
    est = CRPMemory(alpha=1.0, beta=20.0, n_refine=2, random_state=0).fit(X)
    assert est.n_clusters_ in (3, 4)
    assert adjusted_rand_score(y, est.labels_) > 0.9
    np.testing.assert_allclose(est.counts_.sum(), len(X))


def test_dp_means_is_the_small_variance_limit(blobs):
    """α = ((β+ρ)/ρ)^{d/2} e^{−βλ}: as β grows, the memory opens the clusters DP-means (labkit.dpmeans, threshold √λ on
    the standardised data) finds, assigns every point as it does, and its refined memories converge to its centroids."""
    X, _ = blobs
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    rho, lam, d = 0.5, 0.81, 2  # √λ = 0.9: between the blobs' spread and their distance
    centroids, labels = dp_means(Z, np.sqrt(lam), seed=0)
    assert len(centroids) == 3
    gaps = []
    for beta in (2.0, 5.0, 10.0):
        alpha = float(np.exp(d / 2 * np.log((beta + rho) / rho) - beta * lam))
        est = CRPMemory(alpha=alpha, beta=beta, rho=rho, n_refine=2, random_state=3).fit(X)
        assert est.n_created_ == est.n_clusters_ == len(centroids)
        assert adjusted_rand_score(labels, est.labels_) == 1.0
        gaps.append(np.abs(est.memory_.memories[:, None] - centroids[None]).max(axis=2).min(axis=1).max())
    assert gaps[2] < gaps[1] < gaps[0] < 0.05 and gaps[2] < 1e-5


def test_estimator_conventions(blobs):
    X, _ = blobs
    est = CRPMemory(alpha=0.5, discount=0.3, beta=8.0, random_state=4)
    assert est.fit(X) is est
    again = clone(est).fit(X)
    np.testing.assert_array_equal(again.cluster_centers_, est.cluster_centers_)
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    learned = {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}
    expected = {"cluster_centers_", "counts_", "n_clusters_", "n_created_", "labels_", "memory_", "mean_", "scale_"}
    assert expected <= learned


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"discount": 1.0}, "discount"),
        ({"beta": 0.0}, "beta"),
        ({"rho": -2.0}, "rho"),
        ({"n_refine": -1}, "n_refine"),
    ],
)
def test_clear_errors(blobs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CRPMemory(**kwargs).fit(blobs[0])


def test_notebook_config_scales_and_checks():
    for scale in ("smoke", "quick", "paper"):
        assert ClusteringConfig.from_params(scale=scale).scale == scale
    with pytest.raises(ConfigError, match="crp_alpha"):
        ClusteringConfig.from_params(crp_alpha=0.5)
    with pytest.raises(ConfigError, match="datasets"):
        ClusteringConfig.from_params(datasets=("mnist",))


def test_median_heuristic_width_uses_no_labels_and_matches_its_definition():
    from scipy.spatial.distance import pdist

    from labkit.memory import clustering

    z = np.random.default_rng(0).standard_normal((50, 3))
    assert clustering.median_beta(z) == pytest.approx(3 / np.median(pdist(z) ** 2))
    assert clustering.median_beta(2 * z) == pytest.approx(clustering.median_beta(z) / 4)  # β scales as 1/width²


def test_significantly_beaten_needs_a_consistent_paired_difference():
    from labkit.memory import clustering

    rows = [
        {
            "dataset": ds,
            "method": m,
            "seed": s,
            "ARI": base + (0.1 if m == "b" and ds == "x" else 0.0) + 0.01 * ((s * 7 + len(m)) % 3),
        }
        for ds, base in (("x", 0.5), ("y", 0.5))
        for m in ("a", "b")
        for s in range(6)
    ]
    beaten = clustering.significantly_beaten(rows, ("a", "b"), "ARI", 0.05)
    assert beaten == {"a": {"x": ["b"]}, "b": {}}  # b is better on x in every seed; on y they tie
