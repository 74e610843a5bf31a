"""Detector interface conformance, each detector's formula, the metrics (scikit-learn's, checked against the former
hand-written definitions), and the shared protocol of notebooks 03 and 04 (its seeds and three-way split)."""

import numpy as np
import pytest
import sklearn.metrics
from scipy.stats import rankdata
from sklearn.neighbors import KernelDensity

from labkit import repro
from labkit.classifiers import MLP
from labkit.detectors import LID, DeepKNN, Detector, KernelDensityUncertainty, Mahalanobis, MaxSoftmax
from labkit.detectors.base import hidden_features
from labkit.detectors.config import DetectionConfig, train_calibration_test_split
from labkit.detectors.density import kde_log_density, mc_dropout_uncertainty
from labkit.detectors.knn import nearest_distances
from labkit.detectors.lid import lid_mle
from labkit.detectors.mahalanobis import min_mahalanobis, tied_gaussian
from labkit.detectors.metrics import detection_metrics, tpr_at_fpr
from labkit.facade import Facade


@pytest.fixture(scope="module")
def setup(digits_classifier):
    return digits_classifier


DETECTORS = [
    MaxSoftmax(),
    Mahalanobis("last"),
    Mahalanobis("all"),
    LID(20, "last"),
    LID(20, "all"),
    KernelDensityUncertainty("kd+bu", 5),
    KernelDensityUncertainty("kd", 5),
    KernelDensityUncertainty("bu", 5),
    DeepKNN(10),
    Facade(lam=2.0, q=0.05),
]


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
    np.testing.assert_array_equal(s, fresh.score(x_new))  # deterministic
    noise = np.clip(x_new + repro.rng(0).uniform(-0.5, 0.5, x_new.shape).astype(np.float32), 0, 1)
    if not (isinstance(fresh, KernelDensityUncertainty) and fresh.use == "bu"):
        assert fresh.score(noise).mean() > s.mean()  # heavy noise looks more anomalous


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
    assert not setup[0].training  # left in eval mode


def test_hidden_features_returns_every_hidden_layer(setup):
    hidden, logits = hidden_features(setup[0], setup[3])
    assert [h.shape[1] for h in hidden] == [32, 32] and logits.shape == (len(setup[3]), 10)


def test_layers_is_shared_by_the_layered_detectors():
    class Probe(Detector):
        def __init__(self, layers):
            self.layers = layers

        def fit(self, model, x, y=None):
            return self

        def score(self, x):
            return np.zeros(len(x))

    hidden = [np.zeros((2, 3)), np.ones((2, 4)), np.full((2, 5), 2.0)]
    assert Probe("last")._layers(hidden) == hidden[-1:]
    assert Probe("all")._layers(hidden) == hidden
    with pytest.raises(ValueError, match="'last' or 'all'"):
        Probe("first")._layers(hidden)
    assert LID._layers is Detector._layers and Mahalanobis._layers is Detector._layers
    with pytest.raises(ValueError, match="layers"):
        Mahalanobis("middle").fit(MLP((64, 8, 10), dropout=0.0), np.zeros((20, 64), np.float32))


def test_detection_metrics_known_answers():
    auroc = lambda labels, scores: detection_metrics(
        np.asarray(scores)[np.asarray(labels) == 0],  # noqa: E731
        np.asarray(scores)[np.asarray(labels) == 1],
    )["auroc"]
    assert auroc([0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 4, 5]) == 1.0
    assert auroc([0, 0, 0, 1, 1, 1], [5, 4, 3, 2, 1, 0]) == 0.0
    assert auroc([0, 0, 1, 1], [1, 1, 1, 1]) == 0.5  # ties count one half
    assert auroc([0, 0, 1, 1], [1, 3, 2, 4]) == 0.75  # 3 of 4 pairs ordered
    # two unit-variance Gaussians one apart: AUROC = Φ(1/√2) ≈ 0.7602
    g = repro.rng(4)
    m = detection_metrics(g.standard_normal(200_000), g.standard_normal(200_000) + 1)
    assert abs(m["auroc"] - 0.76025) < 0.003
    assert abs(m["tpr_at_fpr"] - 0.2595) < 0.005  # 1 − Φ(1.645 − 1)


def _former_auroc(labels, scores):
    """The hand-written AUROC this module had: the Mann–Whitney rank sum with mid-ranks."""
    ranks = rankdata(scores)
    n_pos = labels.sum()
    return (ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (len(labels) - n_pos))


def _former_roc_curve(labels, scores):
    """The hand-written ROC curve this module had: every distinct score, highest first, after (0, 0, +inf)."""
    order = np.argsort(-scores, kind="mergesort")
    s, l = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(l)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / (len(l) - l.sum())], np.r_[0.0, tp / l.sum()], np.r_[np.inf, s[last]]


@pytest.mark.parametrize("seed", range(5))
def test_sklearn_metrics_equal_the_former_hand_written_ones(seed):
    """Random data with many ties: scikit-learn's AUROC equals the former rank-sum formula and the pairwise definition
    (a positive outscores a negative, ties ½); its full ROC curve (``drop_intermediate=False``, what the figures
    draw) equals the former curve; TPR at 5% FPR equals the former one and the definition over all thresholds."""
    g = repro.rng(5, seed)
    labels = g.integers(0, 2, 300)
    scores = np.round(g.standard_normal(300) + labels, 1)  # many ties
    clean, anomalous = scores[labels == 0], scores[labels == 1]
    m = detection_metrics(clean, anomalous, 0.05)
    pairs = np.mean((anomalous[:, None] > clean[None]) + 0.5 * (anomalous[:, None] == clean[None]))
    assert m["auroc"] == pytest.approx(_former_auroc(labels, scores), abs=1e-12)
    assert m["auroc"] == pytest.approx(pairs, abs=1e-12)
    for ours, theirs in zip(
        _former_roc_curve(labels, scores), sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)
    ):
        np.testing.assert_allclose(theirs, ours)
    f, t, _ = _former_roc_curve(labels, scores)
    thresholds = np.r_[np.inf, np.unique(scores)]
    best = max(np.mean(anomalous >= th) for th in thresholds if np.mean(clean >= th) <= 0.05)
    assert m["tpr_at_fpr"] == float(t[f <= 0.05 + 1e-12].max()) == best
    assert tpr_at_fpr(labels, scores, 0.05) == m["tpr_at_fpr"]


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="both 0"):
        tpr_at_fpr([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        tpr_at_fpr([0, 1], [0.1])
    with pytest.raises(ValueError, match="both 0"):
        detection_metrics([0.1, 0.2], [])


def test_a_nan_score_makes_the_metrics_undefined():
    """As the former rank formula did (a collapsed model's FACADE total is NaN), where scikit-learn would raise."""
    m = detection_metrics([0.1, np.nan, 0.3], [0.5, 0.6])
    assert np.isnan(m["auroc"]) and np.isnan(m["tpr_at_fpr"])
    assert np.isnan(_former_auroc(np.array([0, 0, 0, 1, 1]), np.array([0.1, np.nan, 0.3, 0.5, 0.6])))
    assert np.isnan(tpr_at_fpr([0, 1], [np.nan, 1.0]))


# --- the shared protocol of notebooks 03 and 04 ----------------------------------------------------------------------


def test_train_calibration_test_split_is_disjoint_stratified_and_seeded():
    labels = np.repeat(np.arange(4), [100, 60, 40, 200])
    train, cal, test = train_calibration_test_split(labels, 0.4, 0.625, seed=3, n_items=200)
    parts = np.concatenate([train, cal, test])
    assert len(np.unique(parts)) == len(parts) == 200  # disjoint, a subset of 200
    for part, share in ((train, 0.6), (cal, 0.4 * 0.375), (test, 0.4 * 0.625)):
        assert np.all(np.diff(part) > 0)  # sorted indices
        np.testing.assert_allclose(
            np.bincount(labels[part], minlength=4) / len(part), [0.25, 0.15, 0.1, 0.5], atol=0.03
        )  # every class keeps its share
        assert len(part) == pytest.approx(200 * share, abs=4)
    again = train_calibration_test_split(labels, 0.4, 0.625, seed=3, n_items=200)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, cal, test)))
    other = train_calibration_test_split(labels, 0.4, 0.625, seed=4, n_items=200)
    assert not np.array_equal(other[0], train)
    whole = train_calibration_test_split(labels, 0.4, 0.625, seed=3)
    assert sum(map(len, whole)) == len(labels)


def test_split_streams_never_coincide_across_runs_or_purposes():
    """The bug this replaces: run s's calibration split used seed s + 1, run s+1's training seed."""
    from labkit.seeds import derived_seed

    cfg = DetectionConfig(n_seeds=4, seed=0)
    seeds = cfg.run_seeds()
    assert seeds == [derived_seed(0, i) for i in range(4)] and len(set(seeds)) == 4
    assert not set(seeds) & set(DetectionConfig(n_seeds=4, seed=1).run_seeds())  # not shifted copies
    streams = [derived_seed(derived_seed(s, k), part) for s in seeds for k in range(7) for part in (0, 1, 2)]
    assert len(set(streams)) == len(streams)
    y = np.arange(1797) % 10
    a, b = cfg.split(y, seeds[0]), cfg.split(y, seeds[1])
    assert not np.array_equal(a[1], b[1]) and sum(map(len, a)) == 1797
