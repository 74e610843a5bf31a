"""Normalisation followed by self-attention = von Mises–Fisher posterior inference and clustering on the hypersphere.

Sources: Schaeffer et al. 2024 (arXiv 2402.10202: normalisation followed by self-attention performs clustering on the
hypersphere; the identity's details below are derived here); the dynamics are those of
Geshkovski, Letrouit, Polyanskiy & Rigollet 2023, "A mathematical perspective on Transformers" (arXiv 2312.10794); the
spherical mean-shift is Kobayashi & Otsu 2010, "Von Mises–Fisher mean shift for clustering on a hypersphere" (ICPR).

**The vMF density.** On the unit sphere S^{p−1} ⊂ R^p, f(u; m, κ) = C_p(κ) exp(κ mᵀu) with

    log C_p(κ) = (p/2 − 1) log κ − (p/2) log 2π − log I_{p/2−1}(κ),      log I_ν(κ) = log ive(ν, κ) + κ,

and C_p(0) = 1 / area(S^{p−1}) = Γ(p/2) / (2 π^{p/2}). Where ``ive`` underflows (ν ≫ κ) the Bessel function is summed
from its power series in log space.

**Which sphere.** LayerNorm (ε = 0) maps x ∈ R^D to q = γ ⊙ q̃ + δ with q̃ = (x − x̄1)/s, s² = ‖x − x̄1‖²/D, so

    1ᵀq̃ = 0   and   ‖q̃‖² = D:

q̃ lies on the sphere of radius √D *inside the hyperplane 1^⊥*, a (D−2)-sphere in a p = D−1 dimensional space. With
H the (D−1)×D Helmert matrix (orthonormal rows spanning 1^⊥) the coordinates u = H q̃ / √D lie on the unit
S^{D−2} ⊂ R^{D−1}.
RMSNorm (ε = 0) maps x to q = γ ⊙ q̃ with q̃ = x / rms(x), ‖q̃‖² = D: the full sphere of radius √D, p = D, u = q̃ / √D.
(With ε > 0 the radius shrinks to √D · s/√(s² + ε), which depends on the query: the identity below is exact for ε = 0.)

**The identity.** For keys k_i, since q̃ ⊥ 1 (LayerNorm), (k_i ⊙ γ)ᵀq̃ = (H(k_i ⊙ γ))ᵀ H q̃, so

    exp(k_iᵀq) = exp(κ_i m_iᵀu) · exp(k_iᵀδ),     κ_i = √D ‖H(k_i ⊙ γ)‖,   m_i = H(k_i ⊙ γ) / ‖H(k_i ⊙ γ)‖,

and softmax_i(k_iᵀq) is the posterior p(i | u) ∝ π_i f(u; m_i, κ_i) of a vMF mixture with unequal concentrations and
mixing weights π_i ∝ exp(k_iᵀδ) / C_p(κ_i). Measured on the radius-√D sphere of q̃ itself the concentration reads
‖H(k_i ⊙ γ)‖ ≈ ‖k_i ⊙ γ‖ (the component along 1 never reaches the query). RMSNorm: the same with H = I, p = D, no δ, so
π_i ∝ 1 / C_D(κ_i), κ_i = √D ‖k_i ⊙ γ‖ — uniform mixing only when all keys share one concentration.
:func:`vmf_posterior` computes the posterior by Bayes' rule from normalised vMF log densities and log mixing weights; it
never sees the attention logits.

**Dynamics.** Tokens x_1..x_n on the unit sphere S^{d−1}, tied weights (queries = keys = values = tokens) and inverse
temperature β. One layer is

    a_i = Σ_j softmax_j(β x_iᵀx_j) x_j,       x_i ← (x_i + h a_i) / ‖x_i + h a_i‖,

written with α = h/(1+h) ∈ (0, 1] as x_i ← normalise((1−α) x_i + α a_i) (α = ½ is the residual block x ← normalise(x +
attention(x)); α = 1 is pure attention x ← normalise(attention(x))). For one query against fixed keys, pure attention is
the spherical mean-shift step on the vMF kernel density p(x) = (1/n) Σ_j C_d(β) exp(β x_jᵀx), i.e. on the energy

    E(x) = −(1/β) log Σ_j exp(β x_jᵀx),        −log p(x) = β E(x) − log C_d(β) + log n,

and never raises E: log Σ_j exp(β x_jᵀy) is convex in y, so it is ≥ its tangent at x, whose slope β Σ_j w_j x_j is
maximised over the sphere by y = normalise(Σ_j w_j x_j). With every token moving (the transformer), the tokens collapse
into clusters: eventually one (Geshkovski et al., Thm. for d ≥ 3), through long-lived multi-cluster states at large β.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import helmert
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import gammaln, ive, logsumexp
from scipy.stats import vonmises_fisher
from tqdm.auto import tqdm

from labkit import repro
from labkit.config import Interval, one_of, positive_float, unit_interval
from labkit.memory.base import EnergyMemory

__all__ = [
    "NORMS",
    "log_bessel_iv",
    "log_vmf_normaliser",
    "vmf_log_density",
    "vmf_posterior",
    "normalise",
    "attention_weights",
    "sphere_point",
    "VMFMixture",
    "attention_vmf_mixture",
    "NormIdentity",
    "identity_check",
    "VMFKDEMemory",
    "mean_shift_energies",
    "attention_step",
    "token_dynamics",
    "random_sphere_points",
    "cluster_labels",
    "cluster_count",
    "mean_displacement",
    "mean_pairwise_cosine",
    "TokenClustering",
    "cluster_experiment",
]

NORMS = ("layer", "rms")
_SERIES_TERMS = 512
_CLUSTER_CHUNK = 1024  # configurations per connected-components call
_BLOCK_VALUES = 2**22  # token coordinates held per block of depths in cluster_experiment


_norm = one_of(*NORMS)
_ambient_dim = Interval(int, 2, None, closed="left")  # the ambient dimension


def _check_norm(norm: str) -> None:
    _norm.check("norm", norm)


# ---------------------------------------------------------------------------------------------------- the vMF density


def log_bessel_iv(nu: float, kappa) -> np.ndarray:
    """log I_ν(κ) for κ ≥ 0: log ive(ν, κ) + κ, or the power series in log space where ``ive`` underflows."""
    kappa = np.asarray(kappa, dtype=float)
    if np.any(kappa < 0):
        raise ValueError(f"kappa must be >= 0, got min {kappa.min()!r}")
    with np.errstate(divide="ignore"):
        out = np.log(ive(nu, kappa)) + kappa
    bad = ~np.isfinite(out) & (kappa > 0)
    if np.any(bad):  # I_ν(κ) = Σ_k (κ/2)^{2k+ν} / (k! Γ(k+ν+1))
        k = np.arange(_SERIES_TERMS)
        kb = kappa[bad][..., None]
        out[bad] = logsumexp((2 * k + nu) * np.log(kb / 2) - gammaln(k + 1) - gammaln(k + nu + 1), axis=-1)
    return out


def log_vmf_normaliser(p: int, kappa) -> np.ndarray:
    """log C_p(κ), the vMF normaliser on the unit sphere S^{p−1} ⊂ R^p (p ≥ 2); κ = 0 gives −log area(S^{p−1})."""
    _ambient_dim.check("p", p, "log_vmf_normaliser")
    kappa = np.asarray(kappa, dtype=float)
    nu = p / 2 - 1
    uniform = gammaln(p / 2) - np.log(2) - (p / 2) * np.log(np.pi)
    pos = kappa > 0
    safe = np.where(pos, kappa, 1.0)
    general = nu * np.log(safe) - (p / 2) * np.log(2 * np.pi) - log_bessel_iv(nu, safe)
    return np.where(pos, general, uniform)


def vmf_log_density(u, mean, kappa) -> np.ndarray:
    """log f(u; m, κ) = log C_p(κ) + κ mᵀu for unit vectors ``u`` (..., p); ``mean`` (..., p), ``kappa`` broadcast."""
    u, mean = np.asarray(u, dtype=float), np.asarray(mean, dtype=float)
    return log_vmf_normaliser(u.shape[-1], kappa) + np.asarray(kappa, dtype=float) * np.sum(mean * u, axis=-1)


def vmf_posterior(u, means, kappas, log_weights) -> np.ndarray:
    """Posterior p(i | u) of the mixture Σ_i π_i vMF(m_i, κ_i) by Bayes' rule.

    ``u`` (..., p) unit vectors, ``means`` (N, p) unit vectors, ``kappas`` (N,), ``log_weights`` (N,) log π_i
    (normalised here). Returns (..., N): exp(log π_i + log f(u; m_i, κ_i) − log Σ_j π_j f(u; m_j, κ_j)).
    """
    u = np.asarray(u, dtype=float)
    log_pi = np.asarray(log_weights, dtype=float)
    log_pi = log_pi - logsumexp(log_pi)
    log_joint = log_pi + vmf_log_density(u[..., None, :], means, kappas)
    return np.exp(log_joint - logsumexp(log_joint, axis=-1, keepdims=True))


# ------------------------------------------------------------------------------------- normalise-then-attend identity


def _tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=float))


def normalise(x, norm: str = "layer", gamma=None, delta=None, eps: float = 0.0) -> torch.Tensor:
    """LayerNorm (``torch.nn.functional.layer_norm``) or RMSNorm (``rms_norm``) over the last axis, in float64."""
    _check_norm(norm)
    x = _tensor(x)
    shape = x.shape[-1:]
    g = None if gamma is None else _tensor(gamma)
    if norm == "layer":
        return F.layer_norm(x, shape, g, None if delta is None else _tensor(delta), eps=eps)
    if delta is not None:
        raise ValueError("norm='rms' has no bias: pass delta=None (RMSNorm is q = γ ⊙ x / rms(x))")
    return F.rms_norm(x, shape, g, eps=eps)


def attention_weights(query, keys, norm: str = "layer", gamma=None, delta=None, eps: float = 0.0) -> np.ndarray:
    """softmax_i(k_iᵀ q) with q = normalise(query): ``query`` (..., D), ``keys`` (N, D) → (..., N) as NumPy float64."""
    q = normalise(query, norm, gamma, delta, eps)
    return torch.softmax(q @ _tensor(keys).T, dim=-1).numpy()


def sphere_point(query, norm: str = "layer") -> np.ndarray:
    """Coordinates u of the normalised query on the unit sphere: H(x − x̄)/‖x − x̄‖ ∈ S^{D−2} (LayerNorm), x/‖x‖ (RMS)."""
    _check_norm(norm)
    x = np.asarray(query, dtype=float)
    if norm == "layer":
        x = x @ helmert(x.shape[-1]).T  # = H (x − x̄1), since H1 = 0
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass(frozen=True)
class VMFMixture:
    """Σ_i π_i vMF(m_i, κ_i) on the unit sphere S^{p−1}: ``means`` (N, p), ``kappas`` (N,), ``log_weights`` (N,)
    log π."""

    means: np.ndarray
    kappas: np.ndarray
    log_weights: np.ndarray

    def log_likelihoods(self, u) -> np.ndarray:
        """log f(u; m_i, κ_i) for every component: (..., p) → (..., N)."""
        return vmf_log_density(np.asarray(u, dtype=float)[..., None, :], self.means, self.kappas)

    def posterior(self, u) -> np.ndarray:
        return vmf_posterior(u, self.means, self.kappas, self.log_weights)


def attention_vmf_mixture(keys, norm: str = "layer", gamma=None, delta=None) -> VMFMixture:
    """The vMF mixture whose posterior at :func:`sphere_point` equals :func:`attention_weights` (ε = 0; see the
    module docstring)."""
    _check_norm(norm)
    keys = np.asarray(keys, dtype=float)
    D = keys.shape[-1]
    if norm == "rms" and delta is not None:
        raise ValueError("norm='rms' has no bias: pass delta=None (RMSNorm is q = γ ⊙ x / rms(x))")
    a = keys * (1.0 if gamma is None else np.asarray(gamma, dtype=float))
    if norm == "layer":
        a = a @ helmert(D).T
    length = np.linalg.norm(a, axis=-1)
    kappas = np.sqrt(D) * length
    means = a / np.where(length > 0, length, 1.0)[:, None]
    log_prior = np.zeros(len(keys)) if delta is None else keys @ np.asarray(delta, dtype=float)
    log_weights = log_prior - log_vmf_normaliser(a.shape[-1], kappas)
    return VMFMixture(means, kappas, log_weights - logsumexp(log_weights))


@dataclass(frozen=True)
class NormIdentity:
    """One norm's side of :func:`identity_check`, every array (n_queries, n_keys): the attention ``weights``, the vMF
    ``posterior`` at the queries' sphere points, and every component's log f(u; m_i, κ_i) there, ours
    (``log_density``) and ``scipy.stats.vonmises_fisher``'s (``log_density_scipy``)."""

    weights: np.ndarray
    posterior: np.ndarray
    log_density: np.ndarray
    log_density_scipy: np.ndarray

    @property
    def max_rel_error(self) -> float:
        """max |posterior − weights| / weights."""
        return float(np.max(np.abs(self.posterior - self.weights) / self.weights))

    @property
    def max_rel_error_scipy(self) -> float:
        """max |ours − scipy's| / |scipy's| over the log densities."""
        return float(np.max(np.abs(self.log_density - self.log_density_scipy) / np.abs(self.log_density_scipy)))


def identity_check(dim: int, n_keys: int, n_queries: int, seed: int) -> dict[str, NormIdentity]:
    """Attention weights and vMF posteriors for random γ, δ, keys and queries, plus scipy's vMF log densities:
    ``{norm: NormIdentity}`` for LayerNorm and RMSNorm."""
    r = repro.rng(seed, dim)
    keys = r.standard_normal((n_keys, dim))
    gamma, delta = np.exp(0.5 * r.standard_normal(dim)) * r.choice([-1.0, 1.0], dim), r.standard_normal(dim)
    queries = 3 * r.standard_normal((n_queries, dim)) + r.standard_normal((n_queries, 1))
    out = {}
    for norm, bias in (("layer", delta), ("rms", None)):
        mixture = attention_vmf_mixture(keys, norm, gamma, bias)
        u = sphere_point(queries, norm)
        out[norm] = NormIdentity(
            weights=attention_weights(queries, keys, norm, gamma, bias),
            posterior=mixture.posterior(u),
            log_density=mixture.log_likelihoods(u),
            log_density_scipy=np.stack(
                [vonmises_fisher(m, k).logpdf(u) for m, k in zip(mixture.means, mixture.kappas)], axis=-1
            ),
        )
    return out


# ------------------------------------------------------------------------------------------ the vMF-KDE energy memory


class VMFKDEMemory(EnergyMemory):
    """vMF kernel density over stored unit ``patterns`` (N, d) with concentration ``beta``; update = pure attention.

    E(x) = −(1/β) log Σ_j exp(β x_jᵀx); update x ← normalise(Σ_j softmax_j(β x_jᵀx) x_j) (spherical mean-shift);
    log_density is the normalised KDE log p(x) = log C_d(β) − log N − β E(x). States are unit vectors (..., d).
    """

    def __init__(self, patterns, beta: float):
        patterns = np.asarray(patterns, dtype=float)
        if patterns.ndim != 2 or patterns.shape[1] < 2:
            raise ValueError(f"patterns must have shape (N, d) with d >= 2, got {patterns.shape}")
        if not np.allclose(np.linalg.norm(patterns, axis=1), 1.0, atol=1e-9):
            raise ValueError("patterns must be unit vectors (rows of norm 1)")
        positive_float.check("beta", beta, "VMFKDEMemory")
        self.patterns, self.beta = patterns, float(beta)

    def energy(self, x):
        return -logsumexp(self.beta * np.asarray(x, dtype=float) @ self.patterns.T, axis=-1) / self.beta

    def update(self, x):
        w = np.exp(-self.beta * (self.energy(x)[..., None] - np.asarray(x, dtype=float) @ self.patterns.T))
        a = w @ self.patterns
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    def log_density(self, x):
        d, n = self.patterns.shape[1], len(self.patterns)
        return log_vmf_normaliser(d, self.beta) - np.log(n) - self.beta * self.energy(x)


def mean_shift_energies(dim: int, n_patterns: int, betas, n_queries: int, n_steps: int, seed: int) -> dict:
    """E(x_t) along pure-attention mean-shift from random unit queries against fixed random unit patterns, per β.

    Returns β → array (n_steps + 1, n_queries); the same patterns and starting queries for every β.
    """
    patterns = random_sphere_points((n_patterns,), dim, seed, dim, 0)
    x0 = random_sphere_points((n_queries,), dim, seed, dim, 1)
    out = {}
    for beta in betas:
        memory, xs = VMFKDEMemory(patterns, beta), [x0]
        for _ in range(n_steps):
            xs.append(memory.update(xs[-1]))
        out[beta] = memory.energy(np.stack(xs))
    return out


# ------------------------------------------------------------------------------------ tokens clustering on the sphere


def attention_step(x: np.ndarray, beta: float, alpha: float = 0.5) -> np.ndarray:
    """One tied-weight layer on tokens ``x`` (..., n, d):
    x_i ← normalise((1−α) x_i + α Σ_j softmax_j(β x_iᵀx_j) x_j)."""
    unit_interval.check("alpha", alpha, "attention_step")
    logits = beta * x @ np.swapaxes(x, -1, -2)
    w = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
    y = (1 - alpha) * x + alpha * (w @ x)
    return y / np.linalg.norm(y, axis=-1, keepdims=True)


def token_dynamics(x0: np.ndarray, beta: float, n_layers: int, alpha: float = 0.5) -> np.ndarray:
    """Tokens at depth 0..n_layers: (n_layers + 1, *x0.shape)."""
    xs = [np.asarray(x0, dtype=float)]
    for _ in range(n_layers):
        xs.append(attention_step(xs[-1], beta, alpha))
    return np.stack(xs)


def random_sphere_points(shape: tuple, dim: int, seed: int, *key: int) -> np.ndarray:
    """Uniform points on S^{dim−1}, array of shape (*shape, dim), from ``repro.rng(seed, *key)``."""
    z = repro.rng(seed, *key).standard_normal((*shape, dim))
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def cluster_labels(x: np.ndarray, threshold: float) -> np.ndarray:
    """Connected component of each token in the graph 'angle(x_i, x_j) < threshold (radians)', for tokens (..., n, d).

    Returns (..., n) integer labels, distinct across the batch; for a single configuration (n, d) they are 0..k−1.
    The batch is handled in chunks, each as one block-diagonal graph, so memory stays bounded.
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[-2]
    flat = x.reshape(-1, n, x.shape[-1])
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)  # each pair once; the graph is undirected
    labels, offset = [], 0
    for start in range(0, len(flat), _CLUSTER_CHUNK):
        chunk = flat[start : start + _CLUSTER_CHUNK]
        b, i, j = np.nonzero((np.einsum("bid,bjd->bij", chunk, chunk) > np.cos(threshold)) & upper)
        graph = coo_matrix((np.ones(len(b)), (b * n + i, b * n + j)), shape=(len(chunk) * n,) * 2)
        k, lab = connected_components(graph, directed=False)
        labels.append(lab + offset)
        offset += k
    return np.concatenate(labels).reshape(x.shape[:-1]) if labels else np.zeros(x.shape[:-1], dtype=int)


def cluster_count(x: np.ndarray, threshold: float) -> np.ndarray:
    """Number of clusters (:func:`cluster_labels` components) of tokens (..., n, d) → (...)."""
    labels = np.sort(cluster_labels(x, threshold), axis=-1)
    return 1 + np.count_nonzero(np.diff(labels, axis=-1), axis=-1)


def mean_pairwise_cosine(x: np.ndarray) -> np.ndarray:
    """Mean of x_iᵀx_j over pairs i ≠ j of unit tokens (..., n, d) → (...)."""
    n = x.shape[-2]
    total = np.sum(np.sum(x, axis=-2) ** 2, axis=-1)  # ‖Σ x_i‖² = n + Σ_{i≠j} x_iᵀx_j
    return (total - n) / (n * (n - 1))


def mean_displacement(x: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Mean angle (radians) between each unit token of ``x`` (..., n, d) and its start in ``x0`` (n, d) → (...):
    how far the dynamics moved the tokens (a configuration that never moves forms no clusters, it only keeps its
    initial ones)."""
    return np.arccos(np.clip(np.sum(x * x0, axis=-1), -1.0, 1.0)).mean(axis=-1)


@dataclass(frozen=True)
class TokenClustering:
    """What :func:`cluster_experiment` measures for tokens in dimension ``dim``: ``counts``, ``cosine`` and
    ``displacement``, each (len(betas), n_seeds, n_layers + 1), at ``depth`` 0..n_layers."""

    dim: int
    betas: tuple
    depth: np.ndarray
    counts: np.ndarray
    cosine: np.ndarray
    displacement: np.ndarray


def cluster_experiment(
    dim: int, n_tokens: int, betas, n_layers: int, n_seeds: int, seed: int, threshold: float, alpha: float = 0.5
) -> TokenClustering:
    """Cluster count, mean pairwise cosine and mean displacement (:func:`mean_displacement`) vs depth for each β, over
    seeds; the same initial tokens for every β (``repro.rng(seed, dim)``)."""
    x0 = random_sphere_points((n_seeds, n_tokens), dim, seed, dim)
    counts = np.zeros((len(betas), n_seeds, n_layers + 1), dtype=int)
    cosine = np.zeros((len(betas), n_seeds, n_layers + 1))
    displacement = np.zeros((len(betas), n_seeds, n_layers + 1))
    block = max(1, _BLOCK_VALUES // x0.size)  # depths kept in memory at once
    for b, beta in enumerate(betas):
        x = x0
        with tqdm(total=n_layers, desc=f"d={dim}, β={beta:g}", leave=False, disable=None) as bar:
            for start in range(0, n_layers + 1, block):
                xs = np.empty((min(block, n_layers + 1 - start), *x0.shape))
                for k in range(len(xs)):
                    if start + k:
                        x = attention_step(x, beta, alpha)
                        bar.update()
                    xs[k] = x
                counts[b, :, start : start + len(xs)] = cluster_count(xs, threshold).T
                cosine[b, :, start : start + len(xs)] = mean_pairwise_cosine(xs).T
                displacement[b, :, start : start + len(xs)] = mean_displacement(xs, x0).T
    return TokenClustering(dim, tuple(betas), np.arange(n_layers + 1), counts, cosine, displacement)
