r"""Mahalanobis confidence score (Lee, Lee, Lee & Shin 2018, "A simple unified framework for detecting
out-of-distribution samples and adversarial attacks"): per layer, class means :math:`\mu_c` and one *tied*
(pooled within-class) covariance :math:`\Sigma` of the clean activations; the score is the distance to the closest
class,

.. math::  M(x) = \min_c\,(h(x)-\mu_c)^\top \Sigma^{-1} (h(x)-\mu_c).

``layers="last"``: the last hidden layer. ``layers="all"``: the sum over hidden layers, each standardised with its
clean mean and standard deviation (Lee et al. weight the layers with a regression fit on validation adversarial or
OOD data; we stay unsupervised). Lee et al.'s input preprocessing is left out. :math:`\Sigma` gets a small ridge,
``1e-6`` × its mean variance, because ReLU layers have dead units.
"""

import numpy as np
from scipy.spatial.distance import cdist

from labkit.detectors.base import Detector, hidden_features, standardise

__all__ = ["tied_gaussian", "min_mahalanobis", "Mahalanobis"]


def tied_gaussian(h: np.ndarray, labels: np.ndarray, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Class means ``(C, d)`` and the Cholesky factor :math:`L` of the precision :math:`P = LL^\\top` of the pooled
    within-class covariance."""
    classes = np.unique(labels)
    means = np.stack([h[labels == c].mean(axis=0) for c in classes])
    centred = h - means[np.searchsorted(classes, labels)]
    cov = centred.T @ centred / len(h)
    cov += ridge * np.trace(cov) / len(cov) * np.eye(len(cov))
    return means, np.linalg.cholesky(np.linalg.inv(cov))


def min_mahalanobis(h: np.ndarray, means: np.ndarray, chol: np.ndarray) -> np.ndarray:
    r"""Squared Mahalanobis distance to the closest class mean: :math:`(h-\mu)^\top P (h-\mu) = \|L^\top(h-\mu)\|^2`,
    so whiten with the precision's Cholesky factor ``chol`` and take Euclidean distances."""
    return (cdist(h @ chol, means @ chol, "sqeuclidean")).min(axis=1)


class Mahalanobis(Detector):
    """Min-over-classes Mahalanobis distance, last hidden layer or all hidden layers; ``y`` defaults to predictions."""

    def __init__(self, layers: str = "all"):
        self.layers = layers

    def fit(self, model, x, y=None) -> "Mahalanobis":
        self.model_ = model
        hidden, logits = hidden_features(model, x)
        labels = logits.argmax(axis=1) if y is None else np.asarray(y)
        self.gaussians_ = [tied_gaussian(h, labels) for h in self._layers(hidden)]
        self.reference_ = self._raw(self._layers(hidden))
        return self

    def _raw(self, hidden: list) -> np.ndarray:
        return np.stack([min_mahalanobis(h, *g) for h, g in zip(hidden, self.gaussians_)], axis=1)

    def score(self, x) -> np.ndarray:
        self._check_fitted()
        return standardise(self._raw(self._layers(hidden_features(self.model_, x)[0])), self.reference_).sum(axis=1)
