"""Monte-Carlo summaries (labkit.stats): seed mean, its standard error and z-scores against hand and scipy values."""

import numpy as np
import pytest
from scipy.stats import sem

from labkit.stats import mean_and_se, zscores

SAMPLES = [[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]]  # 3 seeds × 2 quantities: sample std 2 and 4


def test_mean_and_se_match_hand_computed_values():
    mean, se = mean_and_se(SAMPLES)
    np.testing.assert_allclose(mean, [3.0, 6.0])
    np.testing.assert_allclose(se, [2 / np.sqrt(3), 4 / np.sqrt(3)])  # std(ddof=1) / sqrt(n), not ddof=0


@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 2, 6)])
def test_mean_and_se_reduce_over_seeds_only_and_agree_with_scipy(shape):
    x = np.random.default_rng(sum(shape)).normal(1.0, 2.0, size=shape)
    mean, se = mean_and_se(x)
    assert np.shape(mean) == np.shape(se) == shape[1:]
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(se, sem(x, axis=0, ddof=1), rtol=1e-12)


def test_integer_samples_give_float_results():
    mean, se = mean_and_se(np.array([[1, 2], [2, 4]]))  # integer input is converted, not floor-divided
    assert mean.dtype == se.dtype == np.float64
    np.testing.assert_allclose(mean, [1.5, 3.0])
    np.testing.assert_allclose(se, [0.5, 1.0])


@pytest.mark.parametrize("function", [mean_and_se, lambda s: zscores(s, 0.0)])
@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_seeds_is_refused(function, n):
    with pytest.raises(ValueError, match=f"need at least 2 seeds for a standard error, got {n}"):
        function(np.ones((n, 3)))


def test_zscores_match_hand_computed_values():
    # column 0: (3 − 0) / (2/√3); column 1: (6 − 10) / (4/√3)
    np.testing.assert_allclose(zscores(SAMPLES, np.array([0.0, 10.0])), [1.5 * np.sqrt(3), -np.sqrt(3)])


def test_zscores_broadcast_expected_and_vanish_at_the_seed_mean():
    x = np.random.default_rng(0).normal(size=(10, 4, 3))
    expected = np.array([0.5, -1.0, 2.0])  # one value per last-axis quantity, broadcast over axis 1
    mean, se = x.mean(0), x.std(0, ddof=1) / np.sqrt(10)
    np.testing.assert_allclose(zscores(x, expected), (mean - expected) / se, rtol=1e-12)
    np.testing.assert_allclose(zscores(x, mean), 0.0, atol=1e-12)


def test_zscores_are_invariant_to_a_change_of_units():
    x = np.random.default_rng(1).normal(size=(8, 5))
    expected = np.linspace(-1, 1, 5)
    np.testing.assert_allclose(zscores(3.0 * x - 7.0, 3.0 * expected - 7.0), zscores(x, expected), rtol=1e-10)
    np.testing.assert_allclose(zscores(-x, -expected), -zscores(x, expected), rtol=1e-12)
