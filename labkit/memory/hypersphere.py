"""Notebook 02d's experiment: its config, :func:`run` and the aggregation over seeds.

The mathematics (the vMF identity, the vMF-KDE memory, the token dynamics) is :mod:`labkit.memory.attention`; the
figures are :mod:`labkit.memory.plots_sphere`. :func:`run` measures four things, every draw from a ``repro``
substream of ``cfg.seed`` (as :mod:`labkit.memory.attention` keys them: by the dimension):

(a) the identity ``attention weights = vMF posterior`` on random γ, δ, keys and queries in D = ``id_dim``, and the
    vMF-KDE energy E(x_t) along pure-attention mean-shift for every β (:class:`IdentityResult`);
(b) one draw of ``n_tokens`` tokens on S² followed through ``n_layers`` tied-weight layers, per β;
(c, d) cluster count, mean pairwise cosine and displacement vs depth over ``n_seeds`` draws, d = 3 and d = ``high_dim``
    (:class:`labkit.memory.attention.TokenClustering`).

Aggregation over seeds (:func:`summarise_clusters`): with m_β(t) the seed-mean cluster count at depth t, the initial
and final counts m_β(0), m_β(T), the depth average (1/(T+1)) Σ_t m_β(t), the largest rise above the running minimum
max_t [m_β(t) − min_{s≤t} m_β(s)], and the seed-mean pairwise cosine and displacement at the final depth T.
"""

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from labkit.config import ConfigError, NotebookConfig, param, positive_float, positive_int, tuple_of, unit_interval
from labkit.memory import attention
from labkit.memory.attention import NormIdentity, TokenClustering

__all__ = [
    "HypersphereAttentionConfig",
    "IdentityResult",
    "ClusterSummary",
    "summarise_clusters",
    "HypersphereResult",
    "run",
]


@dataclass(frozen=True)
class HypersphereAttentionConfig(NotebookConfig):
    """Notebook 02d. ``id_*``: the vMF identity on random γ, δ, keys and queries (dimension ``id_dim``). Token dynamics:
    ``n_tokens`` uniform tokens on S^{d−1}, d ∈ {3, ``high_dim``}, layers x ← normalise((1−α)x + α·attention(x)) with
    α = ``alpha`` (½ = the residual block x ← normalise(x + attention(x))), β ∈ ``betas``, depth ``n_layers``,
    ``n_seeds`` seeds; clusters = connected components at angle < ``cluster_angle`` rad. Claim thresholds are fixed
    here: ``identity_tol`` (max relative error), ``energy_slack`` (largest rise of E per mean-shift step allowed,
    relative to |E|: float rounding), ``monotone_slack`` (how far the seed-mean cluster count may rise above its
    running minimum), ``few_clusters`` (seed-mean count at the final depth for the smallest β), ``movement_floor``
    (radians: a β counts in the claim that larger β keeps more clusters for longer only if its tokens' seed-mean
    displacement at the final depth is at least this; tokens that stay where they started keep their initial clusters
    by not moving, which says nothing about metastability; fixed at the clusters' own angular scale, 0.1 rad, before
    any displacement was measured). Paper scale: more tokens,
    seeds and layers (Geshkovski et al. simulate n of order 10²–10³ tokens)."""

    id_dim: int = param(16, positive_int)
    id_n_keys: int = param(64, positive_int)
    id_n_queries: int = param(256, positive_int)
    n_tokens: int = param(32, positive_int)
    high_dim: int = param(16, positive_int)
    betas: tuple = param((1.0, 4.0, 16.0, 64.0), tuple_of(positive_float, min_len=2))
    alpha: float = param(0.5, unit_interval)
    n_layers: int = param(1000, positive_int)
    n_seeds: int = param(30, positive_int)
    cluster_angle: float = param(0.1, positive_float)
    energy_n_queries: int = param(64, positive_int)
    energy_n_steps: int = param(30, positive_int)
    identity_tol: float = param(1e-6, positive_float)
    energy_slack: float = param(1e-12, positive_float)
    monotone_slack: float = param(0.5, positive_float)
    few_clusters: float = param(2.0, positive_float)
    movement_floor: float = param(0.1, positive_float)

    SCALES = {
        "smoke": dict(
            id_n_keys=16, id_n_queries=32, n_tokens=12, n_layers=30, n_seeds=3, energy_n_queries=8, energy_n_steps=10
        ),
        "quick": {},
        "paper": dict(id_n_keys=512, id_n_queries=4096, n_tokens=256, n_layers=5000, n_seeds=100),
    }

    def validate(self) -> None:
        if list(self.betas) != sorted(set(self.betas)):
            raise ConfigError(
                f"HypersphereAttentionConfig: bad value for 'betas': {self.betas!r}; "
                "allowed: strictly increasing values"
            )
        if self.n_seeds < 2:
            raise ConfigError(
                f"HypersphereAttentionConfig: bad value for 'n_seeds': {self.n_seeds}; "
                "allowed: an integer >= 2 (bands need two seeds)"
            )
        if self.id_dim < 3 or self.high_dim < 3 or self.n_tokens < 2:
            raise ConfigError("HypersphereAttentionConfig: 'id_dim' and 'high_dim' must be >= 3 and 'n_tokens' >= 2")


@dataclass(frozen=True)
class IdentityResult:
    """Part (a): ``norms`` (norm → :class:`~labkit.memory.attention.NormIdentity`) and ``energies`` (β → E(x_t) along
    pure-attention mean-shift, (n_steps + 1, n_queries))."""

    norms: dict[str, NormIdentity]
    energies: dict[float, np.ndarray]

    @property
    def max_rel_error_scipy(self) -> float:
        """Largest relative error of our vMF log densities against scipy's, over both norms."""
        return max(v.max_rel_error_scipy for v in self.norms.values())

    @property
    def max_energy_rise(self) -> float:
        """Largest relative rise of E in one mean-shift step, (E(x_{t+1}) − E(x_t)) / |E(x_t)|, over β, queries, t."""
        return float(max(np.max(np.diff(e, axis=0) / np.abs(e[:-1])) for e in self.energies.values()))

    def numbers(self) -> dict:
        """The key numbers recorded with the identity figure."""
        return {
            "max_rel_error_layer": self.norms["layer"].max_rel_error,
            "max_rel_error_rms": self.norms["rms"].max_rel_error,
            "max_rel_error_logpdf_vs_scipy": self.max_rel_error_scipy,
            "max_relative_energy_rise": self.max_energy_rise,
            "min_attention_weight": float(min(v.weights.min() for v in self.norms.values())),
        }


@dataclass(frozen=True)
class ClusterSummary:
    """Seed means of one :class:`~labkit.memory.attention.TokenClustering`, one value per β (see the module doc)."""

    betas: tuple
    initial_clusters: np.ndarray
    final_clusters: np.ndarray
    depth_averaged_clusters: np.ndarray
    max_rise_above_running_min: np.ndarray
    final_mean_cosine: np.ndarray
    final_displacement_rad: np.ndarray

    @property
    def max_rise(self) -> float:
        """The largest rise of the seed-mean count above its running minimum, over every β."""
        return float(np.max(self.max_rise_above_running_min))

    @property
    def ends_at_or_below_start(self) -> bool:
        """Whether, for every β, the seed-mean count at the final depth is at most the initial one."""
        return bool(np.all(self.final_clusters <= self.initial_clusters))

    def moving(self, floor: float) -> np.ndarray:
        """Mask of the β whose tokens moved at least ``floor`` radians (seed-mean displacement at the final depth)."""
        return self.final_displacement_rad >= floor

    def numbers(self) -> dict:
        """The fields as a dict: the key numbers recorded with the clustering figure."""
        return dataclasses.asdict(self)


def summarise_clusters(result: TokenClustering) -> ClusterSummary:
    """The cross-seed aggregation of ``result`` (formulas in the module doc)."""
    mean = result.counts.mean(axis=1)  # (β, depth)
    return ClusterSummary(
        betas=result.betas,
        initial_clusters=mean[:, 0],
        final_clusters=mean[:, -1],
        depth_averaged_clusters=mean.mean(axis=1),
        max_rise_above_running_min=(mean - np.minimum.accumulate(mean, axis=1)).max(axis=1),
        final_mean_cosine=result.cosine.mean(axis=1)[:, -1],
        final_displacement_rad=result.displacement.mean(axis=1)[:, -1],
    )


@dataclass(frozen=True)
class HypersphereResult:
    """What :func:`run` returns: the identity (a), one draw of tokens on S² (``paths``: β → (n_layers + 1, n_tokens,
    3); ``final_labels``: β → cluster of each token at the final depth) (b), and the clustering experiments in d = 3
    (``low``) and d = ``high_dim`` (``high``) (c, d)."""

    identity: IdentityResult
    paths: dict[float, np.ndarray]
    final_labels: dict[float, np.ndarray]
    low: TokenClustering
    high: TokenClustering

    def trajectory_numbers(self) -> dict:
        """Number of clusters at the final depth of the S² draw, per β."""
        return {
            f"clusters_at_final_depth_beta_{beta:g}": len(np.unique(labels))
            for beta, labels in self.final_labels.items()
        }

    @functools.cached_property
    def low_summary(self) -> ClusterSummary:
        return summarise_clusters(self.low)

    @functools.cached_property
    def high_summary(self) -> ClusterSummary:
        return summarise_clusters(self.high)

    @property
    def summaries(self) -> dict[str, ClusterSummary]:
        """``{"d3": ..., "d<high_dim>": ...}``."""
        return {f"d{self.low.dim}": self.low_summary, f"d{self.high.dim}": self.high_summary}


def run(cfg: HypersphereAttentionConfig) -> HypersphereResult:
    """Every measurement of notebook 02d at ``cfg`` (see the module doc)."""
    identity = IdentityResult(
        attention.identity_check(cfg.id_dim, cfg.id_n_keys, cfg.id_n_queries, cfg.seed),
        attention.mean_shift_energies(
            cfg.id_dim, cfg.id_n_keys, cfg.betas, cfg.energy_n_queries, cfg.energy_n_steps, cfg.seed
        ),
    )
    x0 = attention.random_sphere_points((cfg.n_tokens,), 3, cfg.seed, 3)
    paths = {beta: attention.token_dynamics(x0, beta, cfg.n_layers, cfg.alpha) for beta in cfg.betas}
    final_labels = {beta: attention.cluster_labels(xs[-1], cfg.cluster_angle) for beta, xs in paths.items()}
    low, high = (
        attention.cluster_experiment(
            d, cfg.n_tokens, cfg.betas, cfg.n_layers, cfg.n_seeds, cfg.seed, cfg.cluster_angle, cfg.alpha
        )
        for d in (3, cfg.high_dim)
    )
    return HypersphereResult(identity, paths, final_labels, low, high)
