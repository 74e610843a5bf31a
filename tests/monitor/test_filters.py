"""Training-data filters find a planted outlier set (labkit.monitor.filters)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score as auroc

from labkit.monitor.filters import activation_clustering_scores, spectral_signature_scores


def toy_poisoned_cloud(seed=0, n=400, n_bad=20, d=30):
    """Per label, an isotropic Gaussian; the poisons of label 0 are shifted along one direction (rank one)."""
    g = np.random.default_rng(seed)
    h = g.standard_normal((2 * n, d))
    labels = np.repeat([0, 1], n)
    bad = np.zeros(2 * n, bool)
    bad[:n_bad] = True
    direction = g.standard_normal(d)
    h[bad] += 4 * direction / np.linalg.norm(direction)
    return h, labels, bad


def test_spectral_signature_finds_a_rank_one_outlier_set():
    h, labels, bad = toy_poisoned_cloud()
    s = spectral_signature_scores(h, labels)
    assert auroc(bad, s) >= 0.99
    assert bad[np.argsort(-s)[:20]].sum() >= 15  # the top of the ranking is the planted set
    # with no poisons, the top direction is noise: the flagged set is not the would-be poisons
    h0, _, _ = toy_poisoned_cloud(seed=1, n_bad=0)
    assert 0.3 < auroc(bad, spectral_signature_scores(h0, labels)) < 0.75


def test_activation_clustering_puts_the_poisons_in_the_small_cluster():
    h, labels, bad = toy_poisoned_cloud(n_bad=40)
    h[bad] += 4 * np.eye(h.shape[1])[0]  # a well separated second mode
    s = activation_clustering_scores(h, labels, n_components=5, seed=0)
    assert auroc(bad, s) >= 0.99
    with pytest.raises(ValueError, match="activations"):
        activation_clustering_scores(h[:, 0], labels)
