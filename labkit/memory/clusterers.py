"""The clusterers of notebook 02b's comparison and the kernel width the memory models get.

:data:`METHODS`: k-means, a Gaussian mixture and a Dirichlet-process Gaussian mixture (scikit-learn) against the
memory-based clusterers ClAM (:mod:`labkit.memory.clam`), the ELBO memory's mixture (:mod:`labkit.memory.elbo`) and
the CRP memory (:mod:`labkit.memory.crp`), each built by :func:`make_methods`. Methods that need the number of
clusters get the true K; the Dirichlet-process mixture gets an upper bound of ``bgmm_factor`` × K components.

The memory models (ClAM, the CRP memory) also need a kernel width β = 1/(2σ²) per standardised feature. In the
compared methods it is unsupervised, the median heuristic (Gretton et al. 2012, "A Kernel Two-Sample Test", JMLR 13):

    σ² = median_{i<j} ‖z_i − z_j‖² / (2d),

the per-feature variance a pair at the median distance implies (:func:`median_beta`). The *oracle* width,
β = 1/(2σ_w²) with σ_w² the mean within-class variance per feature (it reads the true labels: the width counterpart
of being told K, :func:`oracle_beta`), runs only as a labelled ablation (:data:`ORACLE_ABLATIONS`, "… (oracle width)").
"""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from labkit.memory.clam import ClAM
from labkit.memory.crp import CRPMemory
from labkit.memory.elbo import ELBOMixture

__all__ = ["METHODS", "ORACLE_ABLATIONS", "oracle_beta", "median_beta", "make_methods"]

METHODS = ("k-means", "GMM", "DP-GMM", "ClAM", "ELBO memory", "CRP memory")
#: the memory models again with the label-derived width: an ablation, never part of the compared methods
ORACLE_ABLATIONS = ("ClAM (oracle width)", "CRP memory (oracle width)")


def oracle_beta(Z: np.ndarray, y: np.ndarray) -> float:
    """β = 1/(2 σ_w²), σ_w² = mean over classes and features of the within-class variance of standardised Z."""
    return 1.0 / (2.0 * np.mean([Z[y == c].var(axis=0).mean() for c in np.unique(y)]))


def median_beta(Z: np.ndarray) -> float:
    """β = 1/(2σ²) with σ² = median_{i<j} ‖z_i − z_j‖² / (2d): the median heuristic, per feature (uses no labels)."""
    from scipy.spatial.distance import pdist

    return Z.shape[1] / float(np.median(pdist(Z, "sqeuclidean")))


def make_methods(k: int, beta: float, cfg, seed: int) -> dict:
    """The six clusterers, configured from ``cfg`` and seeded with ``seed``; ``beta`` is the memory models' width."""
    return {
        "k-means": KMeans(k, n_init=cfg.n_init, random_state=seed),
        "GMM": GaussianMixture(k, n_init=cfg.n_init, random_state=seed),
        "DP-GMM": BayesianGaussianMixture(
            n_components=cfg.bgmm_factor * k,
            n_init=cfg.n_init,
            max_iter=cfg.bgmm_max_iter,
            random_state=seed,
            weight_concentration_prior_type="dirichlet_process",
        ),
        "ClAM": ClAM(k, beta=beta, n_steps=cfg.clam_n_steps, max_iter=cfg.clam_max_iter, random_state=seed),
        "ELBO memory": ELBOMixture(k, n_steps=cfg.elbo_n_steps, max_iter=cfg.elbo_max_iter, random_state=seed),
        "CRP memory": CRPMemory(
            alpha=cfg.crp_alpha,
            discount=cfg.crp_discount,
            beta=beta,
            rho=cfg.crp_rho,
            n_refine=cfg.crp_n_refine,
            random_state=seed,
        ),
    }
