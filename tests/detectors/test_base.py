"""The shared detector interface (labkit.detectors.base): every detector's fit and score, hidden features, layers."""

import numpy as np
import pytest

from labkit import repro
from labkit.classifiers import MLP
from labkit.detectors import LID, DeepKNN, Detector, KernelDensityUncertainty, Mahalanobis, MaxSoftmax
from labkit.detectors.base import hidden_features
from labkit.facade import Facade

DETECTORS = [
    MaxSoftmax(),
    Mahalanobis("last"),
    Mahalanobis("all"),
    LID(20, "last"),
    LID(20, "all"),
    KernelDensityUncertainty("kd+bu", 5),
    KernelDensityUncertainty("kd", 5),
    KernelDensityUncertainty("bu", 5),
    DeepKNN(10),
    Facade(lam=2.0, q=0.05),
]


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: f"{type(d).__name__}-{vars(d)}")
def test_every_detector_shares_the_interface(setup, det):
    model, x, y, x_new = setup
    assert isinstance(det, Detector)
    fresh = type(det)(**vars(det))
    with pytest.raises(RuntimeError, match="not fitted"):
        fresh.score(x_new)
    assert fresh.fit(model, x, y) is fresh
    s = fresh.score(x_new)
    assert s.shape == (len(x_new),) and np.all(np.isfinite(s))
    np.testing.assert_array_equal(s, fresh.score(x_new))  # deterministic
    noise = np.clip(x_new + repro.rng(0).uniform(-0.5, 0.5, x_new.shape).astype(np.float32), 0, 1)
    if not (isinstance(fresh, KernelDensityUncertainty) and fresh.use == "bu"):
        assert fresh.score(noise).mean() > s.mean()  # heavy noise looks more anomalous


def test_hidden_features_returns_every_hidden_layer(setup):
    hidden, logits = hidden_features(setup[0], setup[3])
    assert [h.shape[1] for h in hidden] == [32, 32] and logits.shape == (len(setup[3]), 10)


def test_layers_is_shared_by_the_layered_detectors():
    class Probe(Detector):
        def __init__(self, layers):
            self.layers = layers

        def fit(self, model, x, y=None):
            return self

        def score(self, x):
            return np.zeros(len(x))

    hidden = [np.zeros((2, 3)), np.ones((2, 4)), np.full((2, 5), 2.0)]
    assert Probe("last")._layers(hidden) == hidden[-1:]
    assert Probe("all")._layers(hidden) == hidden
    with pytest.raises(ValueError, match="'last' or 'all'"):
        Probe("first")._layers(hidden)
    assert LID._layers is Detector._layers and Mahalanobis._layers is Detector._layers
    with pytest.raises(ValueError, match="layers"):
        Mahalanobis("middle").fit(MLP((64, 8, 10), dropout=0.0), np.zeros((20, 64), np.float32))
