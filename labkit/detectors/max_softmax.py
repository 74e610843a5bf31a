r"""Maximum softmax probability baseline (Hendrycks & Gimpel 2017, "A baseline for detecting misclassified and
out-of-distribution examples"): score :math:`= -\max_c \mathrm{softmax}(f(x))_c`; confident inputs look normal."""

import numpy as np
from scipy.special import softmax

from labkit.detectors.base import Detector, hidden_features

__all__ = ["MaxSoftmax"]


class MaxSoftmax(Detector):
    """Negative top softmax probability; needs no clean statistics (``fit`` only keeps the model)."""

    def fit(self, model, x=None, y=None) -> "MaxSoftmax":
        self.model_ = model
        return self

    def score(self, x) -> np.ndarray:
        self._check_fitted()
        _, logits = hidden_features(self.model_, x)
        return -softmax(logits, axis=1).max(axis=1)
