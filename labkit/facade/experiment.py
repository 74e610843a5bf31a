r"""Notebook 04's experiment: train a digits classifier, attack it, fit every detector and FACADE on clean data, and
score clean versus *successful* adversarial inputs.

Protocol per seed (everything derives from the seed): a stratified split of scikit-learn's digits into training
(60%; classifier and every detector are fit on it), clean calibration (15%; FACADE's z-scores and threshold) and
test (25%). The test images the classifier gets right are attacked (FGSM and PGD-L∞ at each ε, labels = the true
classes); an attack's detection task is those correct clean test images (label 0) versus the adversarial images whose
prediction it flipped (label 1) — AUROC on successful attacks only.
"""

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from labkit import repro
from labkit.attacks import fgsm, pgd
from labkit.classifiers import MLP, predict, train
from labkit.data.images import digits, stratified_split
from labkit.detectors import BASELINES, baselines
from labkit.detectors.metrics import detection_metrics
from labkit.detectors.base import hidden_features
from labkit.facade.geometry import class_trajectories, pseudo_class_geometry
from labkit.facade.score import Facade
from labkit.stats import mean_and_se

__all__ = ["BASELINES", "attack_names", "detectors", "run_seed", "lam_sweep", "metric_table"]


def attack_names(cfg) -> list[str]:
    return [f"{kind} ε={eps:g}" for kind in ("FGSM", "PGD") for eps in cfg.eps_values]


def detectors(cfg, seed: int) -> dict:
    """The baseline detectors with the config's fixed hyperparameters (names as in :data:`BASELINES`)."""
    return baselines(lid_k=cfg.lid_k, mc_samples=cfg.mc_samples, knn_k=cfg.knn_k, seed=seed)


def _split(y: np.ndarray, cfg, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training, calibration and test indices (of a stratified subset of ``cfg.n_images`` images)."""
    pool = np.arange(len(y)) if cfg.n_images >= len(y) else stratified_split(y, cfg.n_images / len(y), seed + 2)[1]
    train_rel, held = stratified_split(y[pool], cfg.held_out_fraction, seed)
    cal_rel, test_rel = stratified_split(y[pool][held], cfg.test_fraction_of_held_out, seed + 1)
    return pool[train_rel], pool[held][cal_rel], pool[held][test_rel]


def _attack(model, x, y, kind: str, eps: float, cfg, seed: int) -> dict:
    adv = fgsm(model, x, y, eps) if kind == "FGSM" else pgd(model, x, y, eps, cfg.pgd_steps, None, seed)
    with torch.no_grad():
        loss = F.cross_entropy(model(adv), torch.as_tensor(y), reduction="none")
    x = torch.as_tensor(x)
    success = predict(model, adv) != y
    return {"x": adv.numpy(), "success": success, "success_rate": success.mean(), "mean_loss": float(loss.mean()),
            "max_linf": float((adv - x).abs().max()), "min_pixel": float(adv.min()), "max_pixel": float(adv.max())}


def run_seed(cfg, seed: int) -> dict:
    """One seed of the protocol; returns the accuracies, attack statistics, every detector's scores (FACADE's
    terms included, as ``"FACADE <term>"``) on clean and successful adversarial test inputs, their AUROC/TPR,
    FACADE's raw statistics, the geometry of the classes across layers and of every pseudo-class (radius, dimension,
    capacity, KDE log density with the layer's 10-NN length scale as bandwidth), and the fitted model, FACADE and data
    (for the figures)."""
    with repro.threads(cfg.threads):
        x, y = digits()
        train_idx, cal_idx, test_idx = _split(y, cfg, seed)
        model = train(MLP(cfg.sizes, cfg.dropout), x[train_idx], y[train_idx], cfg.epochs, cfg.lr, cfg.batch_size,
                      seed=seed)
        correct = predict(model, x[test_idx]) == y[test_idx]
        xt, yt = x[test_idx][correct], y[test_idx][correct]
        attacks = {f"{kind} ε={eps:g}": _attack(model, xt, yt, kind, eps, cfg, seed)
                   for kind in ("FGSM", "PGD") for eps in cfg.eps_values}
        adv = {name: a["x"][a["success"]] for name, a in attacks.items()}

        scores = {}
        for name, det in detectors(cfg, seed).items():
            det.fit(model, x[train_idx], y[train_idx])
            scores[name] = {"clean": det.score(xt), **{a: det.score(xa) for a, xa in adv.items()}}
        facade = Facade(cfg.lam, cfg.q, cfg.k_scale, random_state=seed).fit(model, x[train_idx],
                                                                             x_calibration=x[cal_idx])
        raw = {"clean": facade.raw_terms(xt), **{a: facade.raw_terms(xa) for a, xa in adv.items()}}
        facade_z = {k: facade.calibrated(r) for k, r in raw.items()}
        for term in ["total", *facade.terms]:
            scores[f"FACADE {term}"] = {k: z[term] for k, z in facade_z.items()}
        metrics = {det: {a: detection_metrics(s["clean"], s[a], cfg.fpr) for a in adv} for det, s in scores.items()}
        trajectories = class_trajectories(model, x[train_idx], predict(model, x[train_idx]), cfg.sizes[-1])
        train_paths = facade.pseudo_.train_paths_
        pseudo_geometry = [pseudo_class_geometry(h, train_paths[:, l], bandwidth=facade.pseudo_.scales_[l])
                           for l, h in enumerate(hidden_features(model, x[train_idx])[0])]
    return {"seed": seed, "clean_accuracy": correct.mean(),
            "attacks": {k: {s: v for s, v in a.items() if s not in ("x", "success")} for k, a in attacks.items()},
            "adversarial_accuracy": {k: correct.mean() * (1 - a["success_rate"]) for k, a in attacks.items()},
            "scores": scores, "metrics": metrics, "raw": raw, "clean_fpr": float(np.mean(facade_z["clean"]["total"]
                                                                                          > facade.threshold_)),
            "trajectories": trajectories, "pseudo_geometry": pseudo_geometry, "model": model, "facade": facade, "adversarial": adv,
            "y_train": y[train_idx], "x_test": xt}


def lam_sweep(cfg, run: dict) -> dict:
    """FACADE at every λ of ``cfg.lam_sweep`` on one seed's model and data (:meth:`Facade.with_resolution`):
    pseudo-classes per layer, the
    clean-test false-positive rate at the calibrated threshold, and AUROC of the total per attack."""
    out = {"lam": list(cfg.lam_sweep), "n_pseudo_classes": [], "clean_fpr": [], "auroc": {a: [] for a in run["adversarial"]}}
    with repro.threads(cfg.threads):
        for lam in tqdm(cfg.lam_sweep, desc="λ sweep"):
            facade = run["facade"] if lam == run["facade"].lam else run["facade"].with_resolution(lam)
            clean = facade.score(run["x_test"])
            out["n_pseudo_classes"].append(facade.pseudo_.n_states_[:-1])
            out["clean_fpr"].append(float(np.mean(clean > facade.threshold_)))
            for a, xa in run["adversarial"].items():
                out["auroc"][a].append(detection_metrics(clean, facade.score(xa), cfg.fpr)["auroc"])
    return out


def metric_table(runs: list[dict], metric: str = "auroc") -> dict:
    """``{detector: {attack: (mean, standard error)}}`` of ``metric`` over seeds."""
    first = runs[0]["metrics"]
    table = {}
    for det, per_attack in first.items():
        table[det] = {}
        for a in per_attack:
            mean, se = mean_and_se(np.array([r["metrics"][det][a][metric] for r in runs]))
            table[det][a] = (float(mean), float(se))
    return table
