"""labkit.dpmeans (FACADE's pseudo-classes and the CRP memory's small-variance limit) and labkit.seeds: DP-means'
limits, its fixed point, monotone objective and seeding; the one rule for integer seeds."""

import numpy as np
import pytest

from labkit import repro
from labkit.dpmeans import dp_means, nearest_centroid
from labkit.seeds import derived_seed


def _objective(x, centroids, labels, lam):
    return float(np.sum((x - centroids[labels]) ** 2) + lam**2 * len(centroids))


def test_dp_means_limits():
    x = repro.rng(0).standard_normal((60, 3))
    assert len(dp_means(x, 1e-9)[0]) == 60  # λ → 0: one cluster per point
    centroids, labels = dp_means(x, 1e9)  # λ → ∞: one cluster, the mean
    assert len(centroids) == 1 and np.all(labels == 0)
    np.testing.assert_allclose(centroids[0], x.mean(axis=0))


def test_dp_means_finds_separated_blobs_and_is_a_fixed_point():
    g = repro.rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]])
    x = np.concatenate([c + 0.3 * g.standard_normal((50, 2)) for c in centres])
    centroids, labels = dp_means(x, 3.0)
    assert len(centroids) == 4
    assert all(len(np.unique(labels[i * 50 : (i + 1) * 50])) == 1 for i in range(4))
    d = np.linalg.norm(x[:, None] - centroids[None], axis=2)
    np.testing.assert_array_equal(labels, d.argmin(axis=1))  # every point at its nearest centroid
    assert d.min(axis=1).max() <= 3.0  # and within λ of it
    for c in range(len(centroids)):  # every centroid is its members' mean
        np.testing.assert_allclose(centroids[c], x[labels == c].mean(axis=0))
    with pytest.raises(ValueError, match="lam"):
        dp_means(x, -1.0)


def test_dp_means_objective_never_rises_with_more_passes():
    """Kulis & Jordan's monotonicity: stopping after more passes never gives a worse objective."""
    x = repro.rng(2).standard_normal((150, 4))
    lam = 1.5
    values = [_objective(x, *dp_means(x, lam, max_iter=k, seed=3), lam) for k in (1, 2, 3, 5, 50)]
    assert all(b <= a + 1e-9 for a, b in zip(values, values[1:]))
    assert values[-1] < values[0]


def test_dp_means_is_seeded():
    x = repro.rng(4).standard_normal((120, 3))
    a, b = dp_means(x, 1.0, seed=7), dp_means(x, 1.0, seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    others = [dp_means(x, 1.0, seed=s)[1] for s in range(8, 12)]
    assert any(len(o) != len(a[1]) or not np.array_equal(o, a[1]) for o in others)  # the order matters


def test_nearest_centroid():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    idx, dist = nearest_centroid(x, np.array([[0.0, 0.0], [10.0, 1.0]]))
    np.testing.assert_array_equal(idx, [0, 0, 1])
    np.testing.assert_allclose(dist, [0.0, 5.0, 1.0])


def test_derived_seed_is_the_first_draw_of_the_substream():
    assert derived_seed(5, 1, 2) == int(repro.rng(5, 1, 2).integers(2**31))
    seeds = {derived_seed(s, *key) for s in range(3) for key in ((), (1,), (2,), (0, 1), (1, 1))}
    assert len(seeds) == 15 and all(0 <= s < 2**31 for s in seeds)
    assert derived_seed(0, 1) != derived_seed(1, 0) and derived_seed(0, 1) != derived_seed(0) + 1
    # the documented caveat: SeedSequence pads the key with zeros, so trailing zeros name the same stream
    assert derived_seed(3) == derived_seed(3, 0) == derived_seed(3, 0, 0)
