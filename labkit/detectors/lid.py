r"""Local intrinsic dimensionality (Ma et al. 2018, "Characterizing adversarial subspaces using local intrinsic
dimensionality"), maximum-likelihood estimate (Levina & Bickel 2005; Amsaleg et al. 2015) from the distances
:math:`r_1 \le \dots \le r_k` of an activation vector to its :math:`k` nearest clean activations in the same layer:

.. math::  \widehat{\mathrm{LID}}(x) = -\Big(\frac1k \sum_{i=1}^{k} \log \frac{r_i(x)}{r_k(x)}\Big)^{-1}.

Ma et al. estimate within minibatches and combine layers with a logistic regression trained on adversarial
examples; here (unsupervised, clean data only) the reference set is the clean fit sample and the layers are combined
by summing their LIDs, each standardised with its clean (leave-one-out) mean and standard deviation.
"""

import numpy as np

from labkit.detectors.base import Detector, hidden_features, standardise
from labkit.detectors.knn import nearest_distances

__all__ = ["lid_mle", "LID"]


def lid_mle(distances: np.ndarray) -> np.ndarray:
    """The MLE above from sorted neighbour distances ``(n, k)``; zero distances are floored at 1e-12."""
    r = np.maximum(distances, 1e-12)
    return -1.0 / np.mean(np.log(r / r[:, -1:]), axis=1).clip(max=-1e-12)


class LID(Detector):
    """LID of the last hidden layer (``layers="last"``) or the standardised sum over all hidden layers (``"all"``)."""

    def __init__(self, k: int = 20, layers: str = "all"):
        self.k = k
        self.layers = layers

    def fit(self, model, x, y=None) -> "LID":
        self.model_ = model
        self.bank_ = self._layers(hidden_features(model, x)[0])
        self.reference_ = np.stack(
            [lid_mle(nearest_distances(h, h, self.k, exclude_self=True)) for h in self.bank_], axis=1
        )
        return self

    def layer_scores(self, x) -> np.ndarray:
        """Per-layer LID estimates ``(n, n_layers)``."""
        self._check_fitted()
        hidden = self._layers(hidden_features(self.model_, x)[0])
        return np.stack([lid_mle(nearest_distances(b, h, self.k)) for b, h in zip(self.bank_, hidden)], axis=1)

    def score(self, x) -> np.ndarray:
        return standardise(self.layer_scores(x), self.reference_).sum(axis=1)
