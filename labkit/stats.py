"""Monte-Carlo summaries shared by the notebooks: means over seeds, their standard errors and z-scores."""

import numpy as np

__all__ = ["mean_and_se", "zscores"]


def mean_and_se(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds (axis 0) and its standard error ``std(ddof=1) / sqrt(n)``."""
    samples = np.asarray(samples, dtype=float)
    n = samples.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 seeds for a standard error, got {n}")
    return samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(n)


def zscores(samples: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """How many standard errors the seed mean lies from ``expected``, elementwise."""
    mean, se = mean_and_se(samples)
    return (mean - expected) / se
