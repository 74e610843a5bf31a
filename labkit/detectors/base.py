r"""The one interface every detector (and FACADE) implements, plus activation capture.

A detector is fit on *clean* inputs only — the classifier ``model`` and a clean sample ``x`` (and, where a detector
uses them, the clean labels ``y``; otherwise the model's predictions stand in) — and then gives every input a
score, higher = more anomalous. Adversarial data are never used for fitting or for choosing hyperparameters.
Conventions follow scikit-learn: ``__init__`` stores hyperparameters only, ``fit`` returns ``self``, learned
attributes end in ``_``.
"""

from abc import ABC, abstractmethod

import numpy as np
import torch

from labkit.classifiers import as_tensor

__all__ = ["Detector", "hidden_features", "standardise"]


class Detector(ABC):
    """Fit on clean data, score anything: ``Detector(...).fit(model, x_clean).score(x)`` → ``(n,)`` floats."""

    @abstractmethod
    def fit(self, model: torch.nn.Module, x, y=None) -> "Detector":
        """Learn what clean inputs look like; returns ``self``."""

    @abstractmethod
    def score(self, x) -> np.ndarray:
        """Anomaly score of every input, shape ``(n,)``; higher = more anomalous."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call fit(model, x_clean) first")

    def _layers(self, hidden: list) -> list:
        """The hidden layers a detector with a ``layers`` hyperparameter reads: the last one (``"last"``) or all of
        them (``"all"``)."""
        if self.layers not in ("last", "all"):
            raise ValueError(f"layers must be 'last' or 'all', got {self.layers!r}")
        return hidden[-1:] if self.layers == "last" else hidden


@torch.no_grad()
def hidden_features(model: torch.nn.Module, x) -> tuple[list[np.ndarray], np.ndarray]:
    """Every hidden layer's activations (eval mode) as float64 arrays, and the logits."""
    model.eval()
    trace = model.trace(as_tensor(x))
    return [h.double().numpy() for h in trace.hidden], trace.logits.double().numpy()


def standardise(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(values − mean) / std`` with the mean and standard deviation of ``reference`` (per column)."""
    return (values - reference.mean(axis=0)) / (reference.std(axis=0) + 1e-12)
