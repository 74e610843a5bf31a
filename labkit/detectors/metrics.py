r"""Detection metrics on top of scikit-learn: what ``sklearn.metrics`` does not provide.

Labels: 1 = anomalous (adversarial), 0 = clean; higher score = more anomalous.

- AUROC and the ROC curve are scikit-learn's (``roc_auc_score``: the Mann–Whitney probability that a random
  positive outscores a random negative, ties counting ½; ``roc_curve``: the operating points of "score ≥ threshold").
- TPR at FPR α (not in scikit-learn): the largest TPR among the operating points of the full ROC curve
  (``drop_intermediate=False``) with FPR ≤ α.
- :func:`detection_metrics`: both, for clean versus anomalous score arrays.

A NaN score (FACADE's total on a collapsed model, whose clean calibration spread is zero, for one) makes both metrics
NaN, i.e. undefined, where scikit-learn would raise.
"""

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = ["tpr_at_fpr", "detection_metrics"]


def _labels_and_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D of the same length, got {labels.shape} and {scores.shape}")
    if not set(np.unique(labels)) == {0, 1}:
        raise ValueError(f"labels must contain both 0 (clean) and 1 (anomalous), got {np.unique(labels)}")
    return labels, scores


def tpr_at_fpr(labels, scores, fpr: float = 0.05) -> float:
    """Largest TPR reachable with a false-positive rate of at most ``fpr``."""
    labels, scores = _labels_and_scores(labels, scores)
    if np.isnan(scores).any():
        return float("nan")
    f, t, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(t[f <= fpr + 1e-12].max())


def detection_metrics(clean_scores, anomalous_scores, fpr: float = 0.05) -> dict[str, float]:
    """AUROC and TPR at ``fpr`` for clean (label 0) versus anomalous (label 1) scores."""
    scores = np.r_[clean_scores, anomalous_scores]
    labels = np.r_[np.zeros(len(clean_scores), int), np.ones(len(anomalous_scores), int)]
    labels, scores = _labels_and_scores(labels, scores)
    if np.isnan(scores).any():
        return {"auroc": float("nan"), "tpr_at_fpr": float("nan")}
    return {"auroc": float(roc_auc_score(labels, scores)), "tpr_at_fpr": tpr_at_fpr(labels, scores, fpr)}
