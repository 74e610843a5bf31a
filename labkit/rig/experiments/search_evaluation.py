"""Notebook 05c: the closed-loop search against 05a's grid and a random design, on simulated worms drawn from a prior.

Abstract 5 (Pai, arXiv 2112.01650) calls the stimulation space "exceedingly large" and looks to an AI system to
search it; its first phase maps a grid. Here each design runs through the real driver (``Rig("rigsim://…")``) on
``n_worms`` simulated worms whose hidden numbers come from :data:`THRESHOLD_RANGES` (strength–duration, ours) and
labkit.rig.analysis.validation.WORM_RANGES (velocities, spike sizes, artefact, noise), drawn from ``worm_seed``:

- ``grid``: 05a's sweep (its voltages × periods × repeats, in 05a's seeded order), after template pulses at 05a's
  periods;
- ``random``: as many pulses, V_pp uniform on the search space (10 mV steps), the period uniform over its periods;
- ``closed_loop``: labkit.rig.experiments.search.ClosedLoopDesign, as many pulses.

Every design's trials are classified by 05a's analysis and fitted by the same model
(labkit.rig.experiments.strength_duration), so only the choice of stimuli differs. How accurately each session
learned its worm (learning curve, pulses to accuracy, the classification against the simulator's record) is measured
by labkit.rig.experiments.search_accuracy; here they are summarised over the worms, with the claims.

Selective recruitment (task b): among the space's candidates, the lowest-charge stimulus with P(MGF) ≥ 0.95 and
P(LGF) ≤ 0.05. The *exhaustive* answer uses the worm's true thresholds and jitter (the limit of exhaustive search
with many repeats per candidate); a design's answer uses its fitted models at the end. A design *matches* when its
stimulus truly meets both conditions and costs at most ``charge_slack`` × the exhaustive answer's charge.

The sessions run ``_SESSIONS_IN_FLIGHT`` at a time: each spends most of its time waiting for the paced device clock,
and each is deterministic on its own (held device clock, seeded worm), so the results do not depend on the overlap.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm
from tqdm.auto import tqdm

from labkit import repro
from labkit.config import ConfigError, NotebookConfig, fraction, param, positive_float, positive_int, tuple_of
from labkit.rig.analysis.validation import WORM_RANGES
from labkit.rig.experiments.mapping import MappingConfig, schedule
from labkit.rig.experiments.search import (
    FIBRE_NAMES,
    ClosedLoopDesign,
    PlannedDesign,
    SafetyBudget,
    SearchSpace,
    Trials,
    charge_v_ms,
    run_search,
)
from labkit.rig.experiments.search_accuracy import (
    WormRun,
    agreement,
    final_accuracy,
    learning_curve,
    pulses_to_accuracy,
)
from labkit.rig.experiments.strength_duration import threshold_vpp
from labkit.rig.host.driver import Rig
from labkit.rig.simulator.holding_clock import HoldingClock
from labkit.seeds import derived_seed

__all__ = [
    "THRESHOLD_RANGES",
    "METHODS",
    "EvaluationConfig",
    "draw_worm",
    "EvaluationResult",
    "run_worm",
    "run",
    "median_ci",
    "selective_answer",
    "true_probability",
    "exhaustive_answer",
    "matches",
    "MethodSummary",
    "summarise",
    "efficiency",
    "pulses_table",
    "example_run",
]

#: ours: uniform ranges of the hidden strength–duration numbers, around the intact worm's MGF (Rb 1.0 V, c 0.06 ms,
#: labkit.rig.simulator.worm) with the LGF above it by the dissected cord's ratios (Rb ×1.3, c ×1.25) ± their spread
THRESHOLD_RANGES = {
    "mgf_rheobase_v": (0.7, 1.3),
    "mgf_chronaxie_ms": (0.04, 0.10),
    "lgf_rheobase_ratio": (1.15, 1.45),
    "lgf_chronaxie_ratio": (1.1, 1.4),
    "threshold_jitter_cv": (0.01, 0.03),
}
METHODS = ("grid", "random", "closed_loop")
_SESSIONS_IN_FLIGHT = 3
_MIN_REAL_REST_S = 0.12  # real time between pulses: the host's rate limit (0.1 s) and room for its jitter
_WORM, _RANDOM_DESIGN, _RIG, _BOOTSTRAP = 1, 2, 3, 4  # repro substream keys under worm_seed, one per purpose


@dataclass(frozen=True)
class EvaluationConfig(NotebookConfig):
    """Notebook 05c. Thresholds of the claims are fixed here, before the reported run."""

    n_worms: int = param(24, positive_int)
    worm_seed: int = param(6203, positive_int)  # fixed before the reported run; never used in development
    n_pulses: int = param(90, positive_int)  # per design after its templates: 05a's sweep size
    vpp_range: tuple = param((1.0, 6.0), tuple_of(positive_float, min_len=2))
    periods_ms: tuple = param((0.5, 1.0, 2.0, 6.7), tuple_of(positive_float))
    template_vpp: float = param(1.2, positive_float)  # below every prior worm's MGF threshold (>= 1.4 V_pp)
    template_repeats: int = param(3, positive_int)
    rest_s: float = param(0.5, positive_float)  # device time between pulses (2/s, 05a's fastest; limit 10/s)
    max_charge_v_ms: float = param(600.0, positive_float)
    speed: float = param(4.0, positive_float)  # device time per real time; the host keeps >= 0.1 s real
    #                                                 time between pulses (its copy of the rate limit)
    fs_hz: float = param(30000.0, positive_float)
    tolerance: float = param(0.10, fraction)  # "within 10 % of truth"
    pulse_fraction: float = param(1 / 3, fraction)  # closed loop needs <= this share of the grid's pulses
    match_fraction: float = param(0.9, fraction)  # selective recruitment matches exhaustive search on >= this
    charge_slack: float = param(1.1, positive_float)
    n_boot: int = param(2000, positive_int)

    SCALES = {
        "smoke": dict(n_worms=2, n_pulses=12, n_boot=200),
        "quick": dict(n_worms=6),
        "full": {},
        "paper": dict(n_worms=60),
    }

    def validate(self) -> None:
        if self.rest_s / self.speed < _MIN_REAL_REST_S:
            raise ConfigError(
                f"EvaluationConfig: bad value for 'speed': {self.speed!r}; allowed: at most rest_s / "
                f"{_MIN_REAL_REST_S} = {self.rest_s / _MIN_REAL_REST_S:g} (the host keeps >= 0.1 s of "
                "real time between pulses, and its timing jitters)"
            )
        if not self.vpp_range[0] < self.vpp_range[1] or len(self.vpp_range) != 2:
            raise ConfigError(
                f"EvaluationConfig: bad value for 'vpp_range': {self.vpp_range!r}; allowed: (low, high) with low < high"
            )

    def space(self) -> SearchSpace:
        return SearchSpace(vpp_range=tuple(self.vpp_range), periods_ms=tuple(self.periods_ms))

    def budget(self, n_templates: int) -> SafetyBudget:
        return SafetyBudget(
            max_pulses=self.n_pulses + n_templates, max_charge_v_ms=self.max_charge_v_ms, min_rest_s=self.rest_s
        )


def draw_worm(seed: int, i: int) -> dict:
    """Worm i's hidden numbers (labkit.rig.simulator.worm.WormParams fields), drawn from its own substream."""
    g = repro.rng(seed, _WORM, i)
    w = {k: float(g.uniform(lo, hi)) for k, (lo, hi) in {**WORM_RANGES, **THRESHOLD_RANGES}.items()}
    w["lgf_rheobase_v"] = w["mgf_rheobase_v"] * w.pop("lgf_rheobase_ratio")
    w["lgf_chronaxie_ms"] = w["mgf_chronaxie_ms"] * w.pop("lgf_chronaxie_ratio")
    return w


@dataclass
class EvaluationResult:
    runs: list = field(default_factory=list)
    worms: list = field(default_factory=list)


class _HeldPacer:
    """Deterministic pacing on the simulator: device time stops at each onset (``first_s`` + k ``rest_s``, on the
    10 ms grid) until that pulse has gone, so the analysis and the design take no device time. The hold for pulse
    k + 1 is set before pulse k goes (labkit.rig.simulator.holding_clock)."""

    def __init__(self, clock: HoldingClock, first_s: float, rest_s: float):
        self.clock, self.first_s, self.rest_s = clock, first_s, rest_s

    def _hold(self, k: int) -> None:
        self.clock.hold(int(round((self.first_s + k * self.rest_s) * 1e6 / 10_000)) * 10_000, k + 1)

    def wait(self, k: int) -> None:
        if k == 0:
            self._hold(0)
        self._hold(k + 1)
        self.clock.wait(k + 1, timeout_s=60.0)

    def sent(self, k: int) -> None:
        """Nothing to do: the hold for pulse k + 1 was set before pulse k went."""


def _design(method: str, cfg: EvaluationConfig, worm: int) -> tuple:
    """The design of ``method`` for worm ``worm`` and the space it searches (the grid's: 05a's voltages and periods)."""
    if method == "grid":
        grid = MappingConfig()
        plan = [(v, p) for _, v, p in schedule(grid) if v != grid.template_vpp][: cfg.n_pulses]
        space = SearchSpace(
            vpp_range=(min(grid.vpp_values), max(grid.vpp_values)), periods_ms=tuple(grid.period_values_ms)
        )
        return PlannedDesign(plan), space
    if method == "random":
        g = repro.rng(cfg.worm_seed, _RANDOM_DESIGN, worm)
        return PlannedDesign(
            zip(
                g.uniform(*cfg.vpp_range, cfg.n_pulses).round(2),
                g.choice(np.asarray(cfg.periods_ms, dtype=float), cfg.n_pulses),
            )
        ), cfg.space()
    return ClosedLoopDesign(cfg.space(), cfg.n_pulses), cfg.space()


def selective_answer(p_mgf, p_lgf, vpp, period_ms) -> tuple | None:
    """The lowest-charge (V_pp, period) with P(MGF) >= 0.95 and P(LGF) <= 0.05, or None."""
    ok = (np.asarray(p_mgf) >= 0.95) & (np.asarray(p_lgf) <= 0.05)
    if not ok.any():
        return None
    q = np.where(ok, charge_v_ms(vpp, period_ms), np.inf)
    i = int(np.argmin(q))
    return float(vpp[i]), float(period_ms[i])


def true_probability(truth: dict, fibre: str, vpp, period_ms) -> np.ndarray:
    """P(fire) of the simulator's law: V_pp >= V_th (1 + cv z)."""
    key = fibre.lower()
    th = threshold_vpp(truth[f"{key}_rheobase_v"], truth[f"{key}_chronaxie_ms"], period_ms)
    return norm.cdf((np.asarray(vpp) / th - 1) / truth["threshold_jitter_cv"])


def _within_limits(trials: Trials, limits, budget: SafetyBudget) -> bool:
    v, p, t = (np.asarray(x, dtype=float) for x in (trials.vpp, trials.period_ms, trials.t_start_s))
    return bool(
        np.all((v > 0) & (v <= limits.max_vpp))
        and np.all((p >= limits.min_period_ms) & (p <= limits.max_period_ms))
        and len(v) <= budget.max_pulses
        and trials.charge_v_ms() <= budget.max_charge_v_ms
        and (len(t) < 2 or np.diff(t).min() >= budget.min_rest_s - 1e-6)
    )


def run_worm(cfg: EvaluationConfig, method: str, worm: int, truth: dict) -> WormRun:
    """One design on worm ``worm`` through ``Rig("rigsim://…")``."""
    design, space = _design(method, cfg, worm)
    analysis = MappingConfig(template_vpp=cfg.template_vpp, template_repeats=cfg.template_repeats)
    n_templates = analysis.template_repeats * len(design.periods_ms)
    budget = cfg.budget(n_templates)
    query = "&".join(f"{k}={v!r}" for k, v in truth.items())
    with Rig(f"rigsim://?seed={derived_seed(cfg.worm_seed, _RIG, worm)}&fs={cfg.fs_hz:g}&{query}") as rig:
        clock = HoldingClock(rig.serial.sim, cfg.speed)
        rig.serial.sim.set_clock(clock)
        rig.configure(sample_rate=cfg.fs_hz, channels=4)
        rig.arm()
        trials = run_search(
            rig, design, space=space, budget=budget, analysis=analysis, pace=_HeldPacer(clock, 1.0, cfg.rest_s)
        )
        rig.disarm()
        limits = rig.info.limits
        record = [e["fibres"] for e in rig.serial.sim.worm.events() if e["kind"] == "pulse"]
    v, p = cfg.space().candidates()
    models = trials.fitted
    answer = selective_answer(models["MGF"].probability(v, p), models["LGF"].probability(v, p), v, p)
    fired = {f: np.array([f in r for r in record[: len(trials)]], dtype=bool) for f in FIBRE_NAMES}
    return WormRun(
        method,
        worm,
        trials,
        learning_curve(trials, truth),
        n_templates,
        answer,
        _within_limits(trials, limits, budget),
        fired,
    )


def run(cfg: EvaluationConfig) -> EvaluationResult:
    """Every design on every worm (module docstring)."""
    worms = [draw_worm(cfg.worm_seed, i) for i in range(cfg.n_worms)]
    jobs = [(method, i) for i in range(cfg.n_worms) for method in METHODS]
    with ThreadPoolExecutor(_SESSIONS_IN_FLIGHT) as pool:
        runs = list(
            tqdm(
                pool.map(lambda job: run_worm(cfg, job[0], job[1], worms[job[1]]), jobs),
                total=len(jobs),
                desc="sessions",
            )
        )
    return EvaluationResult(runs=runs, worms=worms)


def median_ci(x, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Median of ``x`` (inf allowed) and its 95 % bootstrap percentile interval."""
    x = np.asarray(x, dtype=float)
    g = repro.rng(seed, _BOOTSTRAP)
    boots = np.median(x[g.integers(0, len(x), (n_boot, len(x)))], axis=1)
    lo, hi = np.quantile(boots, [0.025, 0.975], method="inverted_cdf")  # no interpolation: inf stays inf
    return float(np.median(x)), float(lo), float(hi)


@dataclass
class MethodSummary:
    """One design over all worms: pulses to accuracy per fibre (per worm, inf = never), their median with its
    bootstrap interval, the final errors (median per target), the selective-recruitment matches, limits kept."""

    pulses: dict  # fibre -> array (n_worms,)
    pulses_to_grid: dict  # fibre -> array (n_worms,): pulses until both numbers are as good as the grid's at
    #                              its end, on the same worm, and stay so (the grid: until it reaches its own end)
    median: dict  # fibre -> (median, lo, hi)
    total_pulses: float  # pulses delivered per worm (templates included), median
    final_error: np.ndarray  # (4,) median over worms of the last errors
    matches: np.ndarray  # (n_worms,) bool
    within_limits: bool
    agreement: dict  # fibre -> (calls that agree with the simulator's record, LGF/MGF detected when it
    #                              fired, called when it did not), shares over the non-template trials of all worms


def exhaustive_answer(truth: dict, cfg: EvaluationConfig) -> tuple | None:
    """Task b's answer from the worm's true thresholds (see the module docstring)."""
    v, p = cfg.space().candidates()
    return selective_answer(true_probability(truth, "MGF", v, p), true_probability(truth, "LGF", v, p), v, p)


def matches(answer, exhaustive, truth: dict, slack: float) -> bool:
    """A design's stimulus truly recruits the MGF alone and costs at most ``slack`` × the exhaustive answer's charge."""
    if answer is None or exhaustive is None:
        return answer is None and exhaustive is None
    v, p = answer
    alone = true_probability(truth, "MGF", v, p) >= 0.95 and true_probability(truth, "LGF", v, p) <= 0.05
    return bool(alone and charge_v_ms(v, p) <= slack * charge_v_ms(*exhaustive))


def summarise(result: EvaluationResult, cfg: EvaluationConfig) -> dict[str, MethodSummary]:
    """Per method (:data:`METHODS`), over the worms: :class:`MethodSummary`."""
    exhaustive = [exhaustive_answer(w, cfg) for w in result.worms]
    by_method = {m: sorted((r for r in result.runs if r.method == m), key=lambda r: r.worm) for m in METHODS}
    out = {}
    for method, runs in by_method.items():
        pulses = {f: np.array([pulses_to_accuracy(r, f, cfg.tolerance) for r in runs]) for f in FIBRE_NAMES}
        to_grid = {
            f: np.array([pulses_to_accuracy(r, f, final_accuracy(grid, f)) for r, grid in zip(runs, by_method["grid"])])
            for f in FIBRE_NAMES
        }
        out[method] = MethodSummary(
            pulses=pulses,
            pulses_to_grid=to_grid,
            median={f: median_ci(x, cfg.n_boot, cfg.worm_seed) for f, x in pulses.items()},
            total_pulses=float(np.median([len(r.trials) for r in runs])),
            final_error=np.nanmedian(np.array([r.errors[-1] for r in runs]), axis=0),
            matches=np.array(
                [matches(r.answer, exhaustive[r.worm], result.worms[r.worm], cfg.charge_slack) for r in runs]
            ),
            within_limits=all(r.within_limits for r in runs),
            agreement=agreement(runs),
        )
    return out


def efficiency(summary: dict, fibre: str, against: str, cfg: EvaluationConfig) -> dict:
    """The claim that the closed loop learns ``fibre``'s curve with fewer pulses than ``against``:

    - ``"grid_accuracy"``: it reaches the grid's final accuracy on each worm (both numbers at least as good as the
      grid's at its end) with at most ``pulse_fraction`` of the pulses the grid needed to get there (medians over
      worms; the upper end of the closed loop's 95 % bootstrap interval; where the grid's estimate is undefined at
      the end, any defined estimate is as good, and the grid counts with every pulse it delivered);
    - ``"grid"``: it reaches ``tolerance`` with at most ``pulse_fraction`` of the grid's pulses (likewise), where a
      worm on which the grid never gets there counts with every pulse the grid delivered (in the grid's favour);
    - ``"random"`` (the control): the upper end of its interval for ``tolerance`` is below the lower end of the
      random design's.

    Returns the claim's text, its verdict and the numbers behind it."""
    cl = summary["closed_loop"]
    if against == "grid_accuracy":
        x = cl.pulses_to_grid[fibre]
        grid = np.minimum(summary["grid"].pulses_to_grid[fibre], summary["grid"].total_pulses)
        med, lo, hi = median_ci(x, cfg.n_boot, cfg.worm_seed)
        return {
            "claim": f"{fibre} strength–duration: the closed loop reaches the grid's final accuracy (rheobase and "
            f"chronaxie, per worm) with at most {cfg.pulse_fraction:.2g} of the pulses the grid needed "
            "(median worm, upper 95 % bootstrap bound)",
            "passed": bool(hi <= cfg.pulse_fraction * np.median(grid)),
            "closed_loop_median": med,
            "closed_loop_ci": (lo, hi),
            "grid_median": float(np.median(grid)),
            "closed_loop_never": int(np.isinf(x).sum()),
        }
    lo_cl, hi_cl = cl.median[fibre][1:]
    if against == "grid":
        total = summary["grid"].total_pulses
        grid = np.median(np.minimum(summary["grid"].pulses[fibre], total))
        return {
            "claim": f"{fibre} strength–duration: the closed loop reaches rheobase and chronaxie within "
            f"{cfg.tolerance:.0%} with at most {cfg.pulse_fraction:.2g} of the grid's pulses (median worm, "
            "upper 95 % bootstrap bound; a worm the grid never gets there on counts with all its pulses)",
            "passed": bool(hi_cl <= cfg.pulse_fraction * grid),
            "closed_loop_median": cl.median[fibre][0],
            "closed_loop_ci": (lo_cl, hi_cl),
            "grid_median": float(grid),
            "grid_never": int(np.isinf(summary["grid"].pulses[fibre]).sum()),
            "closed_loop_never": int(np.isinf(cl.pulses[fibre]).sum()),
        }
    med, lo, hi = summary[against].median[fibre]
    return {
        "claim": f"{fibre} strength–duration: the closed loop needs fewer pulses than the {against} design of the "
        f"same size to reach {cfg.tolerance:.0%} (upper 95 % bound of its median below the lower bound of "
        f"the {against} design's)",
        "passed": bool(hi_cl < lo),
        "closed_loop_ci": (lo_cl, hi_cl),
        f"{against}_median": med,
        f"{against}_ci": (lo, hi),
        f"{against}_never": int(np.isinf(summary[against].pulses[fibre]).sum()),
    }


def pulses_table(summary: dict) -> dict:
    """Per method and fibre: median pulses to accuracy [95 % bootstrap interval] and the worms that never got there."""
    return {
        m: {
            f: f"{s.median[f][0]:.0f} [{s.median[f][1]:.0f}, {s.median[f][2]:.0f}], never on "
            f"{int(np.isinf(s.pulses[f]).sum())}/{len(s.pulses[f])}"
            for f in FIBRE_NAMES
        }
        for m, s in summary.items()
    }


def example_run(result: EvaluationResult) -> WormRun:
    """The closed-loop session to show: the first worm on which both fibres' models are defined at the end (else the
    first worm)."""
    runs = [r for r in result.runs if r.method == "closed_loop"]
    return next((r for r in runs if all(m.defined for m in r.trials.fitted.values())), runs[0])
