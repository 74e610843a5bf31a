"""Detector interface conformance, each detector's formula, and the metrics against scikit-learn."""

import numpy as np
import pytest
import sklearn.metrics
from sklearn.neighbors import KernelDensity

from labkit import repro
from labkit.classifiers import MLP
from labkit.detectors import (DeepKNN, Detector, KernelDensityUncertainty, LID, Mahalanobis, MaxSoftmax)
from labkit.detectors.base import hidden_features
from labkit.detectors.density import kde_log_density, mc_dropout_uncertainty
from labkit.detectors.lid import lid_mle
from labkit.detectors.knn import nearest_distances
from labkit.detectors.mahalanobis import min_mahalanobis, tied_gaussian
from labkit.detectors.metrics import auroc, detection_metrics, roc_curve, tpr_at_fpr
from labkit.facade import Facade


@pytest.fixture(scope="module")
def setup(digits_classifier):
    return digits_classifier


DETECTORS = [MaxSoftmax(), Mahalanobis("last"), Mahalanobis("all"), LID(20, "last"), LID(20, "all"),
             KernelDensityUncertainty("kd+bu", 5), KernelDensityUncertainty("kd", 5), KernelDensityUncertainty("bu", 5),
             DeepKNN(10), Facade(lam=2.0, q=0.05)]


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: f"{type(d).__name__}-{vars(d)}")
def test_every_detector_shares_the_interface(setup, det):
    model, x, y, x_new = setup
    assert isinstance(det, Detector)
    fresh = type(det)(**vars(det))
    with pytest.raises(RuntimeError, match="not fitted"):
        fresh.score(x_new)
    assert fresh.fit(model, x, y) is fresh
    s = fresh.score(x_new)
    assert s.shape == (len(x_new),) and np.all(np.isfinite(s))
    np.testing.assert_array_equal(s, fresh.score(x_new))           # deterministic
    noise = np.clip(x_new + repro.rng(0).uniform(-0.5, 0.5, x_new.shape).astype(np.float32), 0, 1)
    if not (isinstance(fresh, KernelDensityUncertainty) and fresh.use == "bu"):
        assert fresh.score(noise).mean() > s.mean()                # heavy noise looks more anomalous


def test_mahalanobis_matches_the_direct_formula():
    g = repro.rng(1)
    h, labels = g.standard_normal((300, 5)), g.integers(0, 3, 300)
    means, chol = tied_gaussian(h, labels, ridge=0.0)
    cov = sum(((h[labels == c] - means[c]).T @ (h[labels == c] - means[c])) for c in range(3)) / len(h)
    q = g.standard_normal((7, 5))
    direct = np.array([min((v - m) @ np.linalg.inv(cov) @ (v - m) for m in means) for v in q])
    np.testing.assert_allclose(min_mahalanobis(q, means, chol), direct, rtol=1e-10)


def test_lid_mle_recovers_the_dimension_of_uniform_data():
    cube = repro.rng(2).uniform(size=(4000, 4))
    estimate = lid_mle(nearest_distances(cube, cube[:500], 20, exclude_self=True)).mean()
    assert 3.3 < estimate < 4.7


def test_kde_matches_sklearn_and_mc_dropout_needs_dropout(setup):
    g = repro.rng(3)
    pts, q = g.standard_normal((200, 3)), g.standard_normal((20, 3))
    ref = KernelDensity(bandwidth=0.7).fit(pts).score_samples(q)
    np.testing.assert_allclose(kde_log_density(pts, q, 0.7), ref, rtol=1e-10)
    model = MLP((64, 16, 10), dropout=0.0)
    assert np.allclose(mc_dropout_uncertainty(model, setup[3], 5), 0, atol=1e-12)
    assert mc_dropout_uncertainty(setup[0], setup[3], 5).max() > 0
    assert not setup[0].training                                      # left in eval mode


def test_hidden_features_returns_every_hidden_layer(setup):
    hidden, logits = hidden_features(setup[0], setup[3])
    assert [h.shape[1] for h in hidden] == [32, 32] and logits.shape == (len(setup[3]), 10)


def test_auroc_known_answers():
    assert auroc([0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 4, 5]) == 1.0
    assert auroc([0, 0, 0, 1, 1, 1], [5, 4, 3, 2, 1, 0]) == 0.0
    assert auroc([0, 0, 1, 1], [1, 1, 1, 1]) == 0.5                  # ties count one half
    assert auroc([0, 0, 1, 1], [1, 3, 2, 4]) == 0.75                 # 3 of 4 pairs ordered
    # two unit-variance Gaussians one apart: AUROC = Φ(1/√2) ≈ 0.7602
    g = repro.rng(4)
    m = detection_metrics(g.standard_normal(200_000), g.standard_normal(200_000) + 1)
    assert abs(m["auroc"] - 0.76025) < 0.003
    assert abs(m["tpr_at_fpr"] - 0.2595) < 0.005                      # 1 − Φ(1.645 − 1)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn(seed):
    g = repro.rng(5, seed)
    labels = g.integers(0, 2, 300)
    scores = np.round(g.standard_normal(300) + labels, 1)             # many ties
    assert abs(auroc(labels, scores) - sklearn.metrics.roc_auc_score(labels, scores)) < 1e-12
    fpr, tpr, thr = roc_curve(labels, scores)
    s_fpr, s_tpr, s_thr = sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, s_fpr)
    np.testing.assert_allclose(tpr, s_tpr)
    np.testing.assert_allclose(thr[1:], s_thr[1:])
    assert tpr_at_fpr(labels, scores, 0.05) == s_tpr[s_fpr <= 0.05].max()


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="both 0"):
        auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        auroc([0, 1], [0.1])
