r"""Deep k-nearest-neighbour distance (Sun, Ming, Zhu & Li 2022, "Out-of-distribution detection with deep nearest
neighbors"): with :math:`z = h/\|h\|` the unit-normalised penultimate activations, the score is the distance from
:math:`z(x)` to its :math:`k`-th nearest clean training feature. Also home of the chunked neighbour search used by
LID."""

import numpy as np
import torch

from labkit.detectors.base import Detector, hidden_features

__all__ = ["nearest_distances", "DeepKNN"]


def nearest_distances(
    reference: np.ndarray, query: np.ndarray, k: int, exclude_self: bool = False, chunk: int = 1024
) -> np.ndarray:
    """Sorted Euclidean distances ``(n_query, k)`` from each query to its ``k`` nearest reference points.
    ``exclude_self`` drops the first neighbour (use it when ``query`` is ``reference``)."""
    if not 1 <= k <= len(reference) - int(exclude_self):
        raise ValueError(
            f"k must lie in [1, {len(reference) - int(exclude_self)}] for {len(reference)} reference points, got {k!r}"
        )
    ref = torch.as_tensor(reference, dtype=torch.float64)
    out = []
    for q in torch.as_tensor(query, dtype=torch.float64).split(chunk):
        d = torch.cdist(q, ref)
        out.append(d.topk(k + int(exclude_self), dim=1, largest=False).values[:, int(exclude_self) :])
    return torch.cat(out).numpy()


def _unit(h: np.ndarray) -> np.ndarray:
    return h / (np.linalg.norm(h, axis=1, keepdims=True) + 1e-12)


class DeepKNN(Detector):
    """Distance to the ``k``-th nearest clean (unit-normalised, last hidden layer) feature."""

    def __init__(self, k: int = 10):
        self.k = k

    def fit(self, model, x, y=None) -> "DeepKNN":
        self.model_ = model
        self.bank_ = _unit(hidden_features(model, x)[0][-1])
        return self

    def score(self, x) -> np.ndarray:
        self._check_fitted()
        return nearest_distances(self.bank_, _unit(hidden_features(self.model_, x)[0][-1]), self.k)[:, -1]
