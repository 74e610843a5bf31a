r"""Training-data poisoning filters: score every sample of a (possibly poisoned) training set from the trained
model's activations, per label, higher = more likely poisoned. Unlike the monitors, these read the *untrusted*
training set itself (that is their point: find the poisons before or after training).

- **Spectral signatures** (Tran, Li & Madry 2018, "Spectral signatures in backdoor attacks"): within the samples of
  one label, centre the representations :math:`R = H - \bar h` and take the top right singular vector :math:`v` of
  :math:`R`; the score is :math:`\big((h_i - \bar h)\cdot v\big)^2`. Poisons shift the label's mean along one
  direction, which then dominates the spectrum.
- **Activation clustering** (Chen et al. 2018, "Detecting backdoor attacks on deep neural networks by activation
  clustering"): within one label, project the activations on their top ``n_components`` principal components
  (Chen et al. use ICA to 10 dimensions) and split them with 2-means; poisons form the *smaller* cluster. As a
  per-sample score we use :math:`d(h, c_{\mathrm{large}}) - d(h, c_{\mathrm{small}})`, how much nearer a sample is
  to the small cluster than to the large one.
"""

import numpy as np
from sklearn.cluster import KMeans

from labkit.detectors.base import hidden_features

__all__ = ["spectral_signature_scores", "activation_clustering_scores", "FILTERS", "filter_scores"]


def _per_label(h: np.ndarray, labels: np.ndarray, score_one) -> np.ndarray:
    h, labels = np.asarray(h, dtype=np.float64), np.asarray(labels)
    if h.ndim != 2 or len(h) != len(labels):
        raise ValueError(f"need activations (n, d) and n labels, got shapes {h.shape} and {labels.shape}")
    out = np.zeros(len(h))
    for c in np.unique(labels):  # one decomposition per label (≤ 10)
        rows = labels == c
        out[rows] = score_one(h[rows]) if rows.sum() >= 3 else 0.0
    return out


def spectral_signature_scores(h: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Tran et al.'s outlier score: squared projection on the top singular vector of the label's centred cloud."""

    def one(hc):
        centred = hc - hc.mean(axis=0)
        v = np.linalg.svd(centred, full_matrices=False)[2][0]
        return (centred @ v) ** 2

    return _per_label(h, labels, one)


def activation_clustering_scores(
    h: np.ndarray, labels: np.ndarray, n_components: int = 10, seed: int = 0
) -> np.ndarray:
    """Chen et al.'s 2-means split of each label's PCA-projected activations, as a signed nearness to the
    smaller cluster."""

    def one(hc):
        centred = hc - hc.mean(axis=0)
        k = min(n_components, *centred.shape)
        z = centred @ np.linalg.svd(centred, full_matrices=False)[2][:k].T
        km = KMeans(2, n_init=10, random_state=seed).fit(z)
        small = np.argmin(np.bincount(km.labels_, minlength=2))
        d = np.linalg.norm(z[:, None, :] - km.cluster_centers_[None], axis=2)
        return d[:, 1 - small] - d[:, small]

    return _per_label(h, labels, one)


FILTERS = ("spectral signature", "activation clustering")


def filter_scores(
    model, x_train: np.ndarray, y_train: np.ndarray, n_components: int = 10, seed: int = 0
) -> dict[str, np.ndarray]:
    """Both filters on the last hidden layer of ``model`` over its own (labelled, untrusted) training set."""
    h = hidden_features(model, x_train)[0][-1]
    return dict(
        zip(
            FILTERS,
            (spectral_signature_scores(h, y_train), activation_clustering_scores(h, y_train, n_components, seed)),
        )
    )
