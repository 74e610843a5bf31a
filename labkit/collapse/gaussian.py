r"""Model collapse of a multivariate Gaussian refit, generation after generation, by maximum likelihood.

Generation 1 fits :math:`(\hat\mu_1, \hat\Sigma_1)` by MLE to ``n_samples`` real draws from :math:`N(0, I_{dim})`.
Generation :math:`k \ge 2` draws ``n_samples`` synthetic points from :math:`N(\hat\mu_{k-1}, \hat\Sigma_{k-1})` and fits

- ``replace``: on those synthetic points only;
- ``accumulate``: on every point so far, real and synthetic.

Under replace the MLE covariance shrinks in expectation (Shumailov et al. 2024, Nature 631:755;
Kazdan, Schaeffer et al. 2024, arXiv 2410.16713, Sec. 3): :math:`E[\hat\Sigma_k \mid \hat\Sigma_{k-1}] =
\frac{n-1}{n}\hat\Sigma_{k-1}`, so

.. math::  E\,\mathrm{tr}\,\hat\Sigma_k \,/\, \mathrm{tr}\,\Sigma = \left(\tfrac{n-1}{n}\right)^k ,

which tends to 0 (variance collapse). Under accumulate the real data stay in the fit and the variance does
not collapse.
"""

import numpy as np

from labkit import repro

__all__ = ["GAUSSIAN_REGIMES", "replace_variance_theory", "simulate_gaussian"]

GAUSSIAN_REGIMES = ("replace", "accumulate")


def replace_variance_theory(n_samples: int, n_iter: int) -> np.ndarray:
    """:math:`((n-1)/n)^k` for k = 1..n_iter: expected variance ratio under replace."""
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 for an MLE covariance, got {n_samples}")
    return ((n_samples - 1) / n_samples) ** np.arange(1, n_iter + 1)


def _sqrtm_psd(cov: np.ndarray) -> np.ndarray:
    """Batched symmetric square root of PSD matrices (robust when the covariance has collapsed)."""
    vals, vecs = np.linalg.eigh(cov)
    return vecs * np.sqrt(np.clip(vals, 0.0, None))[..., None, :]


def simulate_gaussian(dim: int, n_samples: int, n_iter: int, regime: str, n_seeds: int, seed: int) -> dict:
    """Refit a Gaussian ``n_iter`` times; per seed and generation return

    ``variance_ratio`` (tr Σ̂_k / tr Σ) and ``mean_error`` (‖μ̂_k − μ‖²), each of shape (n_seeds, n_iter).
    """
    if regime not in GAUSSIAN_REGIMES:
        raise ValueError(f"unknown regime {regime!r}; allowed: {', '.join(GAUSSIAN_REGIMES)}")
    if dim < 1 or n_samples < 2 or n_iter < 1 or n_seeds < 1:
        raise ValueError("need dim >= 1, n_samples >= 2, n_iter >= 1 and n_seeds >= 1")
    g = repro.rng(seed)
    x = g.standard_normal((n_seeds, n_samples, dim))  # real data: N(0, I)
    total, outer, count = np.zeros((n_seeds, dim)), np.zeros((n_seeds, dim, dim)), 0
    variance, mean_error = np.empty((n_seeds, n_iter)), np.empty((n_seeds, n_iter))
    for k in range(n_iter):
        if regime == "replace":
            total, outer, count = 0.0, 0.0, 0
        total = total + x.sum(axis=1)
        outer = outer + np.einsum("sni,snj->sij", x, x)
        count += n_samples
        mu = total / count
        cov = outer / count - mu[:, :, None] * mu[:, None, :]  # MLE (1/N) covariance of the pool
        variance[:, k] = np.trace(cov, axis1=1, axis2=2) / dim
        mean_error[:, k] = (mu**2).sum(axis=1)
        z = g.standard_normal((n_seeds, n_samples, dim))
        x = mu[:, None, :] + z @ _sqrtm_psd(cov).transpose(0, 2, 1)  # next generation's synthetic data
    return {"variance_ratio": variance, "mean_error": mean_error}
