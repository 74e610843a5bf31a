"""Auto-map in the live panel, headless: the closed-loop search run on the simulated rig through the panel's controller
(start → trials → estimates drawn; STOP within one trial; a rig that stops answering; the pulse schedule and the
search never together; the NWB trials table), plus the threshold band's delta method."""

import threading
import time

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from labkit.rig import RigError
from labkit.rig.experiments.search import SafetyBudget, SearchSpace
from labkit.rig.experiments.search_evaluation import EvaluationConfig
from labkit.rig.experiments.strength_duration import FibreModel, threshold_vpp
from labkit.rig.host.nwb import validate_nwb
from labkit.rig.ui.automap import AutoMap
from labkit.rig.ui.controller import RigController
from labkit.rig.ui.panel import RigPanel
from labkit.rig.ui.plots import threshold_se_vpp
from tests.rig.ui.test_panel import fake_controller

N_TEMPLATES = 8  # AutoMap's default analysis: 2 template pulses at each of the space's 4 periods


def _stimulus_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rig-panel-stimulate" and t.is_alive()]


def _armed_panel(tmp_path, n_pulses=40, **automap):
    ctl = RigController("rigsim://?seed=5", record_dir=tmp_path, window_s=1.0, camera=None)
    panel = RigPanel(ctl, automap=AutoMap(ctl, n_pulses=n_pulses, **automap))
    panel.connect_button.click()
    panel.arm_button.click()
    return ctl, panel


def _wait_for_trials(am: AutoMap, n: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (am.view is None or len(am.view.mgf) < n) and am.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert am.view is not None and len(am.view.mgf) >= n, am.message


def test_automap_runs_the_search_draws_its_estimates_and_records_its_trials_to_nwb(tmp_path):
    ctl, panel = _armed_panel(tmp_path, n_pulses=3)
    image0 = panel.image.value
    panel.automap_button.click()
    assert panel.automap.state == "running" and ctl.state == "running" and panel.view.value == "auto-map"
    assert panel.automap.wait(30), panel.automap.message
    am, trials = panel.automap, panel.automap.trials
    assert am.state == "done", am.message
    assert len(trials) == N_TEMPLATES + 3 and len(trials.estimates) == len(trials)
    assert ctl.state == "stopped" and not ctl.armed and not ctl.rig.serial.sim.device.armed
    assert "valid NWB" in ctl.message and "Auto-map: done after 11 trials" in ctl.message
    # the pulses went through the controller, at least the safe rest apart on the device clock
    np.testing.assert_allclose([p.vpp_requested for p in ctl.pulses], trials.vpp, rtol=1e-6)
    assert np.diff([p.t_start_s for p in ctl.pulses]).min() >= 0.25
    # drawn: every trial, the estimates, the budget used
    assert panel.refresh(force=True) and panel.image.value != image0
    assert "labkit-rig-automap-trials'>11<" in panel.automap_status.value
    assert "labkit-rig-automap-drawn'>11<" in panel.cv.value
    side = panel.automap_plot.side.texts[0].get_text()
    assert "pulses 11 / 120" in side and "V·ms" in side
    rb, c, se_rb, se_c = trials.estimates[-1]["MGF"]
    assert (f"Rb = {rb:.3f} ± {se_rb:.3f} V" in side) if np.isfinite(rb) else "MGF: not defined yet" in side
    labels = [t.get_text() for t in panel.automap_plot.side.get_legend().get_texts()]
    assert {"search space", "template pulse", "newest pulse"} <= set(labels)
    assert sum(int(lab.rsplit("(", 1)[1].rstrip(")")) for lab in labels if "fired (" in lab) == 3
    # the NWB trials table: one row per trial, the search's choices, responses and model state after each
    session = ctl.sessions[-1]
    assert validate_nwb(session.nwb_path) == []
    with NWBHDF5IO(str(session.nwb_path), "r") as io:
        f = io.read()
        table = f.trials.to_dataframe()
        assert len(f.intervals["delivered_pulses"]) == len(trials)
    assert list(table.index) == list(range(len(trials)))
    np.testing.assert_allclose(table["start_time"], trials.t_start_s)
    np.testing.assert_allclose(table["vpp_requested"], trials.vpp)
    np.testing.assert_allclose(table["period_ms_requested"], trials.period_ms)
    assert list(table["template"]) == [True] * N_TEMPLATES + [False] * 3
    last = table.iloc[-1]
    assert bool(last["mgf_fired"]) == trials.mgf[-1] and bool(last["lgf_fired"]) == trials.lgf[-1]
    np.testing.assert_allclose(
        [last["mgf_rheobase_v"], last["mgf_chronaxie_ms"], last["mgf_rheobase_se_v"], last["mgf_chronaxie_se_ms"]],
        trials.estimates[-1]["MGF"],
    )
    assert np.isnan(table["lgf_rheobase_v"].iloc[0])  # undefined after a template pulse
    panel.close()


def test_stop_mid_search_ends_it_within_one_trial_and_stops_the_device(tmp_path):
    ctl, panel = _armed_panel(tmp_path)
    am = panel.automap
    panel.automap_button.click()
    _wait_for_trials(am, 3)
    panel.start_button.click()  # the pulse schedule is refused while it runs
    assert "Auto-map is running: press STOP before Start" in ctl.message and am.running
    sim = ctl.rig.serial.sim
    panel.stop_button.click()
    n_at_stop = len(ctl.pulses)
    assert not _stimulus_threads() and am.state == "stopped" and "stopped by STOP" in am.message
    assert not sim.device.armed and not sim.device.streaming and not ctl.armed
    assert ctl.state == "stopped" and "valid NWB" in ctl.message
    time.sleep(0.4)
    assert len(ctl.pulses) == n_at_stop and len(am.trials) <= len(am.trials.estimates) + 1
    panel.refresh(force=True)
    assert "labkit-rig-automap-state'>stopped<" in panel.automap_status.value
    assert "labkit-rig-state'>stopped<" in panel.status.value
    panel.arm_button.click()  # after STOP: arm, and a new search restarts the stream
    panel.automap_button.click()
    assert am.running and am.view is None and len(ctl.sessions) == 2
    _wait_for_trials(am, 1)
    ctl.stop()
    assert am.state == "stopped" and validate_nwb(ctl.sessions[-1].nwb_path) == []
    panel.close()


@pytest.mark.parametrize("failure", ["data stop arriving", "link lost"])
def test_a_rig_that_stops_answering_ends_the_search_with_a_message_and_the_device_made_safe(
    tmp_path, monkeypatch, failure
):
    uncaught = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    ctl, panel = _armed_panel(tmp_path, timeout_s=1.5)  # short: the failure below is found after 1.5 s
    sim = ctl.rig.serial.sim
    panel.automap_button.click()
    _wait_for_trials(panel.automap, 2)
    if failure == "link lost":
        ctl.rig.serial.close()
    else:  # the device answers, but no sample arrives
        monkeypatch.setattr(ctl.rig, "read_since", lambda start, max_n: (start, np.zeros((0, 4), np.int16)))
    assert panel.automap.wait(30)
    am = panel.automap
    assert am.state == "failed" and not ctl.armed, am.message
    assert (
        "SearchError" in am.message and "stopped answering" in am.message
        if failure != "link lost"
        else "rig failed" in am.message
    )
    if failure != "link lost":
        assert not sim.device.armed  # STOP sent from the search thread
    assert ctl.state == "stopped" and not _stimulus_threads() and not uncaught
    assert ctl.message.startswith("Auto-map: ended after") and "valid NWB" in ctl.message
    with NWBHDF5IO(str(ctl.sessions[-1].nwb_path), "r") as io:
        assert len(io.read().trials) == len(am.trials.estimates) >= 2
    panel.close()


def test_automap_and_the_pulse_schedule_never_run_together_and_automap_needs_an_armed_rig():
    ctl = fake_controller()
    panel = RigPanel(ctl)
    assert panel.automap.analysis.template_vpp == EvaluationConfig().template_vpp  # below every prior worm's MGF
    panel.automap_button.click()
    assert "not connected: press Connect" in ctl.message
    ctl.connect()
    panel.automap_button.click()
    assert "not armed: press Arm before Auto-map" in ctl.message and panel.automap.state == "idle"
    ctl.set_stimulus(rate_hz=10.0)
    ctl.arm()
    ctl.start(record=False)
    time.sleep(0.2)
    n = len(ctl.rig.calls)
    panel.automap_button.click()
    assert "the pulse schedule (Start) is running: press STOP before Auto-map" in ctl.message
    assert panel.automap.state == "idle" and ctl.state == "running" and len(_stimulus_threads()) == 1
    time.sleep(0.2)
    assert len(ctl.rig.calls) > n  # the schedule runs on, alone
    panel.close()
    assert not _stimulus_threads()


def test_automap_refuses_unsafe_settings_before_anything_is_sent():
    ctl = fake_controller()  # the fake device's limits: 7 V, 1–8 ms, 20/s
    with pytest.raises(ValueError, match=r"AutoMap: bad value for 'rest_s': 0\.1; allowed: .*>= 0\.25"):
        AutoMap(ctl, rest_s=0.1)
    with pytest.raises(ValueError, match=r"rest_s.*>= 0\.5"):
        AutoMap(ctl, rest_s=0.3, budget=SafetyBudget(min_rest_s=0.5))
    with pytest.raises(ValueError, match="n_pulses"):
        AutoMap(ctl, n_pulses=0)
    ctl.connect()
    ctl.arm()
    am = AutoMap(ctl, space=SearchSpace(vpp_range=(1.0, 6.0), periods_ms=(0.5, 2.0)))
    with pytest.raises(RigError, match=r"leaves the device's limits; allowed: 0 < V_pp <= 7, periods 1 to 8 ms"):
        am.start()
    assert ctl.rig.calls == [] and ctl.state == "streaming" and am.state == "idle"
    ctl.close()


def test_rerunning_the_panel_cell_ends_a_running_search_and_leaves_no_thread(tmp_path):
    ctl, panel = _armed_panel(tmp_path)
    panel.automap_button.click()
    _wait_for_trials(panel.automap, 1)
    RigPanel(fake_controller()).close()  # the cell re-run: a new panel closes the old
    assert ctl.closed and not _stimulus_threads() and panel.automap.state == "stopped"
    assert validate_nwb(ctl.sessions[-1].nwb_path) == []


def test_threshold_band_is_the_delta_method_standard_error_of_the_threshold():
    g = np.random.default_rng(0)
    v, p = g.uniform(1.5, 4.0, 200), g.choice([0.5, 1.0, 2.0, 6.7], 200)
    model = FibreModel.fit(v, p, v >= threshold_vpp(1.1, 0.08, p) * (1 + 0.05 * g.standard_normal(200)))
    periods = np.array([0.5, 1.0, 6.7])

    def curve(w):
        return -2.0 * (w[1] + 2.0 * w[2] / periods) / w[0]

    np.testing.assert_allclose(curve(model.coef), model.threshold_vpp(periods))
    step = 1e-6 * np.abs(model.coef)
    jac = np.stack([(curve(model.coef + np.eye(3)[i] * step[i]) - curve(model.coef)) / step[i] for i in range(3)], -1)
    expected = np.sqrt(np.einsum("ni,ij,nj->n", jac, model.cov, jac))
    np.testing.assert_allclose(threshold_se_vpp(model, periods), expected, rtol=1e-4)
    assert np.isnan(threshold_se_vpp(FibreModel.fit([2.0], [1.0], [False]), periods)).all()
