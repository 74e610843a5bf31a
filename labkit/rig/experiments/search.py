"""Closed-loop search of the stimulation space through the driver alone: each pulse is chosen from the responses so far.

The loop (:func:`run_search`) talks to a :class:`labkit.rig.Rig` only — ``stimulate`` and ``read_since`` — so it runs
unchanged on the simulator (``rigsim://``) and on a board. Every trial:

1. the previous pulse's epoch is read from the driver's ring buffer and every trial so far is classified by 05a's
   analysis (labkit.rig.analysis.sweep.spike_analysis: artefact template from the sub-threshold *template*
   pulses, band-pass, first spike and its fibre by conduction velocity, a slower spike behind it): did the MGF
   fire, did the LGF?;
2. the design proposes the next (V_pp, period); the proposal must lie in the :class:`SearchSpace` (else
   :class:`SearchError`), and the :class:`SafetyBudget` (pulses, charge) and the device's hard limits are checked
   *before* anything is sent; a proposal the budget cannot afford ends the search. The rest between pulses is the
   pacer's: one whose ``rest_s`` is below the budget's is refused at the start, and a pulse that the device clock
   shows came too early (a faulty pacer) stops the search with :class:`SearchError`, as does a pulse the rig
   refuses or does not answer (the error names the pulse; the rig's own error is its ``__cause__``);
3. ``pace.wait(k)`` returns when pulse k may go (the rest since the last pulse is over), ``rig.stimulate``,
   ``pace.sent(k)``; the echo (what the device measured it delivered) is what the models are fitted on.

Designs, all starting with the same template pulses (``template_repeats`` per period at ``template_vpp``):
:class:`PlannedDesign` replays a fixed list (05a's grid, a random design) and :class:`ClosedLoopDesign` fits each
fibre's strength–duration model (labkit.rig.experiments.strength_duration) and, for each fibre in turn, takes the
candidate that most reduces the posterior variance of its (Rb, c). A ``stop`` event ends the search at once (the
caller STOPs the rig); a rig that stops answering raises :class:`SearchError` here — when a pulse gets no echo or
its data stop arriving — or :class:`labkit.rig.RigError` from the driver while waiting on it otherwise.

Every trial is reclassified after each pulse (the noise level is pooled over the session), so an early call can
change as the session grows; the models are always fitted on the current classification.

Charge: one bipolar sine cycle of V_pp and period T moves ∫|V| dt = V_pp T / π V·ms through the electrodes (per
unit conductance); the budget caps the sum over the session.
"""

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from labkit.rig.analysis.sweep import spike_analysis
from labkit.rig.experiments.mapping import MappingConfig
from labkit.rig.experiments.strength_duration import FibreModel, variance_reduction
from labkit.rig.firmware.limits import RigError

__all__ = [
    "charge_v_ms",
    "SearchSpace",
    "SafetyBudget",
    "SearchError",
    "Trials",
    "PlannedDesign",
    "ClosedLoopDesign",
    "RealTimePacer",
    "run_search",
]

FIBRE_NAMES = ("MGF", "LGF")
_CLOCK_TOLERANCE_S = 1e-3  # host and device clocks agree on a rest to better than this (ours)


def charge_v_ms(vpp, period_ms):
    """∫|V(t)| dt over one bipolar sine cycle: V_pp T / π (V·ms)."""
    return np.asarray(vpp, dtype=float) * np.asarray(period_ms, dtype=float) / math.pi


class SearchError(RigError):
    """The search cannot go on: its data stopped arriving, or it was asked for what the budget forbids."""


@dataclass(frozen=True)
class SearchSpace:
    """The stimuli a design may ask for: V_pp on a grid of ``vpp_step`` in ``vpp_range``, at ``periods_ms``."""

    vpp_range: tuple = (1.0, 6.0)
    vpp_step: float = 0.01
    periods_ms: tuple = (0.5, 1.0, 2.0, 6.7)

    def contains(self, vpp: float, period_ms: float) -> bool:
        """Whether (V_pp, period) lies in the space: V_pp within ``vpp_range``, the period one of ``periods_ms``."""
        return bool(
            self.vpp_range[0] <= vpp <= self.vpp_range[1]
            and np.isclose(period_ms, self.periods_ms, rtol=0, atol=1e-9).any()
        )

    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (V_pp, period) of the space, flattened."""
        v = np.round(np.arange(self.vpp_range[0], self.vpp_range[1] + self.vpp_step / 2, self.vpp_step), 6)
        vv, pp = np.meshgrid(v, np.asarray(self.periods_ms, dtype=float))
        return vv.ravel(), pp.ravel()


@dataclass(frozen=True)
class SafetyBudget:
    """What one session may spend: pulses, total charge (V·ms, :func:`charge_v_ms`) and rest between pulses (s)."""

    max_pulses: int = 120
    max_charge_v_ms: float = 1000.0
    min_rest_s: float = 0.25

    def affords(self, trials: "Trials", vpp: float, period_ms: float) -> bool:
        """Whether one more pulse (V_pp, period) stays within the pulse and charge budget."""
        return (
            len(trials) + 1 <= self.max_pulses
            and trials.charge_v_ms() + float(charge_v_ms(vpp, period_ms)) <= self.max_charge_v_ms
        )


@dataclass
class Trials:
    """The session so far, one row per pulse: the request, the device's echo, the classified response and, after
    each trial, each fibre's (Rb, c) estimate with its standard error (NaN while undefined)."""

    vpp: list = field(default_factory=list)
    period_ms: list = field(default_factory=list)
    vpp_measured: list = field(default_factory=list)
    period_ms_measured: list = field(default_factory=list)
    t_start_s: list = field(default_factory=list)
    template: list = field(default_factory=list)
    mgf: list = field(default_factory=list)
    lgf: list = field(default_factory=list)
    estimates: list = field(default_factory=list)  # per trial: {fibre: (Rb, c, se_Rb, se_c)}
    fitted: dict = field(default_factory=dict)  # each fibre's FibreModel after the last classified trial

    def __len__(self) -> int:
        return len(self.vpp)

    def charge_v_ms(self) -> float:
        return float(np.sum(charge_v_ms(self.vpp_measured, self.period_ms_measured))) if len(self) else 0.0

    def fired(self, fibre: str) -> np.ndarray:
        return np.asarray(self.mgf if fibre == "MGF" else self.lgf, dtype=bool)

    def models(self) -> dict[str, FibreModel]:
        """Each fibre's model fitted on the classified non-template trials (what was measured delivered)."""
        m = len(self.mgf)  # the classified trials
        keep = ~np.asarray(self.template[:m], dtype=bool)
        v, p = np.asarray(self.vpp_measured[:m])[keep], np.asarray(self.period_ms_measured[:m])[keep]
        return {f: FibreModel.fit(v, p, self.fired(f)[keep]) for f in FIBRE_NAMES}


class PlannedDesign:
    """A fixed list of (V_pp, period) after the template pulses: 05a's grid, or a random design."""

    def __init__(self, plan):
        self.plan = [(float(v), float(p)) for v, p in plan]
        self.periods_ms = tuple(sorted({p for _, p in self.plan}))

    def __call__(self, trials: Trials, n_templates: int) -> tuple[float, float] | None:
        k = len(trials) - n_templates
        return self.plan[k] if k < len(self.plan) else None


class ClosedLoopDesign:
    """The first pulse at the space's highest V_pp and ``first_period_ms`` (default: the shortest period of at
    least 1 ms — the artefact is over before the spikes arrive, so the first classification is clean, and at the top
    voltage both fibres of an intact worm fire). Then the fibres take turns: pulse k serves fibre k mod 2 with the
    candidate that most reduces *its* posterior variance of (Rb, c) (scaled;
    labkit.rig.experiments.strength_duration.variance_reduction), ties to the lower charge — or the other fibre's
    best when this one has not fired yet; while neither has, the top voltage again at each period in turn. Taking
    turns keeps a fibre that is hard to see from taking every pulse. ``n_pulses`` after the templates."""

    def __init__(self, space: SearchSpace, n_pulses: int, first_period_ms: float | None = None):
        periods = sorted(space.periods_ms)
        if first_period_ms is None:
            first_period_ms = next((p for p in periods if p >= 1.0), periods[-1])
        if first_period_ms not in periods:
            raise ValueError(
                f"ClosedLoopDesign: first_period_ms={first_period_ms!r}; allowed: one of the space's "
                f"periods {tuple(periods)}"
            )
        self.space, self.n_pulses, self.first_period_ms = space, n_pulses, float(first_period_ms)
        self.periods_ms = tuple(space.periods_ms)
        self._v, self._p = space.candidates()
        self._order = np.lexsort((charge_v_ms(self._v, self._p),))

    def __call__(self, trials: Trials, n_templates: int) -> tuple[float, float] | None:
        k = len(trials) - n_templates
        if k >= self.n_pulses:
            return None
        if k == 0:
            return float(max(self.space.vpp_range)), self.first_period_ms
        models = trials.fitted
        turn = k % len(FIBRE_NAMES)
        for fibre in FIBRE_NAMES[turn:] + FIBRE_NAMES[:turn]:
            gain = variance_reduction(models[fibre], self._v, self._p)
            if np.any(gain > 0):
                best = self._order[np.argmax(gain[self._order])]
                return float(self._v[best]), float(self._p[best])
        return float(max(self.space.vpp_range)), float(self.space.periods_ms[k % len(self.space.periods_ms)])


class RealTimePacer:
    """For a board: pulse k goes no sooner than ``rest_s`` after pulse k - 1 went (host clock).

    A pacer is any object with ``rest_s``, ``wait(k)`` (returns when pulse k may go; called right before it is sent)
    and ``sent(k)`` (pulse k went); :func:`run_search` refuses one whose ``rest_s`` is below the budget's rest."""

    def __init__(self, rest_s: float):
        self.rest_s, self._last = rest_s, None

    def wait(self, k: int) -> None:
        if self._last is not None:
            time.sleep(max(0.0, self._last + self.rest_s - time.monotonic()))

    def sent(self, k: int) -> None:
        self._last = time.monotonic()


def _epoch(rig, t_start_s: float, window_ms: tuple, timeout_s: float) -> np.ndarray:
    """The samples (µV, n_window × channels) of 05a's epoch window around a pulse, once they have all arrived."""
    fs = rig.fs_hz
    first = int(np.rint((t_start_s + window_ms[0] / 1e3) * fs))
    n = int(round((window_ms[1] - window_ms[0]) / 1e3 * fs))
    deadline = time.monotonic() + timeout_s
    while True:
        start, counts = rig.read_since(first, max_n=n + int(fs))
        if start > first:
            raise SearchError(f"the epoch of the pulse at {t_start_s:.3f} s left the ring buffer before it was read")
        if len(counts) >= n:
            return counts[:n].astype(float) * rig.info.scale_uv_per_count
        if rig.failure or time.monotonic() > deadline:
            raise SearchError(
                f"no data after the pulse at {t_start_s:.3f} s within {timeout_s} s: the rig stopped "
                f"answering ({rig.failure or 'no samples'})"
            )
        time.sleep(0.005)


def _classify(trials: Trials, epochs_uv: list, fs: float, positions_mm, analysis: MappingConfig) -> None:
    """(Re)classify every trial with 05a's analysis on the stored epochs (laid end to end, each pulse at its
    window's offset): MGF fired = first spike with MGF velocity; LGF fired = a first spike with LGF velocity, or a
    slower spike left behind an MGF one once the MGF is cancelled between the two farthest pairs."""
    n, m = len(epochs_uv[0]), len(epochs_uv)
    stim_s = np.arange(m) * n / fs - analysis.window_ms[0] / 1e3
    r = spike_analysis(
        np.concatenate(epochs_uv),
        fs,
        positions_mm,
        stim_s,
        trials.vpp[:m],
        trials.vpp_measured[:m],
        trials.period_ms[:m],
        trials.period_ms_measured[:m],
        analysis,
    )
    trials.mgf = list(r["fibre"] == "MGF")
    trials.lgf = list((r["fibre"] == "LGF") | ((r["fibre"] == "MGF") & r["slower_spike"]))


def _templates(design, analysis: MappingConfig) -> list[tuple[float, float]]:
    """The template pulses at every period the design will use (``design.periods_ms``)."""
    return [(analysis.template_vpp, float(p)) for p in design.periods_ms for _ in range(analysis.template_repeats)]


def run_search(
    rig,
    design,
    *,
    space: SearchSpace,
    budget: SafetyBudget,
    analysis: MappingConfig,
    pace,
    stop: threading.Event | None = None,
    on_trial=None,
    timeout_s: float = 10.0,
) -> Trials:
    """Run ``design`` on an armed, streaming ``rig`` (module docstring). ``on_trial(trials)`` is called after every
    classified trial (e.g. a live display). Returns the trials; ``stop`` set ends the search before the next pulse."""
    if pace.rest_s < budget.min_rest_s:
        raise SearchError(
            f"run_search: pace.rest_s={pace.rest_s!r} s; allowed: at least the budget's min_rest_s="
            f"{budget.min_rest_s!r} s"
        )
    templates = _templates(design, analysis)
    trials, epochs_uv = Trials(), []
    positions = np.asarray(rig.info.electrode_positions_mm[: rig.n_channels], dtype=float)

    def account(k: int) -> None:
        epochs_uv.append(_epoch(rig, trials.t_start_s[k], analysis.window_ms, timeout_s))
        _classify(trials, epochs_uv, rig.fs_hz, positions, analysis)
        trials.fitted = models = trials.models()
        trials.estimates.append({f: (m.rheobase_v, m.chronaxie_ms, *m.standard_errors()) for f, m in models.items()})
        if on_trial is not None:
            on_trial(trials)

    k = 0
    while not (stop is not None and stop.is_set()):
        if k > 0:
            account(k - 1)
        proposal = templates[k] if k < len(templates) else design(trials, len(templates))
        if proposal is None or not budget.affords(trials, *proposal) or (stop is not None and stop.is_set()):
            break
        if k >= len(templates) and not space.contains(*proposal):
            raise SearchError(
                f"the design asked for (vpp={proposal[0]!r}, period_ms={proposal[1]!r}); allowed: vpp "
                f"in {space.vpp_range} V at a period in {space.periods_ms} ms"
            )
        pace.wait(k)
        if stop is not None and stop.is_set():
            break
        try:
            pulse = rig.stimulate(vpp=proposal[0], period_ms=proposal[1])
        except RigError as e:
            raise SearchError(
                f"pulse {k} (vpp={proposal[0]!r} V, period_ms={proposal[1]!r} ms) failed, the search stops: {e}"
            ) from e
        pace.sent(k)
        if k > 0 and pulse.t_start_s - trials.t_start_s[-1] < budget.min_rest_s - _CLOCK_TOLERANCE_S:
            raise SearchError(
                f"pulse {k} came {pulse.t_start_s - trials.t_start_s[-1]:.3f} s after the previous one "
                f"(device clock); allowed: at least min_rest_s={budget.min_rest_s} s: the pacer is "
                f"faulty, the search stops"
            )
        for name, value in (
            ("vpp", proposal[0]),
            ("period_ms", proposal[1]),
            ("vpp_measured", pulse.vpp_measured),
            ("period_ms_measured", pulse.period_ms_measured),
            ("t_start_s", pulse.t_start_s),
            ("template", k < len(templates)),
        ):
            getattr(trials, name).append(value)
        k += 1
    if len(epochs_uv) < len(trials) and not (stop is not None and stop.is_set()):
        account(len(trials) - 1)  # the last pulse's epoch (a stopped search leaves it out)
    return trials
