import numpy as np
import pytest

from labkit.collapse import gaussian


def test_replace_variance_follows_its_expectation_and_accumulate_keeps_it():
    rep = gaussian.simulate_gaussian(2, 10, 15, "replace", n_seeds=3000, seed=0)["variance_ratio"]
    theory = gaussian.replace_variance_theory(10, 15)
    z = (rep.mean(0) - theory) / (rep.std(0, ddof=1) / np.sqrt(len(rep)))
    assert np.abs(z).max() < 4.5
    acc = gaussian.simulate_gaussian(2, 10, 15, "accumulate", n_seeds=3000, seed=0)["variance_ratio"].mean(0)
    assert acc[-1] > 0.8 and theory[-1] < 0.25


def test_first_generation_is_the_same_fit_in_both_regimes():
    a = gaussian.simulate_gaussian(3, 8, 4, "replace", 5, seed=1)
    b = gaussian.simulate_gaussian(3, 8, 4, "accumulate", 5, seed=1)
    np.testing.assert_allclose(a["variance_ratio"][:, 0], b["variance_ratio"][:, 0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="allowed: replace, accumulate"):
        gaussian.simulate_gaussian(2, 10, 3, "subsample", 2, 0)
    with pytest.raises(ValueError, match="n_samples must be >= 2"):
        gaussian.replace_variance_theory(1, 3)
