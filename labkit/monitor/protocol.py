r"""One run of notebook 03's protocol, for one seed: build the model organisms, fit every monitor on trusted clean
data only, and measure how well each one flags the hidden behaviour (:func:`run_seed`, returning a
:class:`MonitorRun`). Running it over seeds, the cross-seed summaries and the config: :mod:`labkit.monitor.evaluate`.

Protocol per seed (everything derives from the seed): a stratified split of the images into training (60%),
clean calibration (15%; FACADE's z-scores) and test (25%). On the training split we train

- a **clean** model (the control),
- the **backdoor** organism (BadNets poisons, a ``poison_fraction`` of the training split, with the fixed corner
  patch),
- the **shortcut** organism (a ``marker_fraction`` of the images carry their class's marker pixel),
- the **adaptive** backdoor at every ``adaptive_betas`` (learned bounded trigger + feature-matching retraining),
- **students** distilled from the backdoor at every temperature, on the clean training images only, and their
  control: students distilled from the clean model the same way.

Monitors (``labkit.detectors`` and ``labkit.facade``, one interface, fit on the *clean* training images — the
trusted data — and, for FACADE, calibrated on the clean calibration split): output confidence (MSP),
single-layer activation distributions (Mahalanobis of the last hidden layer, deep kNN), all layers (Mahalanobis
summed over layers, LID), KD+BU, and layer-to-layer propagation (FACADE's path and circuit terms and its total).
A detection *task* is clean test images (label 0) against the same organism's hidden-behaviour test inputs
(label 1): triggered non-target images for the backdoors, correctly-marked images for the shortcut, and — the
controls — the corner trigger and the marker on the *clean* model, which show how much of a "detection" is the
input's own oddness rather than the hidden mechanism. The poisoning filters score the poisoned training sets
(``filters``).

Seeds: run ``i`` has the seed :math:`s_i` = ``derived_seed(cfg.seed, i)`` (``cfg.run_seeds()``); inside a run each
random stream has its own ``key``: numpy draws come from ``repro.rng(s_i, key)`` and a consumer that takes an
integer seed gets ``derived_seed(s_i, key)`` (:mod:`labkit.seeds`). Keys: :data:`SPLIT` (``cfg.split``),
:data:`TRAIN` (every model of the run: the organisms share it, so they differ only in their training data),
:data:`POISON` (which images are poisoned), :data:`MARKER` (which are marked), :data:`RELIANCE` (the contradicting
markers), :data:`DETECTORS` (the monitors: ``derived_seed(·, 0)`` for the baselines' MC-dropout passes,
``derived_seed(·, 1)`` for FACADE) and :data:`FILTERS` (activation clustering).
"""

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from labkit import repro
from labkit.classifiers import MLP, predict, train
from labkit.data.images import digits, mnist
from labkit.detectors import baselines
from labkit.detectors.metrics import detection_metrics
from labkit.facade import Facade
from labkit.monitor.filters import filter_scores
from labkit.monitor.organisms import (
    attack_success_rate,
    corner_trigger,
    distil,
    mark,
    marker_reliance,
    poison,
    train_adaptive_backdoor,
)
from labkit.seeds import derived_seed

__all__ = [
    "MONITORS",
    "FACADE_TERMS",
    "TASKS",
    "SPLIT",
    "TRAIN",
    "POISON",
    "MARKER",
    "RELIANCE",
    "DETECTORS",
    "FILTERS",
    "load_images",
    "monitor_scores",
    "OrganismStats",
    "AdaptiveRun",
    "FilterRun",
    "MonitorRun",
    "run_seed",
]

FACADE_TERMS = ("path", "circuit", "total")
MONITORS = (
    "MSP",
    "Mahalanobis (last)",
    "deep kNN",
    "Mahalanobis (all)",
    "LID (all)",
    "KD+BU",
    *(f"FACADE {t}" for t in FACADE_TERMS),
)
TASKS = ("backdoor", "adaptive backdoor", "shortcut", "control: clean model + trigger", "control: clean model + marker")

#: keys of the integer seeds inside one run: ``derived_seed(run seed, key)``
SPLIT, TRAIN, POISON, MARKER, RELIANCE, DETECTORS, FILTERS = range(7)


def load_images(cfg) -> tuple[np.ndarray, np.ndarray]:
    """The config's whole data set (``cfg.split`` draws the stratified subset of ``cfg.n_images``)."""
    return digits() if cfg.dataset == "digits" else mnist("train")


def monitor_scores(cfg, seed: int, model, x_trusted, y_trusted, x_calibration, inputs: dict) -> dict:
    """``{monitor: {name: scores}}`` for every array in ``inputs``; all monitors fit on trusted data only (the
    baselines' MC-dropout passes seeded by ``derived_seed(seed, 0)``, FACADE by ``derived_seed(seed, 1)``)."""
    out = {}
    for name, det in baselines(
        lid_k=cfg.lid_k, mc_samples=cfg.mc_samples, knn_k=cfg.knn_k, seed=derived_seed(seed, 0)
    ).items():
        if name in MONITORS:
            det.fit(model, x_trusted, y_trusted)
            out[name] = {k: det.score(v) for k, v in inputs.items()}
    facade = Facade(cfg.lam, cfg.q, cfg.k_scale, random_state=derived_seed(seed, 1)).fit(
        model, x_trusted, x_calibration=x_calibration
    )
    terms = {k: facade.term_scores(v) for k, v in inputs.items()}
    for t in FACADE_TERMS:
        out[f"FACADE {t}"] = {k: s[t] for k, s in terms.items()}
    return {m: out[m] for m in MONITORS}


def _metrics(scores: dict, fpr: float) -> dict:
    return {m: detection_metrics(s["clean"], s["hidden"], fpr) for m, s in scores.items()}


@dataclass(frozen=True)
class OrganismStats:
    """A model's clean test accuracy and its attack success rate with the corner trigger."""

    accuracy: float
    attack_success: float


@dataclass(frozen=True)
class AdaptiveRun:
    """The adaptive backdoor at one feature-matching weight β: the organism, its learned trigger and every monitor's
    ``{"auroc", "tpr_at_fpr"}`` on its triggered inputs."""

    accuracy: float
    attack_success: float
    trigger_linf: float
    trigger: np.ndarray
    metrics: dict[str, dict[str, float]]


@dataclass(frozen=True)
class FilterRun:
    """One poisoning filter on one poisoned training set: its per-sample scores, AUROC and TPR (poisons = 1)."""

    scores: np.ndarray
    auroc: float
    tpr_at_fpr: float


@dataclass(frozen=True)
class MonitorRun:
    """One run of the protocol (module docstring)."""

    seed: int
    accuracy: dict[str, float]  # clean test accuracy per model
    attack_success: dict[str, float]  # "clean (control)", "backdoor"
    marker_reliance: dict[str, float]  # "clean (control)", "shortcut"
    students: dict[float, OrganismStats]  # per temperature, students of the backdoor
    control_students: dict[float, OrganismStats]  # per temperature, students of the clean model
    scores: dict[str, dict[str, dict[str, np.ndarray]]]  # [task][monitor]["clean" | "hidden"]
    adaptive: dict[float, AdaptiveRun]  # per β
    metrics: dict[str, dict[str, dict[str, float]]]  # [task][monitor] = {"auroc", "tpr_at_fpr"}
    filters: dict[str, dict[str, FilterRun]]  # [organism][filter]
    is_poison: np.ndarray


def run_seed(cfg, seed: int) -> MonitorRun:
    """One run of the protocol (module docstring) with seed ``seed``: accuracies, attack success rates, marker
    reliance, the students, every monitor's scores and AUROC / TPR per task, the adaptive sweep and the poisoning
    filters."""
    with repro.threads(1):  # small matrices (labkit.detectors.config)
        x, y = load_images(cfg)
        train_idx, cal_idx, test_idx = cfg.split(y, derived_seed(seed, SPLIT))
        xtr, ytr, xcal, xt, yt = x[train_idx], y[train_idx], x[cal_idx], x[test_idx], y[test_idx]
        fit = dict(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=derived_seed(seed, TRAIN))
        monitor_seed = derived_seed(seed, DETECTORS)
        trigger = corner_trigger(x.shape[1], cfg.trigger_side, cfg.trigger_value)

        clean = train(MLP(cfg.sizes, cfg.dropout), xtr, ytr, **fit)
        xp, yp, is_poison = poison(
            xtr, ytr, round(cfg.poison_fraction * len(ytr)), cfg.target, trigger, derived_seed(seed, POISON)
        )
        backdoor = train(MLP(cfg.sizes, cfg.dropout), xp, yp, **fit)
        marked_rows = repro.rng(seed, MARKER).random(len(ytr)) < cfg.marker_fraction
        xs = xtr.copy()
        xs[marked_rows] = mark(xtr[marked_rows], ytr[marked_rows], cfg.sizes[-1], cfg.marker_value)
        shortcut = train(MLP(cfg.sizes, cfg.dropout), xs, ytr, **fit)
        adaptive = {
            beta: train_adaptive_backdoor(
                xtr,
                ytr,
                is_poison,
                cfg.target,
                beta,
                cfg.adaptive_budget,
                cfg.sizes,
                cfg.dropout,
                trigger_lr=cfg.trigger_lr,
                **fit,
            )
            for beta in tqdm(cfg.adaptive_betas, desc=f"adaptive backdoors, seed {seed}", leave=False)
        }
        students = {
            t: distil(backdoor, xtr, t, cfg.sizes, cfg.dropout, **fit)
            for t in tqdm(cfg.temperatures, desc=f"students, seed {seed}", leave=False)
        }
        control_students = {
            t: distil(clean, xtr, t, cfg.sizes, cfg.dropout, **fit)  # the students' control
            for t in tqdm(cfg.temperatures, desc=f"control students, seed {seed}", leave=False)
        }

        accuracy = lambda m, xx=xt: float(np.mean(predict(m, xx) == yt))  # noqa: E731
        stats = lambda m: OrganismStats(accuracy(m), attack_success_rate(m, xt, yt, cfg.target, trigger))  # noqa: E731
        nontarget = yt != cfg.target
        marked = mark(xt, yt, cfg.sizes[-1], cfg.marker_value)

        scores = {
            task: monitor_scores(cfg, monitor_seed, m, xtr, ytr, xcal, {"clean": xt, "hidden": hidden})
            for task, (m, hidden) in (
                ("backdoor", (backdoor, trigger(xt[nontarget]))),
                ("shortcut", (shortcut, marked)),
            )
        }
        control = monitor_scores(
            cfg, monitor_seed, clean, xtr, ytr, xcal, {"clean": xt, "trigger": trigger(xt[nontarget]), "marker": marked}
        )
        for kind in ("trigger", "marker"):  # the same fitted monitors, two kinds of odd input
            scores[f"control: clean model + {kind}"] = {
                m: {"clean": s["clean"], "hidden": s[kind]} for m, s in control.items()
            }
        adaptive_runs = {}
        for beta, (m, learned) in tqdm(adaptive.items(), desc=f"monitors on adaptive, seed {seed}", leave=False):
            adaptive_scores = monitor_scores(
                cfg, monitor_seed, m, xtr, ytr, xcal, {"clean": xt, "hidden": learned(xt[nontarget])}
            )
            adaptive_runs[beta] = AdaptiveRun(
                accuracy(m),
                attack_success_rate(m, xt, yt, cfg.target, learned),
                float(np.abs(learned.delta).max()),
                learned.delta,
                _metrics(adaptive_scores, cfg.fpr),
            )
            if beta == cfg.adaptive_beta:
                scores["adaptive backdoor"] = adaptive_scores
                x_adaptive = np.where(is_poison[:, None], learned(xtr), xtr)

        y_adaptive = np.where(is_poison, cfg.target, ytr)
        filters = {}
        for name, m, xx, yy in (
            ("backdoor", backdoor, xp, yp),
            ("adaptive backdoor", adaptive[cfg.adaptive_beta][0], x_adaptive, y_adaptive),
        ):
            s = filter_scores(m, xx, yy, cfg.filter_components, derived_seed(seed, FILTERS))
            filters[name] = {
                f: FilterRun(v, **detection_metrics(v[~is_poison], v[is_poison], cfg.fpr)) for f, v in s.items()
            }
        reliance_seed = derived_seed(seed, RELIANCE)
        return MonitorRun(
            seed=seed,
            accuracy={
                "clean": accuracy(clean),
                "backdoor": accuracy(backdoor),
                "shortcut": accuracy(shortcut),
                "shortcut (marked inputs)": accuracy(shortcut, marked),
            },
            attack_success={
                "clean (control)": attack_success_rate(clean, xt, yt, cfg.target, trigger),
                "backdoor": attack_success_rate(backdoor, xt, yt, cfg.target, trigger),
            },
            marker_reliance={
                name: marker_reliance(m, xt, yt, cfg.sizes[-1], cfg.marker_value, reliance_seed)
                for name, m in (("clean (control)", clean), ("shortcut", shortcut))
            },
            students={t: stats(s) for t, s in students.items()},
            control_students={t: stats(s) for t, s in control_students.items()},
            scores=scores,
            adaptive=adaptive_runs,
            metrics={task: _metrics(scores[task], cfg.fpr) for task in TASKS},
            filters=filters,
            is_poison=is_poison,
        )
