r"""Notebook 04's experiment: train a digits classifier, attack it, fit every detector and FACADE on clean data, and
score clean versus *successful* adversarial inputs; plus the cross-seed summaries the notebook reports.

Protocol per run (everything derives from the run's seed): a stratified split of scikit-learn's digits into
training (60%; classifier and every detector are fit on it), clean calibration (15%; FACADE's z-scores and
threshold) and test (25%). The test images the classifier gets right are attacked (FGSM and PGD-L∞ at each ε,
labels = the true classes); an attack's detection task is those correct clean test images (label 0) versus the
adversarial images whose prediction it flipped (label 1) — AUROC on successful attacks only.

Seeds: run ``i`` has the seed :math:`s_i` = ``derived_seed(cfg.seed, i)`` (``cfg.run_seeds()``); inside a run every
consumer gets an integer seed of its own, ``derived_seed(s_i, key)`` (:mod:`labkit.seeds`) with ``key`` one of
:data:`SPLIT` (``cfg.split``), :data:`TRAIN` (the classifier), :data:`ATTACK` (PGD's random start),
:data:`DETECTORS` (the baselines' MC-dropout passes) and :data:`FACADE` (its pseudo-classes).

:func:`run` returns a :class:`FacadeResult`: one :class:`SeedRun` per seed and the cross-seed summaries
(:meth:`FacadeResult.attack_summary`, :meth:`FacadeResult.metric_table`, :meth:`FacadeResult.mean_over_seeds`, …).
"""

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from labkit import repro
from labkit.attacks import fgsm, pgd
from labkit.classifiers import MLP, predict, train
from labkit.data.images import digits
from labkit.detectors import BASELINES, baselines
from labkit.detectors.base import hidden_features
from labkit.detectors.metrics import detection_metrics
from labkit.facade.config import FacadeConfig
from labkit.facade.geometry import class_trajectories, pseudo_class_geometry
from labkit.facade.pseudoclasses import purity
from labkit.facade.score import Facade
from labkit.seeds import derived_seed
from labkit.stats import mean_and_se

__all__ = [
    "BASELINES",
    "FacadeConfig",
    "SPLIT",
    "TRAIN",
    "ATTACK",
    "DETECTORS",
    "FACADE",
    "AttackStats",
    "SeedRun",
    "AttackSummary",
    "FacadeResult",
    "LambdaSweep",
    "attack_names",
    "detectors",
    "run_seed",
    "run",
    "lam_sweep",
]

#: keys of the integer seeds inside one run: ``derived_seed(run seed, key)``
SPLIT, TRAIN, ATTACK, DETECTORS, FACADE = range(5)


def attack_names(cfg) -> list[str]:
    return [f"{kind} ε={eps:g}" for kind in ("FGSM", "PGD") for eps in cfg.eps_values]


def detectors(cfg, seed: int) -> dict:
    """The baseline detectors with the config's fixed hyperparameters (names as in :data:`BASELINES`)."""
    return baselines(lid_k=cfg.lid_k, mc_samples=cfg.mc_samples, knn_k=cfg.knn_k, seed=seed)


@dataclass(frozen=True)
class AttackStats:
    """One attack on one run's correctly classified test images."""

    success_rate: float  # share whose prediction flipped
    mean_loss: float  # mean cross-entropy of the true classes
    max_linf: float  # largest |x' − x| over all pixels
    min_pixel: float
    max_pixel: float


@dataclass(frozen=True)
class SeedRun:
    """One run of the protocol: accuracies, attack statistics, every detector's scores (FACADE's terms included,
    as ``"FACADE <term>"``) on clean and successful adversarial test inputs and their AUROC/TPR, FACADE's raw
    statistics, the geometry of the classes across layers and of every pseudo-class (radius, dimension, capacity,
    KDE log density with the layer's 10-NN length scale as bandwidth), and the fitted model, FACADE and data."""

    seed: int
    clean_accuracy: float
    attacks: dict[str, AttackStats]
    adversarial_accuracy: dict[str, float]
    scores: dict[str, dict[str, np.ndarray]]  # [detector][clean | attack]
    metrics: dict[str, dict[str, dict[str, float]]]  # [detector][attack] = {"auroc", "tpr_at_fpr"}
    raw: dict[str, dict[str, np.ndarray]]  # [clean | attack] = Facade.raw_terms
    clean_fpr: float  # FACADE total on clean test inputs, at its threshold
    trajectories: dict[str, np.ndarray]
    pseudo_geometry: list[dict[str, np.ndarray]]
    model: MLP
    facade: Facade
    adversarial: dict[str, np.ndarray]  # successful adversarial test inputs per attack
    y_train: np.ndarray
    x_test: np.ndarray  # the correctly classified clean test images

    def purity(self) -> np.ndarray:
        """Per hidden layer, the purity of FACADE's pseudo-classes of the training images with respect to their
        true digits (:func:`labkit.facade.pseudoclasses.purity`)."""
        return purity(self.y_train, self.facade.pseudo_.train_paths_[:, :-1])


@dataclass(frozen=True)
class AttackSummary:
    """One attack over all runs: means of the accuracy after the attack, the success rate and the loss; the extremes
    of the perturbation and of the pixels."""

    accuracy_after_attack: float
    success_rate: float
    mean_loss: float
    max_linf: float
    min_pixel: float
    max_pixel: float


def _attack(model, x, y, kind: str, eps: float, cfg, seed: int) -> tuple[np.ndarray, np.ndarray, AttackStats]:
    adv = fgsm(model, x, y, eps) if kind == "FGSM" else pgd(model, x, y, eps, cfg.pgd_steps, None, seed)
    with torch.no_grad():
        loss = F.cross_entropy(model(adv), torch.as_tensor(y), reduction="none")
    success = predict(model, adv) != y
    stats = AttackStats(
        float(success.mean()),
        float(loss.mean()),
        float((adv - torch.as_tensor(x)).abs().max()),
        float(adv.min()),
        float(adv.max()),
    )
    return adv.numpy(), success, stats


def run_seed(cfg, seed: int) -> SeedRun:
    """One run of the protocol with seed ``seed`` (module docstring)."""
    with repro.threads(1):  # small matrices (labkit.detectors.config)
        x, y = digits()
        train_idx, cal_idx, test_idx = cfg.split(y, derived_seed(seed, SPLIT))
        model = train(
            MLP(cfg.sizes, cfg.dropout),
            x[train_idx],
            y[train_idx],
            cfg.epochs,
            cfg.lr,
            cfg.batch_size,
            seed=derived_seed(seed, TRAIN),
        )
        correct = predict(model, x[test_idx]) == y[test_idx]
        xt, yt = x[test_idx][correct], y[test_idx][correct]
        attacked = {
            f"{kind} ε={eps:g}": _attack(model, xt, yt, kind, eps, cfg, derived_seed(seed, ATTACK))
            for kind in ("FGSM", "PGD")
            for eps in cfg.eps_values
        }
        adv = {name: xa[success] for name, (xa, success, _) in attacked.items()}
        attacks = {name: stats for name, (_, _, stats) in attacked.items()}

        scores = {}
        for name, det in detectors(cfg, derived_seed(seed, DETECTORS)).items():
            det.fit(model, x[train_idx], y[train_idx])
            scores[name] = {"clean": det.score(xt), **{a: det.score(xa) for a, xa in adv.items()}}
        facade = Facade(cfg.lam, cfg.q, cfg.k_scale, random_state=derived_seed(seed, FACADE)).fit(
            model, x[train_idx], x_calibration=x[cal_idx]
        )
        raw = {"clean": facade.raw_terms(xt), **{a: facade.raw_terms(xa) for a, xa in adv.items()}}
        facade_z = {k: facade.calibrated(r) for k, r in raw.items()}
        for term in ["total", *facade.terms]:
            scores[f"FACADE {term}"] = {k: z[term] for k, z in facade_z.items()}
        metrics = {det: {a: detection_metrics(s["clean"], s[a], cfg.fpr) for a in adv} for det, s in scores.items()}
        trajectories = class_trajectories(model, x[train_idx], predict(model, x[train_idx]), cfg.sizes[-1])
        train_paths = facade.pseudo_.train_paths_
        pseudo_geometry = [
            pseudo_class_geometry(h, train_paths[:, l], bandwidth=facade.pseudo_.scales_[l])
            for l, h in enumerate(hidden_features(model, x[train_idx])[0])
        ]
    clean_accuracy = float(correct.mean())
    return SeedRun(
        seed=seed,
        clean_accuracy=clean_accuracy,
        attacks=attacks,
        adversarial_accuracy={k: clean_accuracy * (1 - a.success_rate) for k, a in attacks.items()},
        scores=scores,
        metrics=metrics,
        raw=raw,
        clean_fpr=float(np.mean(facade_z["clean"]["total"] > facade.threshold_)),
        trajectories=trajectories,
        pseudo_geometry=pseudo_geometry,
        model=model,
        facade=facade,
        adversarial=adv,
        y_train=y[train_idx],
        x_test=xt,
    )


@dataclass(frozen=True)
class FacadeResult:
    """What :func:`run` returns: the config and one :class:`SeedRun` per seed, with the cross-seed summaries."""

    config: FacadeConfig
    runs: list[SeedRun]

    @property
    def attacks(self) -> list[str]:
        return attack_names(self.config)

    def mean_over_seeds(self, get) -> np.ndarray:
        """The mean over runs of ``get(run)`` (a number or an array: the mean is taken elementwise)."""
        return np.mean([get(r) for r in self.runs], axis=0)

    def clean_accuracy(self) -> float:
        return float(self.mean_over_seeds(lambda r: r.clean_accuracy))

    def attack_summary(self) -> dict[str, AttackSummary]:
        """Every attack over all runs (:class:`AttackSummary`)."""
        return {
            a: AttackSummary(
                accuracy_after_attack=float(self.mean_over_seeds(lambda r, a=a: r.adversarial_accuracy[a])),
                success_rate=float(self.mean_over_seeds(lambda r, a=a: r.attacks[a].success_rate)),
                mean_loss=float(self.mean_over_seeds(lambda r, a=a: r.attacks[a].mean_loss)),
                max_linf=max(r.attacks[a].max_linf for r in self.runs),
                min_pixel=min(r.attacks[a].min_pixel for r in self.runs),
                max_pixel=max(r.attacks[a].max_pixel for r in self.runs),
            )
            for a in self.attacks
        }

    def metric_table(self, metric: str = "auroc") -> dict[str, dict[str, tuple[float, float]]]:
        """``{detector: {attack: (mean, standard error)}}`` of ``metric`` (``"auroc"`` or ``"tpr_at_fpr"``) over
        runs."""
        table = {}
        for det, per_attack in self.runs[0].metrics.items():
            table[det] = {}
            for a in per_attack:
                mean, se = mean_and_se(np.array([r.metrics[det][a][metric] for r in self.runs]))
                table[det][a] = (float(mean), float(se))
        return table

    def accuracy_drop(self) -> dict[str, float]:
        """Per attack, the mean over runs of clean accuracy minus accuracy after the attack."""
        return {
            a: float(self.mean_over_seeds(lambda r, a=a: r.clean_accuracy - r.adversarial_accuracy[a]))
            for a in self.attacks
        }

    def pgd_minus_fgsm(self) -> dict[str, dict[str, float]]:
        """Per ε, the mean over runs of PGD's minus FGSM's success rate and mean loss."""
        return {
            f"ε={eps:g}": {
                k: float(
                    self.mean_over_seeds(
                        lambda r, eps=eps, k=k: (
                            getattr(r.attacks[f"PGD ε={eps:g}"], k) - getattr(r.attacks[f"FGSM ε={eps:g}"], k)
                        )
                    )
                )
                for k in ("success_rate", "mean_loss")
            }
            for eps in self.config.eps_values
        }


def run(cfg: FacadeConfig, progress: bool = True) -> FacadeResult:
    """:func:`run_seed` for every seed of ``cfg.run_seeds()``."""
    return FacadeResult(cfg, [run_seed(cfg, s) for s in tqdm(cfg.run_seeds(), desc="seeds", disable=not progress)])


@dataclass(frozen=True)
class LambdaSweep:
    """FACADE refit at every λ: pseudo-classes per hidden layer, clean-test false-positive rate at the calibrated
    threshold, and AUROC of the total per attack (lists in the order of ``lam``)."""

    lam: list[float]
    n_pseudo_classes: list[list[int]]
    clean_fpr: list[float]
    auroc: dict[str, list[float]]

    def as_dict(self) -> dict:
        return asdict(self)


def lam_sweep(cfg, run: SeedRun) -> LambdaSweep:
    """FACADE at every λ of ``cfg.lam_sweep`` on one run's model and data (:meth:`Facade.with_resolution`)."""
    out = LambdaSweep(list(cfg.lam_sweep), [], [], {a: [] for a in run.adversarial})
    with repro.threads(1):  # small matrices (labkit.detectors.config)
        for lam in tqdm(cfg.lam_sweep, desc="λ sweep"):
            facade = run.facade if lam == run.facade.lam else run.facade.with_resolution(lam)
            clean = facade.score(run.x_test)
            out.n_pseudo_classes.append(facade.pseudo_.n_states_[:-1])
            out.clean_fpr.append(float(np.mean(clean > facade.threshold_)))
            for a, xa in run.adversarial.items():
                out.auroc[a].append(detection_metrics(clean, facade.score(xa), cfg.fpr)["auroc"])
    return out
