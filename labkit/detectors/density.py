r"""Kernel density and Bayesian uncertainty (Feinman, Curtin, Shintre & Gardner 2017, "Detecting adversarial
samples from artifacts").

- Kernel density (KD) of the last hidden layer's activations :math:`h`, against the clean training points
  :math:`X_{\hat y}` of the *predicted* class, with an isotropic Gaussian kernel of bandwidth :math:`\sigma`:
  :math:`\log \hat p(h) = \mathrm{logsumexp}_i\big(-\|h - x_i\|^2 / 2\sigma^2\big) - \log n
  - \tfrac d2 \log(2\pi\sigma^2)`.
  Low density = anomalous. Feinman et al. pick :math:`\sigma` per data set; here, fixed on clean data,
  :math:`\sigma` = the median distance from a clean point to its 10th nearest clean neighbour.
- Bayesian uncertainty (BU) by Monte-Carlo dropout (Gal & Ghahramani 2016) over :math:`T` stochastic passes:
  :math:`U(x) = \frac1T\sum_t \hat y_t^\top \hat y_t - \bar y^\top \bar y` (the summed softmax variance).

The detector's score is :math:`z(-\log\hat p) + z(U)`, each term standardised on the clean fit sample (Feinman
et al. combine the two with a logistic regression trained on adversarial examples; we stay unsupervised).
"""

import numpy as np
import torch
from scipy.special import logsumexp

from labkit.classifiers import as_tensor
from labkit.detectors.base import Detector, hidden_features, standardise
from labkit.detectors.knn import nearest_distances

__all__ = ["kde_log_density", "mc_dropout_uncertainty", "KernelDensityUncertainty"]


def kde_log_density(points: np.ndarray, queries: np.ndarray, bandwidth: float, chunk: int = 1024) -> np.ndarray:
    """Log density of an isotropic Gaussian KDE on ``points`` at each query (chunked over queries)."""
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth!r}")
    n, d = points.shape
    ref = torch.as_tensor(points, dtype=torch.float64)
    out = []
    for q in torch.as_tensor(queries, dtype=torch.float64).split(chunk):
        out.append(logsumexp(-torch.cdist(q, ref).square().numpy() / (2 * bandwidth**2), axis=1))
    return np.concatenate(out) - np.log(n) - d / 2 * np.log(2 * np.pi * bandwidth**2)


def mc_dropout_uncertainty(model: torch.nn.Module, x, n_samples: int = 30, seed: int = 0) -> np.ndarray:
    """Feinman et al.'s U(x) from ``n_samples`` dropout-on forward passes (seeded; the model is left in eval mode)."""
    x = as_tensor(x)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        model.train()
        probs = torch.stack([model(x).softmax(dim=1) for _ in range(n_samples)]).double()  # (T, n, C)
        model.eval()
    mean = probs.mean(dim=0)
    return ((probs * probs).sum(dim=2).mean(dim=0) - (mean * mean).sum(dim=1)).numpy()


class KernelDensityUncertainty(Detector):
    """KD of the predicted class in the last hidden layer and MC-dropout uncertainty; ``use`` ∈ {"kd+bu", "kd",
    "bu"}."""

    def __init__(self, use: str = "kd+bu", n_samples: int = 30, bandwidth: float | None = None, random_state: int = 0):
        self.use = use
        self.n_samples = n_samples
        self.bandwidth = bandwidth
        self.random_state = random_state

    def fit(self, model, x, y=None) -> "KernelDensityUncertainty":
        if self.use not in ("kd+bu", "kd", "bu"):
            raise ValueError(f"use must be one of 'kd+bu', 'kd', 'bu', got {self.use!r}")
        self.model_ = model
        hidden, logits = hidden_features(model, x)
        self.bank_, self.bank_labels_ = hidden[-1], logits.argmax(axis=1) if y is None else np.asarray(y)
        self.bandwidth_ = (
            self.bandwidth
            if self.bandwidth is not None
            else float(np.median(nearest_distances(self.bank_, self.bank_, 10, exclude_self=True)[:, -1]))
        )
        self.reference_ = self._raw(x)
        return self

    def _raw(self, x) -> np.ndarray:
        hidden, logits = hidden_features(self.model_, x)
        pred = logits.argmax(axis=1)
        kd = np.full(len(pred), np.inf)
        for c in np.unique(pred):  # one KDE per predicted class (≤ 10 classes)
            members = self.bank_[self.bank_labels_ == c]
            if len(members):
                kd[pred == c] = -kde_log_density(members, hidden[-1][pred == c], self.bandwidth_)
        kd = np.minimum(kd, 1e300)
        bu = mc_dropout_uncertainty(self.model_, x, self.n_samples, self.random_state)
        return np.stack([kd, bu], axis=1)

    def score(self, x) -> np.ndarray:
        self._check_fitted()
        z = standardise(self._raw(x), self.reference_)
        return {"kd+bu": z.sum(axis=1), "kd": z[:, 0], "bu": z[:, 1]}[self.use]
