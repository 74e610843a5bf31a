"""Auto-map: the closed-loop search of the stimulation space (labkit.rig.experiments.search) run from the live panel
on the controller's connected, armed rig, while the panel draws what it learns (labkit.rig.ui.plots.AutoMapPlot).

    am = AutoMap(ctl, n_pulses=40)      # ctl: a connected labkit.rig.ui.controller.RigController
    ctl.arm(); am.start()               # refused while the pulse schedule runs (Start): STOP first
    am.view                             # the newest AutoMapView: trials, fired or not, each fibre's model
    am.wait()                           # until the search ends, then the big stop (recording closed, NWB written)
    ctl.stop()                          # or at any time: the big STOP, which ends the search too

One stimulus thread. The search runs as the controller's stimulus task (``RigController.start(task=...)``), in place
of the pulse schedule and never beside it: :meth:`AutoMap.start` refuses while the schedule runs (and the panel's
Start refuses while Auto-map runs). Its pulses go through :meth:`RigController.pulse`, so the panel's counters,
sweeps and session list them like the schedule's.

Safety. The design is labkit.rig.experiments.search.ClosedLoopDesign over ``space`` (checked against the device's
limits before anything is sent) under a ``SafetyBudget``; a RealTimePacer holds each pulse until ``rest_s`` ≥ 0.25 s
after the previous one went. STOP (``RigController.stop``) sets the search's stop event —
the search checks it before each pulse, and every read raises once it is set, so a search waiting for an epoch ends
at once — and stops the device: the thread ends within one trial (the rest, or the analysis under way). A search
that ends on its own (design done, budget spent) or fails (the rig stopped answering: RigError or SearchError; any
other error) makes the device safe at once from its own thread (device STOP, the controller disarmed) and says why;
:meth:`AutoMap.settle` then runs the big stop — the recording closed, its NWB file written — on the caller's thread,
the thread of every other STOP: the panel's refresh tick, or :meth:`AutoMap.wait`.

Recording. While the controller records, every classified trial is appended to the session folder's
``search_trials.jsonl`` (labkit.rig.host.search_log), which becomes the NWB file's trials table.
"""

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from labkit.rig._checks import check_value, is_integer, is_real
from labkit.rig.experiments.mapping import MappingConfig
from labkit.rig.experiments.search import (
    ClosedLoopDesign,
    RealTimePacer,
    SafetyBudget,
    SearchError,
    SearchSpace,
    Trials,
    run_search,
)
from labkit.rig.experiments.search_evaluation import EvaluationConfig
from labkit.rig.firmware.limits import RigError, SafetyLimits
from labkit.rig.host.search_log import SearchTrialWriter

__all__ = ["MIN_REST_S", "AutoMapView", "AutoMap"]

MIN_REST_S = 0.25  # s: the shortest rest between Auto-map's pulses (ours; the budget's default rest)


@dataclass(frozen=True)
class AutoMapView:
    """The search after one classified trial, copied for drawing (the search goes on mutating its Trials)."""

    vpp: np.ndarray  # (n,) V_pp requested, one per pulse delivered
    period_ms: np.ndarray  # (n,) period requested
    template: np.ndarray  # (n,) bool: a template (sub-threshold) pulse
    mgf: np.ndarray  # (m,) bool: the MGF fired, for the m ≤ n trials classified
    lgf: np.ndarray  # (m,) bool: the LGF fired
    estimates: dict  # {fibre: (Rb V, c ms, se Rb, se c)} after the newest trial (NaN while undefined)
    models: dict  # {fibre: FibreModel} fitted on the classified non-template trials
    charge_v_ms: float  # delivered so far (labkit.rig.experiments.search.charge_v_ms)
    budget: SafetyBudget

    @classmethod
    def of(cls, trials: Trials, budget: SafetyBudget) -> "AutoMapView":
        return cls(
            np.array(trials.vpp, float),
            np.array(trials.period_ms, float),
            np.array(trials.template, bool),
            np.array(trials.mgf, bool),
            np.array(trials.lgf, bool),
            dict(trials.estimates[-1]),
            dict(trials.fitted),
            trials.charge_v_ms(),
            budget,
        )


def _trial_record(trials: Trials, window_ms: tuple) -> dict:
    """The newest classified trial as a line of search_trials.jsonl (labkit.rig.host.search_log)."""
    k = len(trials.estimates) - 1
    record = {
        "trial": k,
        "t_start_s": trials.t_start_s[k],
        "t_stop_s": trials.t_start_s[k] + window_ms[1] / 1e3,
        "vpp_requested": trials.vpp[k],
        "period_ms_requested": trials.period_ms[k],
        "vpp_measured": trials.vpp_measured[k],
        "period_ms_measured": trials.period_ms_measured[k],
        "template": bool(trials.template[k]),
        "mgf_fired": bool(trials.mgf[k]),
        "lgf_fired": bool(trials.lgf[k]),
    }
    for fibre, (rb, c, se_rb, se_c) in trials.estimates[-1].items():
        f = fibre.lower()
        record |= {
            f"{f}_rheobase_v": rb,
            f"{f}_rheobase_se_v": se_rb,
            f"{f}_chronaxie_ms": c,
            f"{f}_chronaxie_se_ms": se_c,
        }
    return record


class _SearchRig:
    """The controller's rig as the search sees it (module docstring, Safety): pulses through the controller; once
    ``stop`` is set, every pulse and read raises."""

    def __init__(self, controller, stop: threading.Event):
        self._ctl, self._stop, self._rig = controller, stop, controller.rig
        self.info, self.fs_hz, self.n_channels = self._rig.info, self._rig.fs_hz, self._rig.n_channels

    @property
    def failure(self) -> str | None:
        return self._rig.failure

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise RigError("STOP pressed: the search ends")

    def stimulate(self, vpp: float, period_ms: float):
        self._check_stop()
        return self._ctl.pulse(vpp, period_ms)

    def read_since(self, start, max_n: int):
        self._check_stop()
        return self._rig.read_since(start, max_n)


class AutoMap:
    """Runs the closed-loop search on ``controller``'s rig (module docstring). ``space``, ``n_pulses`` (after the
    template pulses), ``budget`` and ``analysis`` (05a's MappingConfig: templates, windows, velocities; by default
    with 05c's template voltage, below the MGF threshold of every worm in the simulator's prior — on a real worm,
    set one below its threshold) configure the search; ``rest_s`` is the rest between pulses; ``timeout_s`` how
    long a trial's data may take to arrive.

    ``state``: "idle", "running", "done" (the design or the budget ended it), "stopped" (STOP) or "failed";
    ``message`` says what it is doing or why it ended; ``view`` is the newest :class:`AutoMapView` (None before the
    first trial); ``trials`` the search's Trials (complete once it ended)."""

    def __init__(
        self,
        controller,
        *,
        space: SearchSpace = SearchSpace(),
        n_pulses: int = 40,
        budget: SafetyBudget = SafetyBudget(),
        analysis: MappingConfig | None = None,
        rest_s: float = MIN_REST_S,
        timeout_s: float = 2.0,
    ):
        check_value(
            "AutoMap",
            "n_pulses",
            is_integer(n_pulses) and n_pulses >= 1,
            n_pulses,
            "an integer >= 1 (pulses after the template pulses)",
        )
        lowest = max(MIN_REST_S, budget.min_rest_s)
        check_value(
            "AutoMap",
            "rest_s",
            is_real(rest_s) and lowest <= rest_s < math.inf,
            rest_s,
            f"a finite number >= {lowest:g} s (the safe rest, and the budget's min_rest_s)",
        )
        check_value(
            "AutoMap",
            "timeout_s",
            is_real(timeout_s) and 0 < timeout_s < math.inf,
            timeout_s,
            "a finite number of seconds > 0",
        )
        self.ctl, self.space, self.n_pulses, self.budget = controller, space, int(n_pulses), budget
        if analysis is None:
            analysis = MappingConfig(template_vpp=EvaluationConfig().template_vpp, template_repeats=2)
        self.analysis = analysis
        self.rest_s, self.timeout_s = float(rest_s), float(timeout_s)
        self.state, self.message = "idle", "press Arm, then Auto-map"
        self.view: AutoMapView | None = None
        self.trials: Trials | None = None
        self.updates = 0  # changes of view or state so far (a panel redraws on change)
        self._ended = threading.Event()
        self._ended.set()
        self._settled = True
        self._stop: threading.Event | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self, record: bool = True) -> None:
        """Start the search on the controller's connected, armed rig (and, with ``record``, a new session folder);
        refused, naming the conflict, while the pulse schedule or another search runs."""
        ctl = self.ctl
        if self.running:
            raise RigError("Auto-map is already running: press STOP to end it")
        if ctl.state == "running":
            raise RigError(
                "the pulse schedule (Start) is running: press STOP before Auto-map (the schedule and the "
                "search never stimulate together)"
            )
        if ctl.rig is None:
            raise RigError("not connected: press Connect, then Arm, before Auto-map")
        if not ctl.armed:
            raise RigError("not armed: press Arm before Auto-map (its first pulse goes at once)")
        self._check_space(ctl.limits)
        self.view, self.trials, self._settled = None, None, False
        self._set("running", "waiting for the stream")
        self._ended.clear()
        try:
            ctl.start(record=record, task=self._run)
        except BaseException as e:
            self._settled = True
            self._set("failed", f"could not start: {type(e).__name__}: {e}")
            self._ended.set()
            raise

    def settle(self) -> None:
        """After a search that ended on its own (done, budget spent, failed): the big stop (``RigController.stop``:
        recording closed, NWB written), on the caller's thread. Nothing while the search runs, after STOP ended it
        (that stop did the rest), or when already settled."""
        if not self._ended.is_set() or self._settled:
            return
        self._settled = True
        if self._stop is not None and self._stop.is_set():
            return
        try:
            self.ctl.stop()
        except RigError:  # a failed rig cannot answer STOP; the recording is closed all the same
            pass
        finally:
            self.ctl.message = f"Auto-map: {self.message} · {self.ctl.message}"

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the search ends (at most ``timeout`` s), then :meth:`settle`; True if it ended."""
        ended = self._ended.wait(timeout)
        if ended:
            self.settle()
        return ended

    def _check_space(self, limits: SafetyLimits) -> None:
        """The whole search space, templates included, inside the device's hard limits — before anything is sent."""
        periods, lo, hi = self.space.periods_ms, min(self.space.vpp_range), max(self.space.vpp_range)
        if not (
            0 < min(lo, self.analysis.template_vpp)
            and max(hi, self.analysis.template_vpp) <= limits.max_vpp
            and limits.min_period_ms <= min(periods)
            and max(periods) <= limits.max_period_ms
        ):
            raise RigError(
                f"Auto-map's space (V_pp {lo:g} to {hi:g}, templates at {self.analysis.template_vpp:g}; "
                f"periods {', '.join(f'{p:g}' for p in periods)} ms) leaves the device's limits; allowed: "
                f"0 < V_pp <= {limits.max_vpp:g}, periods {limits.min_period_ms:g} to "
                f"{limits.max_period_ms:g} ms"
            )
        if self.rest_s < 1.0 / limits.max_rate_hz:
            raise RigError(
                f"rest_s={self.rest_s:g} s is shorter than the device allows; allowed: at least "
                f"{1.0 / limits.max_rate_hz:g} s (max_rate_hz={limits.max_rate_hz:g})"
            )

    def _set(self, state: str, message: str) -> None:
        self.state, self.message = state, message
        self.updates += 1

    def _run(self, stop: threading.Event) -> None:
        """The stimulus task (controller's stimulus thread): the search, then the outcome (module docstring)."""
        self._stop, device = stop, self.ctl.rig
        rig = _SearchRig(self.ctl, stop)
        log = None
        try:
            log = SearchTrialWriter(self.ctl.sessions[-1].session_dir) if self.ctl.recording else None
            self._await_stream(rig, stop)
            self._set("running", "template pulses (sub-threshold, for the artefact template)")
            self.trials = run_search(
                rig,
                ClosedLoopDesign(self.space, self.n_pulses),
                space=self.space,
                budget=self.budget,
                analysis=self.analysis,
                pace=RealTimePacer(self.rest_s),
                stop=stop,
                on_trial=lambda trials: self._on_trial(trials, log),
                timeout_s=self.timeout_s,
            )
            failure = None
        except Exception as e:  # RigError, SearchError, or a defect: never leave the device armed
            failure = f"{type(e).__name__}: {e}"
        try:
            if log is not None:
                log.close()
        except OSError as e:
            failure = failure or f"{type(e).__name__}: {e}"
        finally:
            self._end(stop, device, failure)

    def _end(self, stop: threading.Event, device, failure: str | None) -> None:
        """The outcome: after STOP, nothing to do; else the device made safe at once, and why it ended."""
        try:
            n = 0 if self.trials is None else len(self.trials.estimates)
            if stop.is_set():
                self._set("stopped", f"stopped by STOP after {n} trials")
                return
            safe = "; device STOP sent"
            try:
                device.stop()  # abort, disarm, stop the stream
            except RigError:
                safe = ""  # a failed rig: its driver sent STOP, or the device's watchdog disarms it
            self.ctl.armed = False
            if failure is None:
                self._set("done", f"done after {n} trials (the design or the budget ended it){safe}")
            else:
                self._set("failed", f"ended after {n} trials: {failure}{safe}")
        finally:
            self._ended.set()

    def _await_stream(self, rig: _SearchRig, stop: threading.Event) -> None:
        """Hold the first pulse until the stream holds its epoch's pre-stimulus part (a stream just (re)started
        does not)."""
        need = int(math.ceil(max(0.0, -self.analysis.window_ms[0]) / 1e3 * rig.fs_hz)) + 1
        deadline = time.monotonic() + self.timeout_s
        while len(rig.read_since(None, need)[1]) < need:
            if time.monotonic() > deadline:
                raise SearchError(f"no data within {self.timeout_s:g} s: the rig is not streaming")
            stop.wait(0.01)

    def _on_trial(self, trials: Trials, log: SearchTrialWriter | None) -> None:
        """After each classified trial (search thread): record it, then publish a copy for drawing."""
        if log is not None:
            log.write(_trial_record(trials, self.analysis.window_ms))
        self.trials, self.view = trials, AutoMapView.of(trials, self.budget)
        k = len(trials.estimates) - 1
        fired = [f for f, hit in (("MGF", trials.mgf[k]), ("LGF", trials.lgf[k])) if hit]
        self._set(
            "running",
            f"trial {k + 1}{' (template)' if trials.template[k] else ''}: {trials.vpp[k]:.2f} V_pp "
            f"at {trials.period_ms[k]:g} ms, {' + '.join(fired) or 'no fibre'} fired",
        )
