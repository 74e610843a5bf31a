r"""Detection metrics, written out (and checked against ``sklearn.metrics`` in the tests).

Labels: 1 = anomalous (adversarial), 0 = clean; higher score = more anomalous.

- AUROC = the Mann–Whitney probability that a random positive outscores a random negative, ties counting ½:
  :math:`\mathrm{AUROC} = \big(\sum_{i\in P} \mathrm{rank}_i - |P|(|P|+1)/2\big) / (|P|\,|N|)` with mid-ranks.
- ROC curve: thresholds at every distinct score, descending; TPR and FPR of "score ≥ threshold", starting at (0, 0).
- TPR at FPR α: the largest TPR among the operating points with FPR ≤ α.
"""

import numpy as np
from scipy.stats import rankdata

__all__ = ["auroc", "roc_curve", "tpr_at_fpr", "detection_metrics"]


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D of the same length, got {labels.shape} and {scores.shape}")
    if not set(np.unique(labels)) == {0, 1}:
        raise ValueError(f"labels must contain both 0 (clean) and 1 (anomalous), got {np.unique(labels)}")
    return labels, scores


def auroc(labels, scores) -> float:
    """Area under the ROC curve by the rank-sum formula above."""
    labels, scores = _check(labels, scores)
    ranks = rankdata(scores)
    n_pos = labels.sum()
    n_neg = len(labels) - n_pos
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at every distinct score, highest first, after a leading ``(0, 0, +inf)``."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    s, l = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]          # last index of each run of equal scores
    tp = np.cumsum(l)[last]
    fp = (last + 1) - tp
    return (np.r_[0.0, fp / (len(l) - l.sum())], np.r_[0.0, tp / l.sum()], np.r_[np.inf, s[last]])


def tpr_at_fpr(labels, scores, fpr: float = 0.05) -> float:
    """Largest TPR reachable with a false-positive rate of at most ``fpr``."""
    f, t, _ = roc_curve(labels, scores)
    return float(t[f <= fpr + 1e-12].max())


def detection_metrics(clean_scores, anomalous_scores, fpr: float = 0.05) -> dict[str, float]:
    """AUROC and TPR at ``fpr`` for clean (label 0) versus anomalous (label 1) scores."""
    scores = np.r_[clean_scores, anomalous_scores]
    labels = np.r_[np.zeros(len(clean_scores), int), np.ones(len(anomalous_scores), int)]
    return {"auroc": auroc(labels, scores), "tpr_at_fpr": tpr_at_fpr(labels, scores, fpr)}
