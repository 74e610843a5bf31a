"""The tied Gaussian and the minimum Mahalanobis distance against the direct formula (labkit.detectors.mahalanobis)."""

import numpy as np

from labkit import repro
from labkit.detectors.mahalanobis import min_mahalanobis, tied_gaussian


def test_mahalanobis_matches_the_direct_formula():
    g = repro.rng(1)
    h, labels = g.standard_normal((300, 5)), g.integers(0, 3, 300)
    means, chol = tied_gaussian(h, labels, ridge=0.0)
    cov = sum(((h[labels == c] - means[c]).T @ (h[labels == c] - means[c])) for c in range(3)) / len(h)
    q = g.standard_normal((7, 5))
    direct = np.array([min((v - m) @ np.linalg.inv(cov) @ (v - m) for m in means) for v in q])
    np.testing.assert_allclose(min_mahalanobis(q, means, chol), direct, rtol=1e-10)
