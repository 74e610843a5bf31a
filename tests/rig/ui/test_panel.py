"""The live panel without a browser: the controller's logic (limits, ring buffer, decimation, schedule, session,
NWB), and the ipywidgets view driven headlessly (setting widget values, Button.click(), the event-loop refresh)."""

import asyncio
import math
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit import paths
from labkit.config import ConfigError
from labkit.rig import LimitError, Pulse, RigError, RigInfo, SafetyLimits
from labkit.rig.firmware.protocol import Waveform
from labkit.rig.host.nwb import validate_nwb
from labkit.rig.ui.controller import RigController
from labkit.rig.ui.display import RingBuffer, decimate_minmax
from labkit.rig.ui.panel import RigPanel
from labkit.rig.ui.scripted import LivePanelConfig, nwb_pulse_count, replay_session, run_scripted_session
from labkit.rig.ui.settings import StimulusSettings, clamp_stimulus, stimulus_ranges

LIMITS = SafetyLimits(max_vpp=7.0, min_period_ms=1.0, max_period_ms=8.0, max_rate_hz=20.0)
anything = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)


def within(s: StimulusSettings, limits: SafetyLimits) -> bool:
    return all(lo <= getattr(s, k) <= hi for k, (lo, hi) in stimulus_ranges(limits).items())


class FakeRig:
    """Stands in for labkit.rig.Rig (no stream): checks every pulse as the device does, like an armed device."""

    failure = None

    def __init__(self, url, limits=LIMITS, session_root=None):
        self.url, self.limits = url, limits
        self.info = RigInfo("fake-fw", 1, True, 4, (30000.0,), 300, 0.2, (20.0, 35.0, 50.0, 65.0), limits)
        self.serial, self.fs_hz, self.n_channels, self.timeout_s = object(), None, None, 0.5
        self.counters = {"frames": 0, "bad_frames": 0, "lost_frames": 0, "samples_lost": 0}
        self.armed, self.calls, self._last = False, [], None

    def open(self):
        return self

    def close(self):
        pass

    def configure(self):
        self.fs_hz, self.n_channels = 30000.0, 4

    def arm(self):
        self.armed = True

    def disarm(self):
        self.armed = False

    def stop(self):
        self.armed = False

    def stimulate(self, vpp, period_ms):
        now = time.monotonic()
        self.limits.check(vpp, period_ms, Waveform.BIPOLAR_SINE, None if self._last is None else now - self._last)
        assert self.armed, "a pulse was requested while disarmed"
        self.calls.append((vpp, period_ms))
        self._last = time.monotonic()
        return Pulse(len(self.calls), now, vpp, vpp, period_ms, period_ms)

    def read_since(self, start, max_n):
        return (0 if start is None else start), np.zeros((0, self.n_channels or 1), np.int16)

    @contextmanager
    def record(self, folder):
        yield None


def fake_controller(**kwargs) -> RigController:
    return RigController("fake://", rig_factory=FakeRig, **kwargs)


# --- limits ---------------------------------------------------------------------------------------


@given(vpp=anything, period_ms=anything, rate_hz=anything)
def test_settings_in_force_never_leave_the_limits_whatever_is_asked(vpp, period_ms, rate_hz):
    current = StimulusSettings(4.0, 3.0, 1.0)
    for name, value in (("vpp", vpp), ("period_ms", period_ms), ("rate_hz", rate_hz)):
        try:
            current = clamp_stimulus(LIMITS, current, **{name: value})
        except LimitError as e:
            assert name in str(e) and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            )
        assert within(current, LIMITS)


def test_clamping_is_exact_at_the_edges_and_refusals_name_the_value():
    s = clamp_stimulus(LIMITS, StimulusSettings(), vpp=12.0, period_ms=0.1, rate_hz=100)
    assert s == StimulusSettings(vpp=7.0, period_ms=1.0, rate_hz=20.0)
    with pytest.raises(LimitError, match=r"vpp=nan .*allowed: 0\.1 to 7"):
        clamp_stimulus(LIMITS, s, vpp=float("nan"))
    with pytest.raises(LimitError, match="unknown stimulus setting 'volts'"):
        clamp_stimulus(LIMITS, s, volts=1.0)


@pytest.fixture(scope="module")
def connected_panel():
    panel = RigPanel(fake_controller())
    panel.connect_button.click()
    yield panel
    panel.ctl.disconnect()


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.sampled_from(["vpp", "period_ms", "rate_hz"]), st.floats(allow_nan=True, allow_infinity=True)),
        min_size=1,
        max_size=8,
    )
)
def test_widgets_never_put_a_setting_outside_the_device_limits(connected_panel, values):
    panel = connected_panel
    assert {k: (s.min, s.max) for k, s in panel.sliders.items()} == stimulus_ranges(LIMITS)  # from the device
    for name, value in values:
        panel.sliders[name].value = value
        assert within(panel.ctl.settings, LIMITS)
        assert panel.sliders[name].value == getattr(panel.ctl.settings, name)


def test_the_schedule_at_full_rate_sends_only_allowed_pulses_and_only_while_armed():
    ctl = fake_controller()
    ctl.connect()
    ctl.set_stimulus(vpp=1e9, period_ms=-5, rate_hz=1e9)  # clamped to 7 V, 1 ms, 20 pulses/s
    ctl.start(record=False)
    time.sleep(0.2)
    assert ctl.rig.calls == []  # not armed: nothing sent
    ctl.arm()
    time.sleep(0.6)
    ctl.disarm()
    n = len(ctl.rig.calls)
    time.sleep(0.2)
    ctl.stop()
    assert 5 <= n <= 13 and len(ctl.rig.calls) == n, ctl.rig.calls
    assert set(ctl.rig.calls) == {(7.0, 1.0)} and not ctl.refused
    ctl.disconnect()


# --- ring buffer and decimation ---------------------------------------------------------------------


def test_ring_buffer_keeps_the_newest_rows_and_marks_what_it_never_saw():
    ring = RingBuffer(5, 1)
    assert ring.snapshot(3)[1].shape == (3, 1) and np.isnan(ring.snapshot(3)[1]).all()
    ring.write(10, [[1], [2], [3]])
    first, rows = ring.snapshot(5)
    assert first == 8 and np.isnan(rows[:2]).all() and rows[2:, 0].tolist() == [1, 2, 3]
    ring.write(15, [[6], [7]])  # rows 13 and 14 never arrived
    first, rows = ring.snapshot(5)
    assert first == 12 and rows[0, 0] == 3 and np.isnan(rows[1:3]).all() and rows[3:, 0].tolist() == [6, 7]
    ring.write(14, [[5], [6]])  # partly a duplicate: ignored
    ring.write(17, np.arange(8, 20)[:, None])  # longer than the ring
    first, rows = ring.snapshot(9)
    assert first == 24 and rows[:, 0].tolist() == [15, 16, 17, 18, 19]


@settings(max_examples=50, deadline=None)
@given(blocks=st.lists(st.tuples(st.integers(0, 6), st.integers(1, 9)), min_size=1, max_size=12))
def test_ring_buffer_matches_a_reference_dict(blocks):
    ring, seen, end = RingBuffer(7, 2), {}, 0
    for skip, n in blocks:
        first = end + skip
        rows = np.stack([np.arange(first, first + n), -np.arange(first, first + n)], axis=1)
        ring.write(first, rows)
        seen.update({i: i for i in range(first, first + n)})
        end = first + n
    first, rows = ring.snapshot(7)
    expected = [seen.get(i, np.nan) for i in range(first, first + 7)]
    np.testing.assert_array_equal(rows[:, 0], np.array(expected, float))


def test_decimation_keeps_every_extreme_at_pixel_width():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 5, (60_000, 4))
    y[31_234, 2] = 80.0  # one-sample spike
    pos, env = decimate_minmax(y, 800)
    assert len(pos) == len(env) <= 1600 and env.shape[1] == 4
    assert env[:, 2].max() == 80.0 and np.allclose(env.min(axis=0), y[-len(env) // 2 * 75 :].min(axis=0))
    assert np.all(np.diff(pos) >= 0) and pos[-1] <= len(y) - 1
    short = np.arange(10.0)[:, None]
    assert decimate_minmax(short, 800)[1].tolist() == short.tolist()


# --- the view, headless -----------------------------------------------------------------------------


def test_refresh_runs_on_the_event_loop_thread_at_the_requested_rate():
    panel = RigPanel(fake_controller(), refresh_hz=20)
    threads = set()
    original = panel.refresh

    def spy(force=False):
        threads.add(threading.current_thread().name)
        return original(force)

    panel.refresh = spy

    async def run():
        panel.start_updates()
        await asyncio.sleep(0.5)
        panel.stop_updates()

    before = panel.ticks
    asyncio.run(run())
    assert threads == {threading.main_thread().name}
    assert 4 <= panel.ticks - before <= 12
    assert panel.redraws == 1  # nothing new arrived: drawn once, at construction


def test_panel_drives_a_simulated_session_to_a_valid_nwb_file(tmp_path):
    ctl = RigController("rigsim://?seed=5", record_dir=tmp_path, window_s=1.0)
    panel = RigPanel(ctl)
    panel.connect_button.click()
    assert ctl.state == "streaming" and panel.connect_button.description == "Disconnect"
    panel.sliders["rate_hz"].value = 5.0
    panel.sliders["vpp"].value = 5.0
    image0 = panel.image.value
    panel.arm_button.click()
    panel.start_button.click()
    assert ctl.state == "running" and ctl.armed
    deadline = time.monotonic() + 10
    while len(ctl.pulses) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    ctl.set_stimulus(vpp=50.0)  # clamped to the simulator's 10 V
    while len(ctl.pulses) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert panel.refresh() and panel.image.value != image0
    snap = ctl.snapshot(400)
    assert len(snap.t_s) <= 800 and snap.traces_uv.shape[1] == 4 and np.isfinite(snap.traces_uv).any()
    assert len(snap.motion) >= 5 and np.all(np.diff(snap.motion_t_s) > 0)
    assert snap.counters["pulses"] >= 3 and "labkit-rig-frames" in panel.counters.value
    panel.stop_button.click()
    assert ctl.state == "stopped" and not ctl.armed and "valid NWB" in ctl.message
    session = ctl.sessions[-1]
    assert validate_nwb(session.nwb_path) == [] and nwb_pulse_count(session.nwb_path) == len(session.pulses)
    assert [p.vpp_requested for p in session.pulses][:3] == [5.0, 5.0, 10.0]
    assert all(p.vpp_requested <= ctl.limits.max_vpp for p in session.pulses) and not ctl.refused
    assert session.counters["lost_frames"] == 0 and session.counters["bad_frames"] == 0
    panel.connect_button.click()
    assert ctl.state == "disconnected" and ctl.rig is None


def test_a_session_that_cannot_be_converted_is_reported_and_kept(tmp_path):
    """A damaged session folder (here session.json, overwritten while recording) makes stop() say why the NWB
    conversion was refused instead of raising; the folder is left as it is."""
    ctl = RigController("rigsim://?seed=5", record_dir=tmp_path, window_s=1.0)
    ctl.connect()
    ctl.start(record=True)
    session_json = ctl.sessions[-1].session_dir / "session.json"
    session_json.write_text("{not json")
    session = ctl.stop()
    assert session.nwb_path is None and ctl.state == "stopped"
    assert "not converted to NWB" in ctl.message and "session.json" in session.nwb_errors[0]
    assert session_json.read_text() == "{not json"
    ctl.disconnect()


def test_a_failed_rig_stops_the_controller_threads_with_a_message(tmp_path, monkeypatch):
    """The link dies under a running, armed controller: its threads end (no uncaught exception), it disarms and
    says why, and stop() still closes the recording."""
    uncaught = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    ctl = RigController("rigsim://?seed=5", record_dir=tmp_path, window_s=1.0)
    ctl.connect()
    ctl.arm()
    ctl.start(record=True)
    ctl.rig.serial.close()  # the port goes away under the driver
    deadline = time.monotonic() + 5
    while ("stopped" not in ctl.message or ctl.armed) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not ctl.armed and "rig failed" in ctl.message, ctl.message
    with pytest.raises(RigError, match="rig failed"):
        ctl.stop()
    assert ctl.state == "stopped" and not uncaught
    ctl.disconnect()


def test_controller_records_from_a_serial_port_without_a_camera(tmp_path):
    """Any serial URL: here a pty served by the simulator in another process (no camera: no motion trace)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labkit.rig.simulator.sim", "--pty", "--seed", "4"],
        cwd=paths.ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = proc.stdout.readline().strip()
        ctl = RigController(port, record_dir=tmp_path)
        session = run_scripted_session(ctl, [3.0, 4.0], period_ms=3.0, rate_hz=5.0, tail_s=0.1)
        assert ctl.camera is None and len(ctl.snapshot().motion) == 0
        assert [p.vpp_requested for p in session.pulses] == [3.0, 4.0] and validate_nwb(session.nwb_path) == []
        ctl.disconnect()
    finally:
        proc.kill()
        proc.wait()


def test_a_refused_click_is_shown_not_raised():
    panel = RigPanel(fake_controller())
    panel.arm_button.click()  # not connected
    assert "not connected" in panel.status.value


# --- notebook helpers -------------------------------------------------------------------------------


def test_replay_is_deterministic_and_recovers_the_echoed_readback():
    pulses = [Pulse(1, 0.0, 3.0, 0.0, 3.0, 3.0), Pulse(2, 0.0, 6.0, 0.0, 3.0, 3.0)]
    a = replay_session("rigsim://?seed=2", pulses, 4.0)
    b = replay_session("rigsim://?seed=2", pulses, 4.0)
    np.testing.assert_array_equal(a.snapshot.traces_uv, b.snapshot.traces_uv)
    np.testing.assert_array_equal(a.snapshot.motion, b.snapshot.motion)
    assert a.snapshot.motion.min() < -0.05  # the body shortens after the pulses
    assert np.allclose(a.vpp_measured, [3.0, 6.0], atol=0.1)
    with pytest.raises(ValueError, match="rigsim"):
        replay_session("/dev/ttyACM0", pulses, 4.0)


def test_config_presets_and_errors():
    smoke = LivePanelConfig.from_params(scale="smoke", seed=3)
    assert smoke.device_url == "rigsim://?seed=3" and max(smoke.script_vpp) > 10.0
    assert LivePanelConfig.from_params(url="/dev/pts/4").device_url == "/dev/pts/4"
    with pytest.raises(ConfigError, match="refresh_hz"):
        LivePanelConfig.from_params(refresh_hz=100.0)
    with pytest.raises(ConfigError, match="script_vpp"):
        LivePanelConfig.from_params(script_vpp=())


# --- the panel never misleads (regressions) ------------------------------------------------------------


def test_refresh_shows_settings_changed_behind_the_panels_back_and_the_connection():
    """A script (05b's session) changes the controller directly: the next tick shows it, label included."""
    panel = RigPanel(fake_controller())
    panel.ctl.connect()
    panel.ctl.set_stimulus(vpp=6.5, rate_hz=4.0)
    panel.refresh()
    assert panel.sliders["vpp"].value == 6.5 and panel.entries["vpp"].value == "6.50"
    assert panel.sliders["rate_hz"].value == 4.0 and panel.connect_button.description == "Disconnect"
    panel.ctl.disconnect()
    panel.refresh()
    assert panel.connect_button.description == "Connect"
    panel.close()


def test_the_scripted_session_ends_disarmed_at_the_default_settings(tmp_path):
    ctl = RigController("rigsim://?seed=5", record_dir=tmp_path, window_s=1.0)
    panel = RigPanel(ctl)
    session = run_scripted_session(ctl, [9.0, 10.0], period_ms=5.0, rate_hz=4.0, tail_s=0.1)
    assert [p.vpp_requested for p in session.pulses] == [9.0, 10.0]
    panel.refresh()
    assert ctl.settings == StimulusSettings() and not ctl.armed
    assert {k: s.value for k, s in panel.sliders.items()} == vars(StimulusSettings())
    panel.close()


def test_a_panel_survives_disconnect_and_shows_display_errors_in_its_status_line(monkeypatch):
    panel = RigPanel(fake_controller())
    panel.connect_button.click()
    panel.connect_button.click()  # disconnect: the ring stays, the rig goes
    assert panel.ctl.rig is None and panel.ctl.ring is not None
    panel.refresh(force=True)
    assert "disconnected" in panel.status.value and "error" not in panel.status.value
    monkeypatch.setattr(panel.ctl, "snapshot", lambda n: 1 / 0)
    assert panel.refresh() is False and "ZeroDivisionError" in panel.status.value
    monkeypatch.undo()
    assert panel.refresh(force=True) and "ZeroDivisionError" not in panel.status.value
    panel.close()


def test_a_new_panel_closes_the_old_one_and_its_controller():
    old = RigPanel(fake_controller())
    old.ctl.connect()
    new = RigPanel(fake_controller())
    assert old.ctl.rig is None and old.ctl.closed and not new.ctl.closed
    with pytest.raises(RigError, match="closed"):
        old.ctl.connect()
    shared = RigPanel(new.ctl)  # the same controller, a new view: kept
    assert not new.ctl.closed and list(RigPanel._open) == [shared]
    shared.close()
    assert new.ctl.closed


def test_stop_is_reported_before_the_nwb_file_is_written(tmp_path):
    ctl = RigController("rigsim://?seed=5", record_dir=tmp_path, window_s=1.0)
    panel = RigPanel(ctl)
    panel.connect_button.click()
    panel.start_button.click()
    seen = []
    original = ctl.stop
    ctl.stop = lambda on_device_stopped=None: original(
        on_device_stopped=lambda: seen.append((panel._show_status().state, ctl.sessions[-1].nwb_path))
    )
    panel.stop_button.click()
    assert seen == [("stopped", None)] and "labkit-rig-state'>stopped" in panel.status.value
    assert ctl.sessions[-1].nwb_path is not None and "valid NWB" in ctl.message
    panel.close()


def test_typed_values_are_clamped_or_refused_with_the_range_named():
    panel = RigPanel(fake_controller())
    panel.ctl.connect()
    panel.entries["vpp"].value = "12"
    assert panel.ctl.settings.vpp == 7.0 and panel.entries["vpp"].value == "7.00"
    assert "clamped to the device limits: vpp=7" in panel.ctl.message
    panel.entries["rate_hz"].value = "abc"
    assert panel.ctl.settings.rate_hz == StimulusSettings().rate_hz and panel.entries["rate_hz"].value == "1.00"
    assert "rate_hz: 'abc' is not a number; allowed: 0.1 to 20" in panel.ctl.message
    assert "0.1 – 7" in panel.ranges["vpp"].value
    panel.close()


def test_pulses_keep_the_asked_rate_on_the_device_clock(tmp_path):
    """Intervals are counted from request to request, not from the previous echo (which made 4/s into 3.7/s)."""
    ctl = RigController("rigsim://?seed=5", record_dir=tmp_path, window_s=1.0, camera=None)
    ctl.connect()
    ctl.set_stimulus(vpp=3.0, period_ms=20.0, rate_hz=5.0)
    ctl.arm()
    ctl.start(record=False)
    deadline = time.monotonic() + 10
    while len(ctl.pulses) < 9 and time.monotonic() < deadline:
        time.sleep(0.01)
    ctl.close()
    starts = np.array([p.t_start_s for p in ctl.pulses[:9]])
    assert abs(np.diff(starts).mean() - 0.2) < 0.2 * 0.03, np.diff(starts)


def test_the_sweep_view_collects_triggered_sweeps_and_estimates_the_conduction_velocity(tmp_path):
    """The simulator's MGF conducts at 25 m/s: the live estimate from the last sweeps lands near it."""
    ctl = RigController("rigsim://?seed=5", record_dir=tmp_path, window_s=1.0, camera=None, n_sweeps=8)
    panel = RigPanel(ctl)
    ctl.connect()
    assert ctl.sweeps() is None
    ctl.set_stimulus(vpp=6.0, period_ms=5.0, rate_hz=8.0)
    ctl.arm()
    ctl.start(record=False)
    deadline = time.monotonic() + 60  # generous: a loaded machine collects slowly
    while ctl.sweeps_collected < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ctl.sweeps_collected >= 10, f"{ctl.sweeps_collected} sweeps in 60 s ({ctl.message})"
    view = ctl.sweeps()
    assert view.sweeps_uv.shape == (8, len(view.t_ms), 4) and np.isfinite(view.sweeps_uv).all()
    assert abs(view.velocity_m_s - 25.0) < 2.5, view.velocity_m_s
    panel.view.value = "sweeps"
    panel.gain.value = "±200 µV"
    assert panel.sweep_plot.n_sweeps == 8 and "conduction velocity" in panel.sweep_plot.figure.texts[0].get_text()
    assert panel.sweep_plot.axes[0].get_ylim() == (-200.0, 200.0)
    assert "ARMED" in panel.indicators.value and "not recording" in panel.indicators.value
    panel.freeze.value = True
    image = panel.image.value
    time.sleep(0.3)
    panel.refresh()
    assert panel.image.value == image  # frozen: the picture holds
    ctl.set_stimulus(vpp=5.0)  # a new stimulus: a fresh persistence view
    assert ctl.sweeps() is None
    panel.close()
