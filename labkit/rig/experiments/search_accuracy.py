"""How accurately one design learned one simulated worm, in notebook 05c's evaluation: the learning curve, pulses to
accuracy, the final errors and how well the classification agrees with what the simulator really fired.

The learning curve of a design is the error of the model (labkit.rig.experiments.strength_duration) fitted to its
first n trials; errors are relative, |Rb̂ / Rb − 1| and |ĉ / c − 1| per fibre. The classification is also scored
against the simulator's own record of the fibres each pulse fired.

The sessions, their summary over worms and the claims are in labkit.rig.experiments.search_evaluation.
"""

import math
from dataclasses import dataclass

import numpy as np

from labkit.rig.experiments.search import FIBRE_NAMES, Trials
from labkit.rig.experiments.strength_duration import FibreModel

__all__ = ["WormRun", "learning_curve", "pulses_to_accuracy", "final_accuracy", "agreement"]


@dataclass
class WormRun:
    """One design on one worm: its trials and the relative errors after each non-template trial."""

    method: str
    worm: int
    trials: Trials
    errors: np.ndarray  # (n, 4): |Rb/Rb - 1|, |c/c - 1| for MGF, then LGF; NaN while undefined
    n_templates: int
    answer: tuple | None  # selective recruitment: (V_pp, period) or None
    within_limits: bool
    fired: dict  # the simulator's record: fibre -> (n_trials,) bool, what each pulse really fired


def learning_curve(trials: Trials, truth: dict) -> np.ndarray:
    """Relative errors of the models fitted to the first n non-template trials, n = 1 … (final classification)."""
    sweep = ~np.asarray(trials.template, dtype=bool)
    v, p = np.asarray(trials.vpp_measured)[sweep], np.asarray(trials.period_ms_measured)[sweep]
    fired = {f: trials.fired(f)[sweep] for f in FIBRE_NAMES}
    out = np.full((len(v), 4), np.nan)
    for n in range(1, len(v) + 1):
        for j, f in enumerate(FIBRE_NAMES):
            m = FibreModel.fit(v[:n], p[:n], fired[f][:n])
            key = f.lower()
            out[n - 1, 2 * j] = abs(m.rheobase_v / truth[f"{key}_rheobase_v"] - 1)
            out[n - 1, 2 * j + 1] = abs(m.chronaxie_ms / truth[f"{key}_chronaxie_ms"] - 1)
    return out


def pulses_to_accuracy(run: WormRun, fibre: str, tolerance) -> float:
    """Total pulses (templates included) from which on both Rb and c of ``fibre`` stay within ``tolerance`` (one
    relative error for both, or one per number); inf if never (undefined estimates never count)."""
    j = 2 * FIBRE_NAMES.index(fibre)
    ok = np.all(run.errors[:, j : j + 2] <= np.asarray(tolerance, dtype=float), axis=1)
    bad = np.flatnonzero(~ok)
    first = 0 if not len(bad) else bad[-1] + 1
    return math.inf if first >= len(ok) else float(run.n_templates + first + 1)


def final_accuracy(run: WormRun, fibre: str) -> np.ndarray:
    """The relative errors (Rb, c) of ``fibre`` at the end of ``run``; inf where undefined."""
    j = 2 * FIBRE_NAMES.index(fibre)
    return np.nan_to_num(run.errors[-1, j : j + 2], nan=math.inf)


def agreement(runs: list) -> dict:
    """Per fibre: (share of calls that agree with the simulator's record, share detected when it fired, share called
    when it did not fire), over the non-template trials of ``runs``."""
    out = {}
    for fibre in FIBRE_NAMES:
        sweep = [~np.asarray(r.trials.template, dtype=bool) for r in runs]
        called = np.concatenate([r.trials.fired(fibre)[s] for r, s in zip(runs, sweep)])
        truth = np.concatenate([r.fired[fibre][s] for r, s in zip(runs, sweep)])
        out[fibre] = (
            float(np.mean(called == truth)),
            float(called[truth].mean()) if truth.any() else math.nan,
            float(called[~truth].mean()) if (~truth).any() else math.nan,
        )
    return out
