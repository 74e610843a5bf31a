"""Notebook 02b's experiment: the clustering comparison (data sets, scores; the clusterers it compares are
:mod:`labkit.memory.clusterers`), the ELBO fixed-point check, the CRP memory's α sweep, its config, :func:`run` and the
aggregation over seeds. Figures: :mod:`labkit.memory.plots_clustering`.

Source of the experiment: the precursor of Schaeffer et al. 2024 (arXiv 2402.10202), "Associative Memory Under the
Probabilistic Lens" (NeurIPS-2023 AMHN workshop): memory-based clusterers against k-means, a Gaussian mixture and a
Dirichlet-process Gaussian mixture on small real data sets bundled with scikit-learn, scored by ARI / AMI / NMI /
silhouette; its finding was that no method is uniformly best.

Every data set is standardised (zero mean, unit variance per feature). The compared clusterers, the true K they get
and the kernel width of the memory models (the median heuristic; the label-derived *oracle* width only as an ablation)
are :mod:`labkit.memory.clusterers`.

"No method is uniformly best" is a statistical statement here (:func:`significantly_beaten`): a method is beaten on a
data set when another method's ARI is higher in a one-sided Wilcoxon signed-rank test on the per-seed paired
differences at level ``alpha``; the claim holds when every compared method is beaten on at least one data set.

Seeds: every draw comes from a substream ``repro.rng(cfg.seed, stream, index)``: (:data:`DATA`, s) draws repetition
s's blobs, (:data:`FIT`, s) seeds its clusterers (the same in the comparison and the α sweep, so the sweep at
α = ``crp_alpha`` repeats the comparison's CRP memory on blobs), (:data:`IDENTITY`, 0) draws the ELBO check's random
log joints and (:data:`DEMO`, 0) seeds its iris mixture. Where scikit-learn wants an int ``random_state`` it gets
:func:`stream_seed`, the first draw below 2³¹ of that substream. Every key has two entries: a SeedSequence pads a
shorter key with zeros, so (k,) and (k, 0) would be the same stream.
"""

import functools
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_blobs
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from labkit import repro
from labkit.config import (
    ConfigError,
    Interval,
    NotebookConfig,
    fraction,
    non_negative_int,
    one_of,
    param,
    positive_float,
    positive_int,
    tuple_of,
)
from labkit.memory.clusterers import METHODS, ORACLE_ABLATIONS, make_methods, median_beta, oracle_beta
from labkit.memory.crp import CRPMemory
from labkit.memory.elbo import ELBOMemory, ELBOMixture, fixed_point_errors

__all__ = [
    "DATASETS",
    "METHODS",  # re-exported from labkit.memory.clusterers
    "METRICS",
    "DATA",
    "FIT",
    "IDENTITY",
    "DEMO",
    "stream_seed",
    "ClusteringConfig",
    "load_dataset",
    "scores",
    "compare",
    "significantly_beaten",
    "summarise",
    "summary_table",
    "winners",
    "AlphaSweep",
    "alpha_sweep",
    "FIXED_POINT_KEYS",
    "ELBOCheck",
    "elbo_check",
    "ClusteringResult",
    "run",
]

DATASETS = ("iris", "wine", "breast_cancer", "digits", "blobs")
METRICS = ("ARI", "AMI", "NMI", "silhouette")
_LOADERS = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer, "digits": load_digits}
#: the substreams repro.rng(cfg.seed, stream, index) of the module doc, one per use
DATA, FIT, IDENTITY, DEMO = 1, 2, 3, 4


def stream_seed(seed: int, stream: int, index: int = 0) -> int:
    """The int seed (scikit-learn's ``random_state``) of repetition ``index`` of ``stream``: the first draw below 2³¹
    of ``repro.rng(seed, stream, index)``."""
    return int(repro.rng(seed, stream, index).integers(2**31))


@dataclass(frozen=True)
class ClusteringConfig(NotebookConfig):
    """Notebook 02b (ClAM, ELBO memory, CRP memory vs k-means / GMM / DP-GMM).

    ``identity_*``: random log joints ℓ ~ N(0, 1) (K = 3) on which the ELBO fixed point is checked; ``demo_n_steps``:
    dynamics steps for the figure's single iris point (components that vanish decay only like 1/t, hence many steps).
    Comparison: every data set in ``datasets`` × ``n_seeds`` seeds; ``blobs_*`` the synthetic 2-D blobs; the memory
    models' hyperparameters (fixed before any result was seen). Sweep: ``alpha_values`` on blobs. Thresholds:
    ``fixed_point_tol`` (relative error of the ELBO fixed point vs the posterior), ``monotone_tol`` (largest energy
    rise, relative), ``k_tolerance`` (|mean memories − true K| at α = ``crp_alpha``, with the median-heuristic width;
    ±1 memory at K = 5, tightened from ±2 before the run that reports it), ``significance`` (level of the paired
    tests behind "no method is uniformly best"). The paper scale is the
    precursor's: 10 seeds and the full DP-GMM budget.
    """

    datasets: tuple = param(DATASETS, tuple_of(one_of(*DATASETS)))
    n_seeds: int = param(5, positive_int)
    n_init: int = param(1, positive_int)
    blobs_n: int = param(300, positive_int)
    blobs_k: int = param(5, positive_int)
    blobs_std: float = param(1.0, positive_float)
    bgmm_factor: int = param(2, positive_int)
    bgmm_max_iter: int = param(100, positive_int)
    clam_n_steps: int = param(10, positive_int)
    clam_max_iter: int = param(30, positive_int)
    elbo_n_steps: int = param(20, positive_int)
    elbo_max_iter: int = param(100, positive_int)
    crp_alpha: float = param(1.0, positive_float)
    crp_discount: float = param(0.0, Interval(float, 0, 1, closed="left"))
    crp_rho: float = param(0.5, positive_float)
    crp_n_refine: int = param(2, non_negative_int)
    alpha_values: tuple = param((0.001, 0.01, 0.1, 1.0, 10.0, 100.0), tuple_of(positive_float, min_len=2))
    identity_n_points: int = param(200, positive_int)
    identity_n_steps: int = param(5000, positive_int)
    demo_n_steps: int = param(100_000, positive_int)
    fixed_point_tol: float = param(1e-6, positive_float)
    monotone_tol: float = param(1e-12, positive_float)
    k_tolerance: float = param(1.0, positive_float)
    significance: float = param(0.05, fraction)

    SCALES = {
        "smoke": dict(
            datasets=("iris",),
            n_seeds=2,
            blobs_n=100,
            bgmm_max_iter=20,
            clam_max_iter=3,
            elbo_max_iter=10,
            alpha_values=(0.01, 1.0, 100.0),
            identity_n_points=20,
            identity_n_steps=500,
            demo_n_steps=500,
        ),
        "quick": {},
        "paper": dict(n_seeds=10, bgmm_max_iter=500, clam_max_iter=100, elbo_max_iter=300),
    }

    def validate(self) -> None:
        if list(self.alpha_values) != sorted(self.alpha_values):
            raise ConfigError(
                f"ClusteringConfig: bad value for 'alpha_values': {self.alpha_values!r}; allowed: increasing"
            )
        if self.crp_alpha not in self.alpha_values:
            raise ConfigError(
                f"ClusteringConfig: bad value for 'crp_alpha': {self.crp_alpha!r}; "
                f"allowed: one of alpha_values {self.alpha_values}"
            )
        if self.n_seeds < 2:
            raise ConfigError(f"ClusteringConfig: bad value for 'n_seeds': {self.n_seeds}; allowed: >= 2 (spread)")


def load_dataset(name: str, cfg, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised features and true labels; ``blobs`` is drawn afresh for each seed (2-D isotropic blobs)."""
    if name == "blobs":
        X, y = make_blobs(cfg.blobs_n, n_features=2, centers=cfg.blobs_k, cluster_std=cfg.blobs_std, random_state=seed)
    elif name in _LOADERS:
        X, y = _LOADERS[name](return_X_y=True)
    else:
        raise ValueError(f"unknown data set {name!r}; allowed: {', '.join(DATASETS)}")
    return StandardScaler().fit_transform(X), y


def scores(Z: np.ndarray, y: np.ndarray, labels: np.ndarray) -> dict:
    """ARI, AMI, NMI against ``y`` and the silhouette of ``labels`` on Z (NaN when it is undefined: 1 or n clusters)."""
    n_found = len(np.unique(labels))
    return {
        "ARI": adjusted_rand_score(y, labels),
        "AMI": adjusted_mutual_info_score(y, labels),
        "NMI": normalized_mutual_info_score(y, labels),
        "silhouette": silhouette_score(Z, labels) if 1 < n_found < len(Z) else np.nan,
        "clusters": n_found,
    }


def compare(cfg) -> list[dict]:
    """Every (data set, seed, method) of ``cfg``, the memory models at the median-heuristic width, plus the
    :data:`ORACLE_ABLATIONS`: one row of scores each."""
    rows = []
    jobs = [(name, s) for name in cfg.datasets for s in range(cfg.n_seeds)]
    for name, s in tqdm(jobs, desc="clustering comparison"):
        Z, y = load_dataset(name, cfg, stream_seed(cfg.seed, DATA, s))
        k = len(np.unique(y))
        fit_seed = stream_seed(cfg.seed, FIT, s)
        methods = make_methods(k, median_beta(Z), cfg, fit_seed)
        oracle = make_methods(k, oracle_beta(Z, y), cfg, fit_seed)
        methods.update({label: oracle[label.removesuffix(" (oracle width)")] for label in ORACLE_ABLATIONS})
        for method, est in methods.items():
            rows.append({"dataset": name, "method": method, "seed": s, **scores(Z, y, est.fit_predict(Z))})
    return rows


def significantly_beaten(rows: list[dict], methods=METHODS, metric: str = "ARI", alpha: float = 0.05) -> dict:
    """{method: {data set: [methods whose ``metric`` is higher in a one-sided Wilcoxon signed-rank test of the
    per-seed paired differences at level ``alpha``]}}, for the data sets where that list is not empty. Ties (zero
    differences) count as no evidence (``zero_method="zsplit"``); all-zero differences give p = 1."""
    from scipy.stats import wilcoxon

    table: dict = {}
    for r in rows:
        table.setdefault(r["dataset"], {}).setdefault(r["method"], {})[r["seed"]] = r[metric]
    out: dict = {m: {} for m in methods}
    for ds, per_method in table.items():
        for a in methods:
            for b in methods:
                if a == b:
                    continue
                seeds = sorted(per_method[a])
                diff = np.array([per_method[b][s] - per_method[a][s] for s in seeds])
                p = 1.0 if np.all(diff == 0) else wilcoxon(diff, zero_method="zsplit", alternative="greater").pvalue
                if p < alpha:
                    out[a].setdefault(ds, []).append(b)
    return out


def summarise(rows: list[dict]) -> dict:
    """{dataset: {method: {metric: (mean, std over seeds)}}}; silhouette NaNs are ignored (all NaN → NaN)."""
    out = {}
    for r in rows:
        out.setdefault(r["dataset"], {}).setdefault(r["method"], {m: [] for m in (*METRICS, "clusters")})
        for m in (*METRICS, "clusters"):
            out[r["dataset"]][r["method"]][m].append(r[m])
    for per_method in out.values():
        for per_metric in per_method.values():
            for m, v in per_metric.items():
                v = np.asarray(v, float)
                ok = v[np.isfinite(v)]
                per_metric[m] = (
                    (float(ok.mean()), float(ok.std(ddof=1)) if len(ok) > 1 else 0.0)
                    if len(ok)
                    else (float("nan"), float("nan"))
                )
    return out


def summary_table(summary: dict) -> str:
    """:func:`summarise`'s table as text: per data set, one line per method, mean ± std of each metric and of the
    number of clusters found."""
    columns = (*METRICS, "clusters")
    lines = []
    for ds, per_method in summary.items():
        lines += ["", ds, "  " + "method".ljust(12) + "".join(m.rjust(18) for m in columns)]
        lines += [
            "  " + method.ljust(12) + "".join(f"{vals[m][0]:9.3f} ± {vals[m][1]:5.3f} ".rjust(18) for m in columns)
            for method, vals in per_method.items()
        ]
    return "\n".join(lines)


def winners(summary: dict, metric: str = "ARI") -> dict:
    """The compared method (:data:`METHODS`, no ablation) with the highest mean ``metric`` on each data set."""
    return {
        ds: max((m for m in per_method if m in METHODS), key=lambda m: per_method[m][metric][0])
        for ds, per_method in summary.items()
    }


@dataclass(frozen=True)
class AlphaSweep:
    """:func:`alpha_sweep`'s measurements at the concentrations ``alpha``, each (n_seeds, len(alpha)): memories
    ``created`` while streaming, memories ``kept`` after refinement, and the ``ari`` against the true labels."""

    alpha: np.ndarray
    created: np.ndarray
    kept: np.ndarray
    ari: np.ndarray

    def created_at(self, alpha: float) -> float:
        """The seed-mean number of memories created at ``alpha`` (one of the swept values)."""
        return float(self.created.mean(axis=0)[list(self.alpha).index(alpha)])

    def summary(self) -> dict:
        """The aggregation over seeds recorded with the figure: mean and std of ``created``, means of ``kept`` and
        ARI."""
        return {
            "created_mean": self.created.mean(0),
            "created_std": self.created.std(0),
            "kept_mean": self.kept.mean(0),
            "ARI_mean": self.ari.mean(0),
        }


def alpha_sweep(cfg, oracle: bool = False) -> AlphaSweep:
    """CRP memory on blobs for every α in ``cfg.alpha_values`` and every seed, at the median-heuristic width (or, with
    ``oracle``, the width read from the true labels: the ablation); the blobs and the CRP memory's seed of repetition s
    are the comparison's (:func:`compare`)."""
    created, kept, ari = (np.zeros((cfg.n_seeds, len(cfg.alpha_values))) for _ in range(3))
    for s in tqdm(range(cfg.n_seeds), desc="alpha sweep"):
        Z, y = load_dataset("blobs", cfg, stream_seed(cfg.seed, DATA, s))
        beta = oracle_beta(Z, y) if oracle else median_beta(Z)
        for j, alpha in enumerate(cfg.alpha_values):
            est = CRPMemory(
                alpha=alpha,
                discount=cfg.crp_discount,
                beta=beta,
                rho=cfg.crp_rho,
                n_refine=cfg.crp_n_refine,
                random_state=stream_seed(cfg.seed, FIT, s),
            ).fit(Z)
            created[s, j], kept[s, j], ari[s, j] = est.n_created_, est.n_clusters_, adjusted_rand_score(y, est.labels_)
    return AlphaSweep(np.asarray(cfg.alpha_values, float), created, kept, ari)


#: the numbers of :func:`~labkit.memory.elbo.fixed_point_errors` that are recorded and checked
FIXED_POINT_KEYS = ("fixed_point_residual", "kl_identity_error", "converged_error", "energy_gap", "max_energy_rise")


@dataclass(frozen=True)
class ELBOCheck:
    """:func:`~labkit.memory.elbo.fixed_point_errors` on random log joints ℓ ~ N(0, 1) (``random``) and on the iris
    flower ``iris_index`` whose posterior (``iris_posterior``; log evidence ``iris_log_evidence``) under a 3-memory
    ELBO mixture fitted to iris is the most uncertain (``iris``)."""

    random: dict
    iris: dict
    iris_index: int
    iris_posterior: np.ndarray
    iris_log_evidence: float

    @property
    def worst_error(self) -> float:
        """The largest relative error behind "the fixed point is the posterior": the velocity at the posterior and
        the KL identity on both, the end of the dynamics and its energy on the random log joints (the iris flower's
        are recorded, not tested: a vanishing component approaches its posterior only like 1/t)."""
        r, i = self.random, self.iris
        return float(
            max(
                r["fixed_point_residual"],
                i["fixed_point_residual"],
                r["kl_identity_error"],
                i["kl_identity_error"],
                r["converged_error"],
                r["energy_gap"],
            )
        )

    @property
    def max_energy_rise(self) -> float:
        """The largest relative rise of the energy along either run of the dynamics."""
        return float(max(self.random["max_energy_rise"], self.iris["max_energy_rise"]))

    def numbers(self) -> dict:
        """The key numbers recorded with the dynamics figure."""
        return {
            "random_logits": {k: self.random[k] for k in FIXED_POINT_KEYS},
            "iris_point": {k: self.iris[k] for k in FIXED_POINT_KEYS},
            "iris_point_index": self.iris_index,
            "iris_posterior": self.iris_posterior,
        }


def elbo_check(cfg) -> ELBOCheck:
    """The ELBO memory's dynamics run ``cfg.identity_n_steps`` steps on ``cfg.identity_n_points`` random log joints
    (K = 3) and ``cfg.demo_n_steps`` steps on the iris flower of largest posterior entropy."""
    log_joints = repro.rng(cfg.seed, IDENTITY, 0).normal(size=(cfg.identity_n_points, 3))
    random = fixed_point_errors(ELBOMemory(log_joints), cfg.identity_n_steps)
    Z, _ = load_dataset("iris", cfg, seed=0)  # bundled: the seed is not used
    memory = ELBOMixture(3, random_state=stream_seed(cfg.seed, DEMO)).fit(Z).memory(Z)
    p = memory.posterior()
    i = int(np.argmax(-np.sum(p * np.log(np.maximum(p, 1e-300)), axis=1)))  # the largest posterior entropy
    demo = ELBOMemory(memory.log_joint[i])
    return ELBOCheck(
        random, fixed_point_errors(demo, cfg.demo_n_steps), i, demo.posterior(), float(demo.log_evidence())
    )


@dataclass(frozen=True)
class ClusteringResult:
    """What :func:`run` returns: the ELBO check (``elbo``), the comparison's ``rows`` (one per data set, seed and
    method, :func:`compare`) and the α sweeps at the median-heuristic width (``sweep``) and at the oracle width
    (``oracle_sweep``, the ablation)."""

    elbo: ELBOCheck
    rows: list[dict]
    sweep: AlphaSweep
    oracle_sweep: AlphaSweep

    @functools.cached_property
    def summary(self) -> dict:
        """:func:`summarise` of the rows: mean and std over seeds per data set, method and metric."""
        return summarise(self.rows)

    def best(self) -> dict:
        """{metric: {data set: the compared method with the highest mean}} (:func:`winners`)."""
        return {m: winners(self.summary, m) for m in METRICS}

    def beaten(self, alpha: float, metric: str = "ARI") -> dict:
        """:func:`significantly_beaten` among the compared methods at level ``alpha``."""
        return significantly_beaten(self.rows, METHODS, metric, alpha)


def run(cfg: ClusteringConfig) -> ClusteringResult:
    """Every measurement of notebook 02b at ``cfg``."""
    return ClusteringResult(elbo_check(cfg), compare(cfg), alpha_sweep(cfg), alpha_sweep(cfg, oracle=True))
