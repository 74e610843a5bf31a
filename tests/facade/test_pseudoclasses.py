"""Pseudo-class purity and the Markov chain over pseudo-class paths (labkit.facade.pseudoclasses; DP-means itself:
tests/test_dpmeans.py)."""

import numpy as np
import pytest

from labkit import repro
from labkit.facade.pseudoclasses import PseudoClasses, purity


def test_purity_is_the_mean_majority_share_per_pseudo_class():
    labels = np.array([3, 3, 3, 7, 7, 9, 9, 9])
    column = np.array([0, 0, 1, 1, 1, 2, 2, 2])  # shares 1, 2/3, 1: each pseudo-class counts once
    assert purity(labels, column) == pytest.approx((1 + 2 / 3 + 1) / 3)
    np.testing.assert_allclose(
        purity(labels, np.column_stack([column, np.zeros(8, int), labels])), [(1 + 2 / 3 + 1) / 3, 3 / 8, 1.0]
    )
    with pytest.raises(ValueError, match="labels"):
        purity(labels, column[:5])


def test_markov_chain_is_normalised_and_scores_unseen_paths_lower():
    g = repro.rng(2)
    layers = [g.standard_normal((200, 4)) + 5 * (np.arange(200) % 2)[:, None] for _ in range(2)]
    outputs = np.arange(200) % 2
    pc = PseudoClasses(lam=3.0).fit(layers, outputs, n_outputs=2)
    assert np.isclose(np.exp(pc.log_initial_).sum(), 1)
    for logt in pc.log_transitions_:
        np.testing.assert_allclose(np.exp(logt).sum(axis=1), 1)
    assign, dist = pc.assign(layers)
    np.testing.assert_array_equal(assign, pc.train_paths_[:, :-1])
    typical = pc.path_nll(assign, outputs)
    swapped = pc.path_nll(assign, 1 - outputs)  # each path ending in the other class
    assert np.all(swapped > typical)
