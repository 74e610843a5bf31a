import numpy as np
import pytest

from labkit.collapse import linear


def test_closed_forms_match_the_paper_reference_point():
    """d=10, T=100, σ²=1 (closed forms derived in labkit.collapse.linear): c = 0.11236; replace n=10 → 1.1236;
    accumulate n=10 → 0.17413, n=50 → 0.18260."""
    assert linear.one_fit_error(10, 100, 1.0) == pytest.approx(0.11236, abs=1e-5)
    assert linear.theory(10, 100, 1.0, 10, "replace")[-1] == pytest.approx(1.1236, abs=1e-4)
    acc = linear.theory(10, 100, 1.0, 50, "accumulate")
    assert acc[9] == pytest.approx(0.17413, abs=1e-5)
    assert acc[49] == pytest.approx(0.18260, abs=1e-5)
    assert np.all(np.diff(acc) > 0) and acc[-1] < np.pi**2 / 6 * linear.one_fit_error(10, 100, 1.0)


@pytest.mark.parametrize("regime", linear.REGIMES)
def test_vectorised_simulation_equals_explicit_least_squares(regime):
    fast = linear.simulate(4, 12, 0.7, 6, regime, n_seeds=9, seed=5)
    slow = linear.simulate_lstsq(4, 12, 0.7, 6, regime, n_seeds=9, seed=5)
    assert fast.shape == (9, 6)
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)


def test_simulation_does_not_depend_on_chunking():
    """Many seeds are processed in chunks; seed s gives the same numbers whatever the chunk it falls in."""
    many = linear.simulate(2, 1000, 1.0, 3, "replace", n_seeds=700, seed=1)  # chunk = 666 seeds
    np.testing.assert_allclose(many[-5:], linear.simulate_lstsq(2, 1000, 1.0, 3, "replace", 700, 1)[-5:], rtol=1e-9)


@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_simulation_matches_theory_within_monte_carlo_error(regime):
    errors = linear.simulate(5, 30, 2.0, 8, regime, n_seeds=4000, seed=0)
    mean, se = errors.mean(0), errors.std(0, ddof=1) / np.sqrt(len(errors))
    z = (mean - linear.theory(5, 30, 2.0, 8, regime)) / se
    assert np.abs(z).max() < 4.5


def test_accumulate_subsample_lies_between_the_two_regimes():
    e = {r: linear.simulate(5, 30, 1.0, 20, r, 500, 3).mean(0)[-1] for r in linear.REGIMES}
    assert e["accumulate"] < e["accumulate_subsample"] < e["replace"]


def test_same_seed_same_numbers_and_different_seed_different_numbers():
    a = linear.simulate(3, 10, 1.0, 4, "accumulate_subsample", 5, seed=2)
    np.testing.assert_array_equal(a, linear.simulate(3, 10, 1.0, 4, "accumulate_subsample", 5, seed=2))
    assert not np.allclose(a, linear.simulate(3, 10, 1.0, 4, "accumulate_subsample", 5, seed=3))


@pytest.mark.parametrize("T", [5, 10, 11])
def test_too_few_samples_is_a_clear_error(T):
    with pytest.raises(ValueError, match=f"need T > d \\+ 1.*T={T}, d=10"):
        linear.theory(10, T, 1.0, 5, "replace")
    with pytest.raises(ValueError, match="need T > d \\+ 1"):
        linear.simulate(10, T, 1.0, 5, "accumulate", 3, 0)


def test_bad_arguments_name_the_problem():
    with pytest.raises(
        ValueError,
        match="simulate: bad value for 'regime': 'keep'; allowed: one of 'replace', "
        "'accumulate', 'accumulate_subsample'",
    ):
        linear.simulate(2, 10, 1.0, 3, "keep", 2, 0)
    with pytest.raises(ValueError, match="no closed form for 'accumulate_subsample'"):
        linear.theory(2, 10, 1.0, 3, "accumulate_subsample")
    with pytest.raises(ValueError, match="theory: bad value for 'sigma2': 0.0; allowed: a number > 0"):
        linear.theory(2, 10, 0.0, 3, "replace")
    with pytest.raises(ValueError, match="bad value for 'n_iter': 0; allowed: an integer >= 1"):
        linear.theory(2, 10, 1.0, 0, "replace")


def test_sweep_skips_infeasible_sizes_and_carries_theory():
    out = linear.sweep(
        [1, 10], [10, 100], [1.0], n_iter=3, n_seeds=2, seed=0, regimes=["replace", "accumulate_subsample"]
    )
    assert {(r["d"], r["T"]) for r in out} == {(1, 10), (1, 100), (10, 100)}
    assert all((r["theory"] is None) == (r["regime"] == "accumulate_subsample") for r in out)
    assert all(r["errors"].shape == (2, 3) for r in out)
