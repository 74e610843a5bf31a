"""Gaussian-KDE memory: the bridge identities, mean-shift dynamics, the capacity formulas and the sweep."""

import dataclasses
import re

import numpy as np
import pytest
from scipy.special import logsumexp

from labkit import repro
from labkit.config import ConfigError
from labkit.memory import hopfield, kde
from labkit.memory.base import EnergyMemory


def _memory(n=40, d=5, bandwidth=0.8, seed=0):
    patterns = kde.sphere_patterns(n, d, repro.rng(seed))
    return patterns, kde.GaussianKDEMemory(bandwidth=bandwidth).fit(patterns)


def test_alpha1_values_from_the_notes():
    assert kde.alpha1(0.5) == pytest.approx(0.387, abs=5e-4)
    assert kde.alpha1(1.0) == pytest.approx(0.623, abs=5e-4)
    q = kde.q_star(1.0)
    assert q == pytest.approx((np.sqrt(5) - 1) / 2, rel=1e-12)
    # α₁ is the signal-vs-crosstalk balance: λ − max_q [λq + ½ ln(1 − q²)]
    grid = np.linspace(0, 0.999, 200_001)
    assert kde.alpha1(1.0) == pytest.approx(1.0 - np.max(grid + 0.5 * np.log(1 - grid**2)), abs=1e-9)
    assert kde.ramsauer_exponent(1.0) == pytest.approx(0.0743, abs=1e-4)
    assert kde.ramsauer_exponent(1.0) < kde.alpha1(1.0) / 5


def test_energy_density_and_gradient():
    patterns, mem = _memory()
    assert isinstance(mem, EnergyMemory)
    x = repro.rng(1).standard_normal((7, 5))
    sq = ((x[:, None, :] - patterns[None]) ** 2).sum(-1)
    np.testing.assert_allclose(mem.energy(x), -logsumexp(-sq / (2 * 0.8**2), axis=1), rtol=1e-12)
    # normalised: the log density of the KDE written as a mixture of N(x_n, σ² I)
    logpdf = logsumexp(-sq / (2 * 0.64) - 2.5 * np.log(2 * np.pi * 0.64), axis=1) - np.log(40)
    np.testing.assert_allclose(mem.log_density(x), logpdf, rtol=1e-12)
    # the gradient against central differences, and mean-shift = a gradient step of size σ²
    eps = 1e-6
    numeric = np.stack([(mem.energy(x + eps * e) - mem.energy(x - eps * e)) / (2 * eps) for e in np.eye(5)], axis=1)
    np.testing.assert_allclose(mem.gradient(x), numeric, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mem.update(x), x - 0.8**2 * mem.gradient(x), rtol=1e-12, atol=1e-12)


def test_density_integrates_to_one_in_one_dimension():
    mem = kde.GaussianKDEMemory(bandwidth=0.5).fit(np.array([[-1.0], [0.3], [2.0]]))
    grid = np.linspace(-8, 10, 20_001)[:, None]
    assert np.trapezoid(np.exp(mem.log_density(grid)), grid[:, 0]) == pytest.approx(1.0, abs=1e-9)


def test_mean_shift_equals_modern_hopfield_update_for_equal_norm_patterns():
    patterns, mem = _memory(n=300, d=16, bandwidth=1.0 / np.sqrt(1.7))
    x = repro.rng(2).standard_normal((25, 16)) * 2
    hop = hopfield.ModernHopfield(beta=1.7).fit(patterns)
    shift, attend = mem.update(x), hop.update(x)
    rel = np.linalg.norm(shift - attend, axis=1) / np.linalg.norm(attend, axis=1)
    assert rel.max() <= 1e-6
    # the chunked fast path computes the same step
    np.testing.assert_allclose(kde.retrieve(patterns, x, 1.7, 1, tol=0.0), attend, rtol=1e-6, atol=1e-9)


def test_energy_never_increases_along_mean_shift():
    patterns, mem = _memory(n=60, d=3, bandwidth=0.6, seed=3)
    x = repro.rng(4).standard_normal((20, 3)) * 1.5
    for _ in range(30):
        nxt = mem.update(x)
        assert np.all(mem.energy(nxt) <= mem.energy(x) + 1e-12)
        x = nxt


def test_retrieve_chunking_and_dtype():
    patterns = kde.sphere_patterns(500, 8, repro.rng(5))
    queries = patterns[:37] + 0.2 * repro.rng(6).standard_normal((37, 8))
    whole = kde.retrieve(patterns, queries, 1.0, 50)
    chunked = kde.retrieve(patterns, queries, 1.0, 50, max_elements=3 * 500)  # 3 queries per chunk
    one = kde.retrieve(patterns, queries, 1.0, 50, max_elements=1)  # one query at a time
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)
    np.testing.assert_allclose(one, whole, rtol=0, atol=1e-12)
    single = kde.retrieve(patterns, queries, 1.0, 50, dtype=np.float32)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, whole, atol=1e-3)
    # a well-separated memory returns its patterns
    np.testing.assert_allclose(kde.retrieve(patterns[:3], patterns[:3], 4.0, 100), patterns[:3], atol=1e-6)


def test_stopping_at_the_ball_agrees_with_running_to_the_fixed_point():
    """capacity_curve stops a query once it leaves the ball; on these cases the fixed point is outside it too."""
    d, radius = 10, 0.1
    for n in (20, 60, 150, 400):
        patterns = kde.sphere_patterns(n, d, repro.rng(7, n))
        queries = patterns[:20]
        fixed = kde.retrieve(patterns, queries, 1.0, 500, tol=1e-7)
        inside = np.linalg.norm(fixed - queries, axis=1) <= radius * np.sqrt(d)
        _, left = kde._descend(patterns, queries, 1.0, 500, 1e-7, np.float64, kde.MAX_ELEMENTS, radius * np.sqrt(d))
        np.testing.assert_array_equal(~left, inside)


def test_capacity_curve_shape_determinism_and_cliff():
    n = [1, 4, 16, 64, 256, 1024]
    a = kde.capacity_curve(8, 1.0, n, n_trials=2, seed=0, n_queries=16, min_samples=32)
    b = kde.capacity_curve(8, 1.0, n, n_trials=2, seed=0, n_queries=16, min_samples=32)
    assert a.shape == (6,) and np.all((a >= 0) & (a <= 1))
    np.testing.assert_array_equal(a, b)
    assert a[0] == 1.0 and a[-1] == 0.0
    assert np.all(np.diff(a) <= 0.15)  # monotone up to sampling noise
    c = kde.capacity_curve(8, 1.0, n, n_trials=2, seed=1, n_queries=16, min_samples=32)
    assert not np.array_equal(a, c)
    small = kde.capacity_curve(8, 1.0, n, n_trials=2, seed=0, n_queries=16, min_samples=32, max_elements=100)
    np.testing.assert_array_equal(small, a)  # chunking does not change the result
    np.testing.assert_array_equal(kde.samples_per_point(n, 2, 16, 32), [32, 32, 32, 32, 32, 32])


def test_capacity_trials_pool_to_the_curve_and_bootstrap_measures_their_spread():
    n = np.array([1, 4, 16, 64, 128, 256, 512, 1024])
    hits, queries = kde.capacity_trials(8, 1.0, n, n_trials=6, seed=0, n_queries=16, min_samples=32)
    assert hits.shape == queries.shape == (32, 8)  # N = 1 needs 32 trials of one query for 32 samples
    np.testing.assert_array_equal(queries[:, -1], [16] * 6 + [0] * 26)
    np.testing.assert_array_equal(
        hits.sum(0) / queries.sum(0), kde.capacity_curve(8, 1.0, n, n_trials=6, seed=0, n_queries=16, min_samples=32)
    )
    counts = kde.CapacityCounts(n, hits, queries)
    boot = kde.bootstrap_critical_n(counts, 200, seed=0)
    estimate = kde.critical_n(n, hits.sum(0) / queries.sum(0))
    assert boot.shape == (200,) and np.isfinite(boot).mean() > 0.9
    assert np.nanmin(boot) <= estimate <= np.nanmax(boot) and np.nanstd(np.log(boot)) > 0
    np.testing.assert_array_equal(boot, kde.bootstrap_critical_n(counts, 200, seed=0))
    identical = np.tile(hits[:1], (6, 1)), np.tile(queries[:1], (6, 1))  # trials that agree: no spread
    assert np.nanstd(kde.bootstrap_critical_n(kde.CapacityCounts(n, *identical), 50, seed=0)) == 0


def test_critical_n_and_grid():
    assert kde.critical_n([10, 100], [1.0, 0.0]) == pytest.approx(np.sqrt(10 * 100))
    expected = np.exp(np.log(100) + 0.2 * np.log(10))
    assert kde.critical_n([10, 100, 1000], [0.9, 0.6, 0.1], level=0.5) == pytest.approx(expected)
    assert np.isnan(kde.critical_n([10, 100], [1.0, 0.9]))
    grid = kde.n_grid(16, 0.1, 0.7, 16, 30_000)
    assert grid[0] == 5 and grid[-1] == 30_000 and np.all(np.diff(grid) > 0)


def test_clear_errors():
    patterns, mem = _memory()
    with pytest.raises(ValueError, match="lam"):
        kde.alpha1(0)
    with pytest.raises(ValueError, match="bandwidth"):
        kde.GaussianKDEMemory(bandwidth=-1).fit(patterns)
    with pytest.raises(ValueError, match="shape"):
        mem.energy(np.ones(3))
    with pytest.raises(ValueError, match="n_steps"):
        kde.retrieve(patterns, patterns[:2], 1.0, 0)
    with pytest.raises(ValueError, match="queries"):
        kde.retrieve(patterns, patterns[0], 1.0, 5)
    with pytest.raises(ValueError, match="n_patterns"):
        kde.capacity_curve(4, 1.0, [0, 5], 1, 0)
    with pytest.raises(ValueError, match="strictly increasing"):
        kde.critical_n([5, 5], [1, 0])


def test_config_presets_and_validation():
    for scale in ("smoke", "quick", "paper"):
        cfg = kde.KDECapacityConfig.from_params(scale=scale)
        assert 1.0 in cfg.lambdas and cfg.dims == tuple(sorted(cfg.dims))
    assert max(kde.KDECapacityConfig.from_params().dims) >= 16
    with pytest.raises(ConfigError, match="lambdas"):
        kde.KDECapacityConfig.from_params(lambdas=[0.5])
    with pytest.raises(ConfigError, match="dims"):
        kde.KDECapacityConfig.from_params(dims=[8, 4])
    with pytest.raises(ConfigError, match="n_trails"):
        kde.KDECapacityConfig.from_params(n_trails=3)
    assert dataclasses.is_dataclass(kde.KDECapacityConfig)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_trials": True}, "bad value for 'n_trials': True; allowed: an integer >= 1"),
        ({"d": 0}, "bad value for 'd': 0; allowed: an integer >= 1"),
        ({"min_samples": -1}, "bad value for 'min_samples': -1; allowed: an integer >= 0"),
        ({"radius": 0}, "bad value for 'radius': 0; allowed: a number > 0"),
        ({"tol": -1.0}, "bad value for 'tol': -1.0; allowed: a number in [0, inf)"),
        ({"lam": float("inf")}, "bad value for 'lam': inf; allowed: a finite number > 0 (λ = 1/σ²)"),
        ({"lam": True}, "bad value for 'lam': True; allowed: a finite number > 0 (λ = 1/σ²)"),
    ],
)
def test_capacity_arguments_are_refused_naming_what_is_allowed(kwargs, message):
    args = {"d": 4, "lam": 1.0, "n_patterns": [2, 4], "n_trials": 1, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        kde.capacity_trials(**args)
