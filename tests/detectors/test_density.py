"""Kernel density against scikit-learn's and MC-dropout uncertainty (labkit.detectors.density)."""

import numpy as np
from sklearn.neighbors import KernelDensity

from labkit import repro
from labkit.classifiers import MLP
from labkit.detectors.density import kde_log_density, mc_dropout_uncertainty


def test_kde_matches_sklearn_and_mc_dropout_needs_dropout(setup):
    g = repro.rng(3)
    pts, q = g.standard_normal((200, 3)), g.standard_normal((20, 3))
    ref = KernelDensity(bandwidth=0.7).fit(pts).score_samples(q)
    np.testing.assert_allclose(kde_log_density(pts, q, 0.7), ref, rtol=1e-10)
    model = MLP((64, 16, 10), dropout=0.0)
    assert np.allclose(mc_dropout_uncertainty(model, setup[3], 5), 0, atol=1e-12)
    assert mc_dropout_uncertainty(setup[0], setup[3], 5).max() > 0
    assert not setup[0].training  # left in eval mode
