"""The closed-loop search loop against a fake rig: the driver's interface over the simulated worm, without the link.

The fake answers ``stimulate`` and ``read_since`` like labkit.rig.Rig (hard limits checked before anything is
delivered, the echo in device time, int16 counts) and can be told to stop answering."""

import threading

import numpy as np
import pytest

from labkit.rig import LimitError, RigError, SafetyLimits
from labkit.rig.experiments.mapping import MappingConfig
from labkit.rig.experiments.search import (
    ClosedLoopDesign,
    PlannedDesign,
    SafetyBudget,
    SearchError,
    SearchSpace,
    charge_v_ms,
    run_search,
)
from labkit.rig.experiments.strength_duration import FibreModel, threshold_vpp, variance_reduction
from labkit.rig.firmware.device import SCALE_UV_PER_COUNT, to_counts
from labkit.rig.firmware.protocol import Waveform
from labkit.rig.host.recording import Pulse
from labkit.rig.simulator.worm import Earthworm

FS = 30000.0
ANALYSIS = MappingConfig(template_vpp=1.2, template_repeats=2)


class _Info:
    scale_uv_per_count = SCALE_UV_PER_COUNT
    limits = SafetyLimits()

    def __init__(self, positions):
        self.electrode_positions_mm = tuple(positions)


class FakeRig:
    """``stimulate`` delivers to an Earthworm at the device time the pacer set; ``read_since`` acquires up to it."""

    def __init__(self, seed=3, silent_after=None, **worm):
        self.worm = Earthworm(fs_hz=FS, seed=seed, **worm)
        self.fs_hz, self.n_channels, self.failure = FS, 4, None
        self.info = _Info(self.worm.electrode_positions_mm)
        self.now_s, self.requests, self.silent_after = 1.0, [], silent_after

    def stimulate(self, vpp, period_ms):
        self.info.limits.check(vpp, period_ms, Waveform.BIPOLAR_SINE)
        self.requests.append((vpp, period_ms))
        r = self.worm.deliver(self.now_s, vpp, period_ms)
        return Pulse(len(self.requests), self.now_s, vpp, r["vpp_measured"], period_ms, r["period_ms_measured"])

    def read_since(self, start, max_n):
        if self.silent_after is not None and len(self.requests) > self.silent_after:
            return start, np.zeros((0, 4), np.int16)  # nothing arrives any more
        return start, to_counts(self.worm.acquire(start, int(self.now_s * FS) - start), SCALE_UV_PER_COUNT)


class Pacer:
    """Pulse k at 1 s + k rest; after it goes, device time runs on to half-way to the next onset."""

    def __init__(self, rig, rest_s=0.25):
        self.rig, self.rest_s = rig, rest_s

    def wait(self, k):
        self.rig.now_s = 1.0 + k * self.rest_s

    def sent(self, k):
        self.rig.now_s = 1.0 + (k + 0.5) * self.rest_s


def _search(rig, design, space=SearchSpace(), budget=SafetyBudget(), **kw):
    return run_search(rig, design, space=space, budget=budget, analysis=ANALYSIS, pace=Pacer(rig), timeout_s=0.2, **kw)


def test_model_recovers_a_known_curve_from_simulated_responses():
    g = np.random.default_rng(0)
    v, p = g.uniform(1.5, 4.0, 400), g.choice([0.5, 1.0, 2.0, 6.7], 400)
    fired = v >= threshold_vpp(1.1, 0.08, p) * (1 + 0.02 * g.standard_normal(400))
    m = FibreModel.fit(v, p, fired)
    assert m.rheobase_v == pytest.approx(1.1, rel=0.02) and m.chronaxie_ms == pytest.approx(0.08, rel=0.1)
    se_rb, se_c = m.standard_errors()
    assert 0 < se_rb < 0.02 and 0 < se_c < 0.01
    low, high = m.probability([1.0, 6.0], [6.7, 6.7])
    assert low < 0.01 and high > 0.99


def test_model_survives_wrong_calls_near_the_threshold():
    errors = []
    for seed in range(1, 6):
        g = np.random.default_rng(seed)
        v, p = g.uniform(1.5, 4.0, 300), g.choice([0.5, 1.0, 2.0, 6.7], 300)
        called = v >= threshold_vpp(1.1, 0.08, p) * (1 + 0.02 * g.standard_normal(300))
        m = FibreModel.fit(v, p, called ^ (g.random(300) < 0.05))  # 5 % of the calls flipped
        errors.append((abs(m.rheobase_v / 1.1 - 1), abs(m.chronaxie_ms / 0.08 - 1)))
    rb, c = np.median(errors, axis=0)
    assert rb < 0.05 and c < 0.15  # without the lapse rates the chronaxie is off by ~30 %


def test_acquisition_never_spends_a_pulse_where_the_fibre_surely_stays_silent():
    g = np.random.default_rng(2)
    v, p = g.uniform(1.5, 4.0, 40), g.choice([0.5, 6.7], 40)
    m = FibreModel.fit(v, p, v >= threshold_vpp(1.1, 0.08, p))
    cv, cp = SearchSpace().candidates()
    best = np.argmax(variance_reduction(m, cv, cp))
    assert 0.02 < m.probability([cv[best]], [cp[best]])[0] < 0.98


def test_model_undefined_until_the_fibre_fires_and_acquisition_then_targets_the_contour():
    none = FibreModel.fit([2.0, 3.0], [6.7, 6.7], [False, False])
    assert not none.defined and np.isnan(none.rheobase_v)
    assert not np.any(variance_reduction(none, [2.0], [1.0]))
    m = FibreModel.fit([6.0, 2.0, 3.0, 2.5], [6.7, 6.7, 6.7, 6.7], [True, False, True, True])
    v = np.linspace(1.0, 6.0, 101)
    gain = variance_reduction(m, v, np.full_like(v, 6.7))
    assert 2.0 <= v[np.argmax(gain)] <= 2.5  # where the model is unsure: between the last no and yes


def test_closed_loop_on_the_fake_rig_learns_the_mgf_curve():
    rig = FakeRig(seed=4)
    trials = _search(rig, ClosedLoopDesign(SearchSpace(), n_pulses=40))
    assert len(trials) == 8 + 40 and all(v <= 6.0 for v, _ in rig.requests)
    truth = rig.worm.params
    assert trials.estimates[-1]["MGF"][0] == pytest.approx(truth.mgf_rheobase_v, rel=0.1)
    assert trials.estimates[-1]["MGF"][1] == pytest.approx(truth.mgf_chronaxie_ms, rel=0.25)
    # the classification agrees with the worm's own record of which fibres fired
    evoked = [e for e in rig.worm.events() if e["kind"] == "spike" and e["cause"] == "evoked"]
    fired = [{e["fibre"] for e in evoked if e["pulse_index"] == i} for i in range(len(trials))]
    assert np.mean([("MGF" in f) == m for f, m in zip(fired, trials.mgf)]) >= 0.95


def test_budget_ends_the_search_before_it_is_exceeded():
    rig = FakeRig()
    budget = SafetyBudget(max_pulses=30, max_charge_v_ms=25.0, min_rest_s=0.25)
    trials = _search(rig, ClosedLoopDesign(SearchSpace(), n_pulses=100), budget=budget)
    assert trials.charge_v_ms() <= 25.0 and len(trials) <= 30
    next_cost = charge_v_ms(*rig.requests[-1])
    assert trials.charge_v_ms() + next_cost > 25.0 - 12.0 or len(trials) == 30  # it stopped because it had to


def test_a_design_outside_the_hard_limits_is_refused_before_delivery():
    rig = FakeRig()
    with pytest.raises(SearchError, match=r"pulse 3 \(vpp=12.0 V, period_ms=2.0 ms\) failed") as refused:
        _search(rig, PlannedDesign([(3.0, 2.0), (12.0, 2.0)]), space=SearchSpace(vpp_range=(1.0, 12.0)))
    assert isinstance(refused.value.__cause__, LimitError) and "hard limit" in str(refused.value)
    assert (12.0, 2.0) not in rig.requests and (3.0, 2.0) in rig.requests


def test_a_design_outside_its_search_space_is_refused_before_delivery():
    rig = FakeRig()
    with pytest.raises(SearchError, match=r"allowed: vpp in \(1.0, 6.0\) V at a period in"):
        _search(rig, PlannedDesign([(3.0, 2.0), (6.5, 2.0)]))
    assert (6.5, 2.0) not in rig.requests and (3.0, 2.0) in rig.requests


def test_a_pacer_faster_than_the_budget_is_refused_before_any_pulse():
    rig = FakeRig()
    with pytest.raises(SearchError, match=r"pace.rest_s=0.1 s; allowed: at least the budget's min_rest_s=0.25"):
        run_search(
            rig,
            PlannedDesign([(3.0, 2.0)]),
            space=SearchSpace(),
            budget=SafetyBudget(min_rest_s=0.25),
            analysis=ANALYSIS,
            pace=Pacer(rig, rest_s=0.1),
        )
    assert rig.requests == []


class _LyingPacer(Pacer):
    """Claims the budget's rest but lets pulse 5 go 0.05 s after pulse 4."""

    def wait(self, k):
        self.rig.now_s = 1.0 + k * self.rest_s if k < 5 else self.onset + 0.05
        self.onset = self.rig.now_s

    def sent(self, k):
        self.rig.now_s = self.onset + 0.04  # the epoch has arrived


def test_a_pulse_the_device_clock_shows_too_early_stops_the_search():
    rig = FakeRig()
    with pytest.raises(SearchError, match="pulse 5 came 0.050 s after the previous one"):
        run_search(
            rig,
            PlannedDesign([(3.0, 2.0)] * 10),
            space=SearchSpace(),
            budget=SafetyBudget(min_rest_s=0.25),
            analysis=ANALYSIS,
            pace=_LyingPacer(rig),
            timeout_s=0.2,
        )
    assert len(rig.requests) == 6  # nothing after the early one


def test_stop_mid_search_sends_nothing_more():
    rig, stop = FakeRig(), threading.Event()

    def after(trials):
        if len(trials.mgf) == 12:
            stop.set()

    trials = _search(rig, ClosedLoopDesign(SearchSpace(), n_pulses=50), stop=stop, on_trial=after)
    assert len(rig.requests) == 12 and len(trials) == 12  # STOP during trial 12's analysis: nothing more


def test_a_rig_that_stops_answering_raises_a_clear_error():
    rig = FakeRig(silent_after=10)
    with pytest.raises(SearchError, match="stopped answering"):
        _search(rig, ClosedLoopDesign(SearchSpace(), n_pulses=50))
    assert isinstance(SearchError("x"), RigError)
    assert len(rig.requests) == 11
