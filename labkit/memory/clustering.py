"""The clustering comparison of notebook 02b (data sets, methods, scores) and its figures.

Source of the experiment: the precursor of Schaeffer et al. 2024 (arXiv 2402.10202), "Associative Memory Under the
Probabilistic Lens" (NeurIPS-2023 AMHN workshop): memory-based clusterers against k-means, a Gaussian mixture and a
Dirichlet-process Gaussian mixture on small real data sets bundled with scikit-learn, scored by ARI / AMI / NMI /
silhouette; its finding was that no method is uniformly best.

Every data set is standardised (zero mean, unit variance per feature). Methods that need the number of clusters get the
true K. The memory models (ClAM, the CRP memory) also need a kernel width β = 1/(2σ²) per standardised feature. In the
compared methods it is unsupervised, the median heuristic (Gretton et al. 2012, "A Kernel Two-Sample Test", JMLR 13):
σ² = median over pairs of ‖z_i − z_j‖² / (2d), the per-feature variance a pair at the median distance implies
(:func:`median_beta`). The *oracle* width, β = 1/(2σ_w²) with σ_w² the mean within-class variance per feature (it reads
the true labels: the width counterpart of being told K), runs only as a labelled ablation ("… (oracle width)"). The
Dirichlet-process mixture gets an upper bound of ``bgmm_factor`` × K components.

"No method is uniformly best" is a statistical statement here (:func:`significantly_beaten`): a method is beaten on a
data set when another method's ARI is higher in a one-sided Wilcoxon signed-rank test on the per-seed paired
differences at level ``alpha``; the claim holds when every compared method is beaten on at least one data set.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_blobs
from sklearn.metrics import (adjusted_mutual_info_score, adjusted_rand_score, normalized_mutual_info_score,
                             silhouette_score)
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from labkit.memory.clam import ClAM
from labkit.memory.crp import CRPMemory
from labkit.memory.elbo import ELBOMixture

__all__ = ["DATASETS", "METHODS", "ORACLE_ABLATIONS", "METRICS", "load_dataset", "oracle_beta", "median_beta",
           "make_methods", "scores", "compare", "significantly_beaten", "summarise", "winners", "alpha_sweep",
           "elbo_dynamics_figure", "comparison_figure", "alpha_figure"]

DATASETS = ("iris", "wine", "breast_cancer", "digits", "blobs")
METHODS = ("k-means", "GMM", "DP-GMM", "ClAM", "ELBO memory", "CRP memory")
#: the memory models again with the label-derived width: an ablation, never part of the compared methods
ORACLE_ABLATIONS = ("ClAM (oracle width)", "CRP memory (oracle width)")
METRICS = ("ARI", "AMI", "NMI", "silhouette")
_LOADERS = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer, "digits": load_digits}
_COLORS = dict(zip(METHODS + ORACLE_ABLATIONS, ("#7f7f7f", "#1f77b4", "#17becf", "#d62728", "#ff7f0e", "#2ca02c",
                                               "#f4a3a3", "#a6d8a6")))


def load_dataset(name: str, cfg, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised features and true labels; ``blobs`` is drawn afresh for each seed (2-D isotropic blobs)."""
    if name == "blobs":
        X, y = make_blobs(cfg.blobs_n, n_features=2, centers=cfg.blobs_k, cluster_std=cfg.blobs_std, random_state=seed)
    elif name in _LOADERS:
        X, y = _LOADERS[name](return_X_y=True)
    else:
        raise ValueError(f"unknown data set {name!r}; allowed: {', '.join(DATASETS)}")
    return StandardScaler().fit_transform(X), y


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
        "DP-GMM": BayesianGaussianMixture(n_components=cfg.bgmm_factor * k, n_init=cfg.n_init,
                                          max_iter=cfg.bgmm_max_iter, random_state=seed,
                                          weight_concentration_prior_type="dirichlet_process"),
        "ClAM": ClAM(k, beta=beta, n_steps=cfg.clam_n_steps, max_iter=cfg.clam_max_iter, random_state=seed),
        "ELBO memory": ELBOMixture(k, n_steps=cfg.elbo_n_steps, max_iter=cfg.elbo_max_iter, random_state=seed),
        "CRP memory": CRPMemory(alpha=cfg.crp_alpha, discount=cfg.crp_discount, beta=beta, rho=cfg.crp_rho,
                                n_refine=cfg.crp_n_refine, random_state=seed),
    }


def scores(Z: np.ndarray, y: np.ndarray, labels: np.ndarray) -> dict:
    """ARI, AMI, NMI against ``y`` and the silhouette of ``labels`` on Z (NaN when it is undefined: 1 or n clusters)."""
    n_found = len(np.unique(labels))
    return {"ARI": adjusted_rand_score(y, labels), "AMI": adjusted_mutual_info_score(y, labels),
            "NMI": normalized_mutual_info_score(y, labels),
            "silhouette": silhouette_score(Z, labels) if 1 < n_found < len(Z) else np.nan, "clusters": n_found}


def compare(cfg) -> list[dict]:
    """Every (data set, seed, method) of ``cfg``, the memory models at the median-heuristic width, plus the
    :data:`ORACLE_ABLATIONS`: one row of scores each."""
    rows = []
    jobs = [(name, s) for name in cfg.datasets for s in range(cfg.n_seeds)]
    for name, s in tqdm(jobs, desc="clustering comparison"):
        seed = cfg.seed * 1000 + s
        Z, y = load_dataset(name, cfg, seed)
        k = len(np.unique(y))
        methods = make_methods(k, median_beta(Z), cfg, seed)
        oracle = make_methods(k, oracle_beta(Z, y), cfg, seed)
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
                per_metric[m] = (float(ok.mean()), float(ok.std(ddof=1)) if len(ok) > 1 else 0.0) if len(ok) else (
                    float("nan"), float("nan"))
    return out


def winners(summary: dict, metric: str = "ARI") -> dict:
    """The compared method (:data:`METHODS`, no ablation) with the highest mean ``metric`` on each data set."""
    return {ds: max((m for m in per_method if m in METHODS), key=lambda m: per_method[m][metric][0])
            for ds, per_method in summary.items()}


def alpha_sweep(cfg, oracle: bool = False) -> dict:
    """CRP memory on blobs for every α in ``cfg.alpha_values`` and every seed, at the median-heuristic width (or, with
    ``oracle``, the width read from the true labels: the ablation): memories created while streaming, memories kept
    after refinement, and ARI; arrays of shape (n_seeds, n_alpha)."""
    created, kept, ari = (np.zeros((cfg.n_seeds, len(cfg.alpha_values))) for _ in range(3))
    for s in tqdm(range(cfg.n_seeds), desc="alpha sweep"):
        seed = cfg.seed * 1000 + s
        Z, y = load_dataset("blobs", cfg, seed)
        beta = oracle_beta(Z, y) if oracle else median_beta(Z)
        for j, alpha in enumerate(cfg.alpha_values):
            est = CRPMemory(alpha=alpha, discount=cfg.crp_discount, beta=beta, rho=cfg.crp_rho,
                            n_refine=cfg.crp_n_refine, random_state=seed).fit(Z)
            created[s, j], kept[s, j], ari[s, j] = est.n_created_, est.n_clusters_, adjusted_rand_score(y, est.labels_)
    return {"alpha": np.asarray(cfg.alpha_values, float), "created": created, "kept": kept, "ARI": ari}


def elbo_dynamics_figure(q: np.ndarray, energy: np.ndarray, posterior: np.ndarray, log_evidence: float):
    """Assignments q_k(t) converging to the posterior (dashed) and E(t) − (−log p(x)) falling to zero, for one x."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    t = np.arange(1, len(q) + 1)
    for k in range(q.shape[1]):
        line, = axes[0].plot(t, q[:, k], lw=1.5, label=f"q_{k + 1}(t)")
        axes[0].axhline(posterior[k], color=line.get_color(), ls="--", lw=1)
    axes[0].set(xscale="log", xlabel="dynamics step t + 1 (Euler, η = dt/τ)", ylabel="assignment q_k",
                title="ELBO memory: q(t) → posterior p(z | x) (dashed)")
    axes[0].legend(fontsize=8)
    gap = np.maximum(energy + log_evidence, 1e-17)
    axes[1].plot(t, gap, color="k", lw=1.5)
    axes[1].set(xscale="log", yscale="log", xlabel="dynamics step t + 1",
                ylabel="E(v_t) + log p(x) = KL(q_t ‖ p)  [nats]",
                title="negative ELBO decreases to −log p(x)")
    return fig


def comparison_figure(summary: dict, metrics=METRICS):
    """Grouped bars: mean ± std over seeds of each metric, per data set and method (hatched: the oracle-width
    ablations)."""
    datasets = list(summary)
    methods = [m for m in METHODS + ORACLE_ABLATIONS if m in summary[datasets[0]]]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(11, 2.3 * len(metrics) + 0.6), sharex=True)
    width = 0.8 / len(methods)
    x = np.arange(len(datasets))
    for ax, metric in zip(axes, metrics):
        for i, method in enumerate(methods):
            mean = [summary[ds][method][metric][0] for ds in datasets]
            std = [summary[ds][method][metric][1] for ds in datasets]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, mean, width, yerr=std, color=_COLORS[method],
                   label=method, capsize=2, error_kw={"lw": 0.8}, hatch="//" if method in ORACLE_ABLATIONS else None)
        ax.set_ylabel(metric)
        ax.axhline(0, color="k", lw=0.5)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=4, fontsize=8, loc="outside upper center")
    axes[-1].set_xticks(x, [ds.replace("_", " ") for ds in datasets])
    axes[-1].set_xlabel("data set (standardised features)")
    axes[0].set_title("Clustering scores, mean ± std over seeds (higher is better)")
    return fig


def alpha_figure(sweep: dict, true_k: int, oracle: dict | None = None):
    """Memories vs concentration α (mean ± std over seeds) with the true number of clusters, and ARI vs α; ``oracle``
    (the same sweep at the label-derived width, an ablation) in lighter, dashed lines."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    a = sweep["alpha"]
    runs = [(sweep, "", 1.0, "-")] + ([(oracle, " (oracle width)", 0.45, "--")] if oracle is not None else [])
    for run, suffix, alpha, ls in runs:
        for key, label, color, marker in (("created", "opened while streaming", "#2ca02c", "o"),
                                          ("kept", "kept after refinement", "k", "s")):
            axes[0].errorbar(a, run[key].mean(0), yerr=run[key].std(0), marker=marker, ms=4, capsize=2, color=color,
                             ls=ls, alpha=alpha, label=label + suffix)
        axes[1].errorbar(a, run["ARI"].mean(0), yerr=run["ARI"].std(0), marker="o", ms=4, capsize=2, color="#2ca02c",
                         ls=ls, alpha=alpha, label="median-heuristic width" if not suffix else "oracle width (ablation)")
    axes[0].axhline(true_k, color="#d62728", ls=":", label=f"true clusters ({true_k})")
    axes[0].set(xscale="log", yscale="log", xlabel="CRP concentration α", ylabel="number of memories",
                title="memories created vs α (blobs)")
    axes[0].legend(fontsize=7)
    axes[1].set(xscale="log", xlabel="CRP concentration α", ylabel="ARI vs true labels",
                title="clustering quality vs α", ylim=(-0.05, 1.05))
    axes[1].legend(fontsize=7)
    return fig
