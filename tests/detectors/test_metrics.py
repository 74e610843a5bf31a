"""Detection metrics (labkit.detectors.metrics): known answers, scikit-learn's against the former hand-written
definitions, bad input, NaN scores."""

import numpy as np
import pytest
import sklearn.metrics
from scipy.stats import rankdata

from labkit import repro
from labkit.detectors.metrics import detection_metrics, tpr_at_fpr


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
