"""The live rig panel: a thin ipywidgets view over :class:`labkit.rig.controller.RigController`, plus what
notebook 05b needs to run it headlessly (a scripted session, a sample-exact replay, its figures, its config).

    panel = RigPanel(RigController("rigsim://?seed=0"))
    panel                       # in JupyterLab: Connect, Arm, Start, the big STOP, settings, traces or sweeps

The view shows either the live traces (4 pairs and the motion signal, a 0.5–2 s timebase) or the stimulus-triggered
sweeps (:class:`SweepPlot`: the last sweeps per pair, artefact removed, a latency cursor and a live conduction
velocity); a gain control fixes the µV range (auto: scaled to the response), Freeze holds the picture while the
counters and status run on, and large ARMED and REC indicators sit under STOP.

Every widget callback calls the controller and shows what it answers: the sliders' ranges come from the
device's limits (its INFO) and a slider is set back to whatever the controller put in force (clamped, or the
previous value when refused), so the panel never shows a setting the device will not get.

Drawing. The traces are a matplotlib figure on the Agg canvas whose lines are updated in place (``set_data``)
and sent as a PNG to an ``ipywidgets.Image`` at ``refresh_hz`` (10 Hz default) by an asyncio task on the
kernel's event loop — never from a reader thread. This needs no extension beyond ipywidgets (the ipympl
canvas needs its JupyterLab extension and a live frontend to draw at all), renders the same under papermill
and in a browser, and a test can read the pixels. Redraws are skipped when no new sample arrived.

Determinism. A live session runs in real time, so the samples of two runs differ (noise blocks and pulse
onsets land on different device samples). The notebook therefore draws its saved trace figure from
:func:`replay_session`: the simulator's deterministic signal for the pulses the device echoed, delivered at
nominal times ``pre_s + k / rate_hz`` through a fresh simulated worm with the same seed and parameters (same
per-pulse thresholds and read-back, since both are drawn per pulse number), through the same camera, tracker,
decimation and drawing code as the live panel. Everything the claims use (echoed voltages, counts, NWB
validity) is seed-determined when the session is healthy.
"""

import asyncio
import atexit
import html
import time
import weakref
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import cv2
import ipywidgets as w
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from labkit.config import Check, ConfigError, NotebookConfig, param, positive_float
from labkit.rig.video import Camera
from labkit.rig.controller import (RigController, SessionResult, Snapshot, StimulusSettings, SweepView,
                                   decimate_minmax, default_tracker, stimulus_ranges)
from labkit.rig.limits import SafetyLimits
from labkit.rig.sim import parse_query
from labkit.rig.worm import Earthworm

__all__ = ["TracePlot", "RigPanel", "run_scripted_session", "replay_session", "pulses_figure", "nwb_pulse_count",
           "LivePanelConfig"]

_COLOURS = ("C0", "C1", "C2", "C3")
_NICE_UV = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)


def _nice_limit(peak: float, steps=_NICE_UV) -> float:
    """The smallest of ``steps`` above ``peak`` (the last one if none): axis limits that change rarely."""
    return next((s for s in steps if s >= peak), steps[-1])


def _png(rgba: np.ndarray) -> bytes:
    """An RGBA canvas as PNG bytes (OpenCV, fast compression: the panel encodes one per tick)."""
    _, data = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return data.tobytes()


class TracePlot:
    """The panel's traces: one axis per recording pair plus the motion signal, lines updated in place.

    Each pair's axis is scaled to what lies outside the stimulus artefacts (the artefact, mV against the
    response's tens of µV, is clipped at the axis edge), so the evoked response stays readable.

    ``live=True`` draws the axes once and then only the lines over a saved background (blitting), re-drawing
    everything only when an axis limit changes (limits move in coarse steps, :func:`_nice_limit`); ``png()``
    encodes the canvas with OpenCV. ``live=False`` is an ordinary figure (for ``savefig``).
    """

    def __init__(self, n_channels: int = 4, width_px: int = 800, height_px: int = 480, dpi: int = 100,
                 title: str = "live traces", live: bool = True):
        self.live = live
        self.figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
        FigureCanvasAgg(self.figure)
        axes = self.figure.subplots(n_channels + 1, 1, sharex=True)
        self.trace_axes, self.motion_axis = list(axes[:-1]), axes[-1]
        self.lines = [ax.plot([], [], lw=0.6, color=_COLOURS[k % 4], animated=live)[0]
                      for k, ax in enumerate(self.trace_axes)]
        for k, ax in enumerate(self.trace_axes):
            ax.set_ylabel(f"pair {k + 1}\n(µV)")
        (self.motion_line,) = self.motion_axis.plot([], [], lw=1.0, color="k", animated=live)
        self.motion_axis.set_ylabel("motion\n(strain)")
        self.motion_axis.set_xlabel("time (s, 0 = newest sample)")
        self.figure.suptitle(title, fontsize=10)
        self._limits: tuple | None = None
        self._background = None

    def update(self, snap: Snapshot, gain_uv: float | None = None, window_s: float | None = None) -> None:
        """Lines from ``snap``; each pair's axis ±``gain_uv`` (None: scaled to what lies outside the artefacts),
        the last ``window_s`` seconds shown (None: the whole window)."""
        x = snap.t_s - snap.t_end_s
        limits = [(-min(window_s or snap.window_s, snap.window_s), 0.0)]
        centres = np.unique(snap.t_s)                     # decimated points come in (min, max) pairs
        pad = 0.5 * float(np.median(np.diff(centres))) if len(centres) > 1 else 0.0   # half a bin
        clear = np.ones(len(snap.t_s), bool)              # bins that do not overlap a stimulus artefact
        for a, b in snap.artefacts_s:
            clear &= (snap.t_s < a - pad) | (snap.t_s >= b + pad)
        for k, line in enumerate(self.lines):
            y = snap.traces_uv[:, k] if snap.traces_uv.shape[1] > k else np.zeros(len(x))
            line.set_data(x, y)
            seen = np.abs(y[clear & np.isfinite(y)])
            limits.append(gain_uv or _nice_limit(float(seen.max()) if seen.size else 0.0))
        self.motion_line.set_data(snap.motion_t_s - snap.t_end_s, snap.motion)
        finite = np.abs(snap.motion[np.isfinite(snap.motion)])
        limits.append(_nice_limit(float(finite.max()) if finite.size else 0.0, (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)))
        limits = tuple(limits)
        if limits != self._limits:
            self._limits, self._background = limits, None
            self.motion_axis.set_xlim(*limits[0])
            for ax, top in zip([*self.trace_axes, self.motion_axis], limits[1:]):
                ax.set_ylim(-top, top)

    def render(self) -> np.ndarray:
        """The canvas as an RGBA array (live: background once, then the lines only)."""
        canvas = self.figure.canvas
        if not self.live:
            canvas.draw()
            return np.asarray(canvas.buffer_rgba())
        if self._background is None:
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.figure.bbox)
        canvas.restore_region(self._background)
        for ax, line in zip([*self.trace_axes, self.motion_axis], [*self.lines, self.motion_line]):
            ax.draw_artist(line)
        return np.asarray(canvas.buffer_rgba())

    def png(self) -> bytes:
        return _png(self.render())


class SweepPlot:
    """The panel's stimulus-triggered view: per recording pair, the last sweeps (grey) and their mean (colour),
    artefact-free (:meth:`RigController.sweeps`), the blanked stretch shaded, a cursor at the median first-spike
    latency, and the live conduction-velocity estimate in the title. Redrawn whole (new sweeps come ≤ 10 per s)."""

    def __init__(self, n_channels: int = 4, width_px: int = 800, height_px: int = 480, dpi: int = 100):
        self.figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
        FigureCanvasAgg(self.figure)
        self.axes = list(self.figure.subplots(n_channels, 1, sharex=True))
        self.n_sweeps = 0

    def update(self, view: SweepView | None, gain_uv: float | None = None) -> None:
        for k, ax in enumerate(self.axes):
            ax.clear()
            ax.set_ylabel(f"pair {k + 1}\n(µV)")
            ax.grid(alpha=0.3)
        self.axes[-1].set_xlabel("time after the pulse onset (ms)")
        if view is None:
            self.n_sweeps = 0
            self.figure.suptitle("stimulus-triggered sweeps: none yet (arm and start)", fontsize=10)
            return
        self.n_sweeps = len(view.sweeps_uv)
        for k, ax in enumerate(self.axes):
            ax.plot(view.t_ms, view.sweeps_uv[:, :, k].T, color="0.75", lw=0.5)
            ax.plot(view.t_ms, view.sweeps_uv[:, :, k].mean(axis=0), color=_COLOURS[k % 4], lw=1.0)
            ax.axvspan(0.0, view.blank_ms[k], color="0.9", zorder=0)
            latency = view.arrivals_ms[:, k]
            if np.isfinite(latency).any():
                ax.axvline(float(np.nanmedian(latency)), color="red", lw=0.8, ls="--")
            top = gain_uv or _nice_limit(float(np.abs(view.sweeps_uv[:, view.t_ms > view.blank_ms[k], k]).max()
                                               if (view.t_ms > view.blank_ms[k]).any() else 0.0))
            ax.set_ylim(-top, top)
            ax.text(0.99, 0.95, f"{view.positions_mm[k]:g} mm", transform=ax.transAxes, ha="right", va="top",
                    fontsize=8)
        ax.set_xlim(view.t_ms[0], view.t_ms[-1])
        cv = "no estimate" if not np.isfinite(view.velocity_m_s) else f"{view.velocity_m_s:.1f} m/s"
        self.figure.suptitle(f"last {self.n_sweeps} sweeps (grey), mean (colour), latency (red); "
                             f"conduction velocity {cv}", fontsize=10)

    def png(self) -> bytes:
        self.figure.canvas.draw()
        return _png(np.asarray(self.figure.canvas.buffer_rgba()))


_SETTINGS = (("vpp", "voltage", "Vpp", 0.1), ("period_ms", "period", "ms", 0.1), ("rate_hz", "rate", "pulses/s", 0.1))
SWEEP_REDRAW_S = 0.5   # the sweep view's analysis takes ~0.2 s: at most two redraws a second
_GAINS = {"auto": None, "±50 µV": 50.0, "±100 µV": 100.0, "±200 µV": 200.0, "±500 µV": 500.0, "±1 mV": 1000.0}
_TIMEBASES = {"2 s": 2.0, "1 s": 1.0, "0.5 s": 0.5}


class RigPanel:
    """ipywidgets view over ``controller`` (see the module docstring); ``panel.widget`` is the box to display.

    One panel per kernel: creating one closes the panels created before it (their controllers too, unless
    shared with the new one), so re-running the panel's cell leaves no stream behind; the kernel's exit closes
    the last one (``atexit``)."""

    _open: "weakref.WeakSet[RigPanel]" = weakref.WeakSet()

    def __init__(self, controller: RigController, refresh_hz: float = 10.0, width_px: int = 800):
        if not 1 <= refresh_hz <= 30:
            raise ValueError(f"refresh_hz={refresh_hz!r}; allowed: 1 to 30 (the panel aims at 10-20 Hz)")
        for old in list(RigPanel._open):
            old.close(keep_controller=old.ctl is controller)
        RigPanel._open.add(self)
        self.ctl, self.refresh_hz, self.width_px = controller, float(refresh_hz), width_px
        self.plot = TracePlot(width_px=width_px)
        self.ticks = self.redraws = 0
        self._drawn: tuple | None = None
        self._shown: tuple | None = None
        self._sweeps_due = 0.0                 # the sweep view's next redraw, at the earliest
        self._task: asyncio.Task | None = None
        self._syncing = False

        self.url = w.Text(value=controller.url, description="device", layout=w.Layout(width="320px"))
        self.connect_button = w.Button(description="Connect", icon="plug")
        self.arm_button = w.Button(description="Arm", icon="bolt", button_style="warning")
        self.disarm_button = w.Button(description="Disarm")
        self.start_button = w.Button(description="Start", icon="play", button_style="success")
        self.stop_button = w.Button(description="STOP", icon="stop", button_style="danger",
                                    layout=w.Layout(width="160px", height="64px"))
        self.stop_button.style.font_weight = "bold"
        self.record = w.Checkbox(value=True, description="record to NWB", indent=False)
        self.sliders = {name: w.FloatSlider(description=f"{label} ({unit})", step=step, continuous_update=False,
                                            readout=False, layout=w.Layout(width="360px"),
                                            style={"description_width": "130px"})
                        for name, label, unit, step in _SETTINGS}
        self.entries = {name: w.Text(continuous_update=False, layout=w.Layout(width="80px"))
                        for name, *_ in _SETTINGS}
        self.ranges = {name: w.HTML() for name, *_ in _SETTINGS}
        self.image = w.Image(format="png", layout=w.Layout(width=f"{width_px}px"))
        self.counters = w.HTML()
        self.status = w.HTML()
        self.indicators = w.HTML()
        self.cv = w.HTML()
        self.view = w.ToggleButtons(options=["traces", "sweeps"], description="view",
                                    style={"description_width": "40px"})
        self.freeze = w.ToggleButton(False, description="Freeze", icon="pause")
        self.gain = w.Dropdown(options=list(_GAINS), value="auto", description="gain", layout=w.Layout(width="170px"),
                               style={"description_width": "40px"})
        self.timebase = w.Dropdown(options=list(_TIMEBASES), value="2 s", description="timebase",
                                   layout=w.Layout(width="190px"), style={"description_width": "70px"})
        self.sweep_plot = SweepPlot(width_px=width_px)
        for name, widget in [("connect", self.connect_button), ("arm", self.arm_button),
                             ("disarm", self.disarm_button), ("start", self.start_button),
                             ("stop", self.stop_button), ("counters", self.counters), ("status", self.status),
                             ("traces", self.image), ("indicators", self.indicators), ("view", self.view),
                             ("freeze", self.freeze), ("gain", self.gain), ("timebase", self.timebase), ("cv", self.cv),
                             *self.sliders.items(),
                             *((f"{k}-entry", v) for k, v in self.entries.items())]:
            widget.add_class(f"labkit-rig-{name.replace('_', '-')}")
        self.connect_button.on_click(lambda _: self._act(self._toggle_connection))
        self.arm_button.on_click(lambda _: self._act(self.ctl.arm))
        self.disarm_button.on_click(lambda _: self._act(self.ctl.disarm))
        self.start_button.on_click(lambda _: self._act(lambda: self.ctl.start(record=self.record.value)))
        self.stop_button.on_click(lambda _: self._act(lambda: self.ctl.stop(on_device_stopped=self._show_status)))
        for name in self.sliders:
            self.sliders[name].observe(lambda change, name=name: self._on_setting(name, change["new"]),
                                       names="value")
            self.entries[name].observe(lambda change, name=name: self._on_entry(name, change["new"]), names="value")
        self._sync_controls()

        for display_control in (self.view, self.freeze, self.gain, self.timebase):
            display_control.observe(lambda _change: self.refresh(force=True), names="value")
        controls = w.VBox([w.HBox([self.url, self.connect_button]),
                           w.HBox([self.arm_button, self.disarm_button, self.start_button, self.record]),
                           *(w.HBox([self.sliders[n], self.entries[n], self.ranges[n]]) for n, *_ in _SETTINGS),
                           self.counters, self.status])
        self.widget = w.VBox([w.HBox([controls, w.VBox([self.stop_button, self.indicators])]),
                              w.HBox([self.view, self.gain, self.timebase, self.freeze]), self.cv, self.image])
        self.widget.add_class("labkit-rig-panel")
        self.refresh(force=True)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
        self.start_updates()

    def close(self, keep_controller: bool = False) -> None:
        """Stop the updates and close the controller (disconnecting the device) unless ``keep_controller``."""
        self.stop_updates()
        RigPanel._open.discard(self)
        if not keep_controller:
            self.ctl.close()

    # --- widget -> controller --------------------------------------------------------------------
    def _act(self, action) -> None:
        try:
            action()
        except Exception as e:                     # shown in the panel: a click must never kill the view
            self.ctl.message = f"{type(e).__name__}: {e}"
        self._sync_controls()
        self.refresh()

    def _toggle_connection(self) -> None:
        if self.ctl.rig is None:
            self.ctl.connect(self.url.value)
        else:
            self.ctl.disconnect()

    def _on_setting(self, name: str, value) -> None:
        if self._syncing:
            return
        try:
            self.ctl.set_stimulus(**{name: value})
        except ValueError as e:
            self.ctl.message = str(e)
        self._sync_controls()                              # clamped or refused: show what is in force
        self.refresh()

    def _on_entry(self, name: str, text: str) -> None:
        """A typed value: parsed here so that a non-number or an out-of-range number is named, not ignored."""
        if self._syncing:
            return
        try:
            value = float(text)
        except ValueError:
            lo, hi = stimulus_ranges(self.ctl.limits)[name]
            self.ctl.message = f"{name}: {text!r} is not a number; allowed: {lo:g} to {hi:g}"
            self._sync_controls()
            self.refresh()
            return
        self._on_setting(name, value)

    def _sync_controls(self) -> None:
        """Ranges from the device's limits, values from the settings in force, the connect button's label from the
        connection: what the panel shows is what the device will get."""
        self._syncing = True
        try:
            for name, (lo, hi) in stimulus_ranges(self.ctl.limits).items():
                slider, value = self.sliders[name], getattr(self.ctl.settings, name)
                slider.min, slider.max = -1e300, 1e300          # widen first: min/max validate each other
                slider.min, slider.max = lo, hi
                slider.value = value
                self.entries[name].value = f"{value:.2f}"
                self.ranges[name].value = f"<span class='labkit-rig-range'>{lo:g} – {hi:g}</span>"
        finally:
            self._syncing = False
        self.connect_button.description = "Connect" if self.ctl.rig is None else "Disconnect"
        self._shown = self._state_shown()

    def _state_shown(self) -> tuple:
        return self.ctl.settings, self.ctl.limits, self.ctl.rig is None

    # --- controller -> widgets -------------------------------------------------------------------
    def refresh(self, force: bool = False) -> bool:
        """One tick: controls (when the controller's settings, limits or connection changed), counters and status
        always; the traces only when new samples arrived. True if redrawn. An error is shown in the status line
        and the next tick tries again."""
        self.ticks += 1
        try:
            if self._state_shown() != self._shown:
                self._sync_controls()
            snap = self._show_status()
            if self.freeze.value and not force:
                return False
            gain, sweeps = _GAINS[self.gain.value], self.view.value == "sweeps"
            key = (self.ctl.sweeps_collected if sweeps else (snap.t_end_s, len(snap.motion)),
                   snap.state, snap.settings, self.view.value, self.gain.value, self.timebase.value)
            if not force and (key == self._drawn or (sweeps and time.monotonic() < self._sweeps_due)):
                return False                    # nothing new, or the sweep view redrawn < SWEEP_REDRAW_S ago
            if sweeps:
                self._sweeps_due = time.monotonic() + SWEEP_REDRAW_S
            self._drawn = key
            if sweeps:
                view = self.ctl.sweeps()
                self.sweep_plot.update(view, gain)
                self.image.value = self.sweep_plot.png()
                self.cv.value = "" if view is None else (
                    f"<span class='labkit-rig-sweeps'>{len(view.sweeps_uv)}</span> sweeps · conduction velocity "
                    + (f"<span class='labkit-rig-cv-value'>{view.velocity_m_s:.1f}</span> m/s"
                       if np.isfinite(view.velocity_m_s) else "– (no sweep with a first spike on 3 pairs clear "
                                                              "of the artefact)")
                    + " · median latency "
                    + ", ".join(f"{np.nanmedian(a):.2f}" if np.isfinite(a).any() else "–"
                                for a in view.arrivals_ms.T) + " ms (pairs 1–4)")
            else:
                self.plot.update(snap, gain, _TIMEBASES[self.timebase.value])
                self.image.value = self.plot.png()
        except Exception as e:
            self.status.value = f"<b style=color:#c00>display error</b>: {html.escape(f'{type(e).__name__}: {e}')}"
            return False
        self.redraws += 1
        return True

    def _show_status(self) -> Snapshot:
        snap = self.ctl.snapshot(self.width_px)
        c = snap.counters
        self.counters.value = (
            f"<b>frames</b> <span class='labkit-rig-frames'>{c['frames']}</span> · "
            f"<b>gaps</b> {c['gaps']} · <b>CRC errors</b> {c['crc_errors']} · "
            f"<b>samples lost</b> {c['samples_lost']} · "
            f"<b>pulses</b> <span class='labkit-rig-pulses'>{c['pulses']}</span> · <b>refused</b> {c['refused']}")
        last = ("none" if snap.last_pulse is None else
                f"<span class='labkit-rig-last-vpp'>{snap.last_pulse.vpp_requested:.2f}</span> Vpp asked, "
                f"{snap.last_pulse.vpp_measured:.2f} delivered, {snap.last_pulse.period_ms_measured:.2f} ms")
        badge = ("<div style='font:bold 22px sans-serif;color:white;background:{};padding:4px 10px;margin:4px 0;"
                 "border-radius:6px;text-align:center'>{}</div>")
        self.indicators.value = (badge.format("#c00" if snap.armed else "#999", "ARMED" if snap.armed else "disarmed")
                                 + badge.format("#c00" if self.ctl.recording else "#999",
                                                "● REC" if self.ctl.recording else "not recording"))
        self.status.value = (f"<b>state</b> <span class='labkit-rig-state'>{snap.state}</span>"
                             f"{' · <b style=color:#c00>ARMED</b>' if snap.armed else ' · disarmed'} · "
                             f"last pulse: {last}<br><span class='labkit-rig-message'>"
                             f"{html.escape(snap.message)}</span>")
        return snap

    def start_updates(self) -> None:
        """Refresh at ``refresh_hz`` from an asyncio task on the running (kernel's) event loop, if there is one."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                loop = asyncio.get_event_loop()
            except RuntimeError:
                return
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._updates())

    def stop_updates(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _updates(self) -> None:
        """Tick at ``refresh_hz`` on a fixed schedule (a slow tick shortens the next wait, never adds to it)."""
        period = 1.0 / self.refresh_hz
        due = time.monotonic()
        while True:
            self.refresh()                              # never raises: errors go to the status line
            due = max(due + period, time.monotonic())
            await asyncio.sleep(due - time.monotonic())


@atexit.register
def _close_panels() -> None:
    for panel in list(RigPanel._open):
        panel.close()


# --- notebook 05b: the scripted session, its replay and figures ---------------------------------------

def run_scripted_session(ctl: RigController, vpps, period_ms: float, rate_hz: float, tail_s: float = 0.3,
                         timeout_s: float = 10.0) -> SessionResult:
    """Connect (if needed), arm, record and ask for one pulse per value of ``vpps`` (the controller clamps them),
    wait ``tail_s`` after the last echo, then the big stop, and leave the controller at the default (safe)
    stimulus settings, disarmed. Returns the stopped session (NWB written)."""

    if ctl.rig is None:
        ctl.connect()
    ctl.set_stimulus(vpp=vpps[0], period_ms=period_ms, rate_hz=rate_hz)
    n0 = len(ctl.pulses)
    ctl.arm()
    ctl.start(record=True)
    try:
        for k, vpp in enumerate(vpps):
            ctl.set_stimulus(vpp=vpp)
            deadline = time.monotonic() + timeout_s + 1.0 / rate_hz
            while len(ctl.pulses) < n0 + k + 1:
                if ctl.refused or time.monotonic() > deadline:
                    raise RuntimeError(f"pulse {k + 1} of the scripted session did not come: {ctl.message}")
                time.sleep(0.002)
        ctl.disarm()                                     # no pulse beyond the script while the tail records
        time.sleep(tail_s)
    finally:
        try:
            session = ctl.stop()
        finally:
            ctl.set_stimulus(**asdict(StimulusSettings()))
    return session


@dataclass
class Replay:
    """The sample-exact replay of a session's pulses (see :func:`replay_session`)."""

    snapshot: Snapshot
    onsets_s: np.ndarray
    vpp_measured: np.ndarray


def _worm_for(url: str) -> Earthworm:
    parts = urlsplit(url)
    if parts.scheme != "rigsim":
        raise ValueError(f"replay needs the simulator's URL (rigsim://...), got {url!r}")
    kwargs = parse_query(parts.query)
    kwargs.pop("block_samples", None)
    kwargs.pop("max_backlog_bytes", None)
    return Earthworm(**kwargs)


def replay_session(url: str, pulses, rate_hz: float, *, pre_s: float = 0.25, tail_s: float = 0.5,
                   n_bins: int = 800, camera_fps: float = 20.0, camera_size=(320, 80),
                   settings: StimulusSettings = StimulusSettings(), tracker_factory=default_tracker) -> Replay:
    """The simulator's deterministic signal for ``pulses`` (their requested Vpp and period, in order) delivered at
    ``pre_s + k / rate_hz`` on a fresh worm built from ``url``; drawn data as the live panel would show it."""
    worm = _worm_for(url)
    onsets = pre_s + np.arange(len(pulses)) / rate_hz
    measured = [worm.deliver(float(t), p.vpp_requested, p.period_ms_requested)["vpp_measured"]
                for t, p in zip(onsets, pulses)]
    window_s = float(onsets[-1] + tail_s) if len(pulses) else pre_s + tail_s
    n = int(round(window_s * worm.fs_hz))
    scale = 0.2                                            # the device's µV per count (labkit.rig.device)
    samples = np.rint(worm.acquire(0, n) / scale) * scale
    pos, traces = decimate_minmax(samples, n_bins)
    times, frames = Camera(worm, fps=camera_fps, size=camera_size, seed=worm.seed).frames_until(window_s, onsets)
    tracker = tracker_factory(worm.params.n_zones)
    motion = np.array([tracker.update(frame).motion for frame in frames])
    spans = np.column_stack([onsets, onsets + np.array([p.period_ms_requested for p in pulses]) / 1e3])
    snap = Snapshot(pos / worm.fs_hz, traces, times, motion, window_s, window_s, spans.reshape(-1, 2), {},
                    "replay", False, settings, None, "")
    return Replay(snap, onsets, np.asarray(measured))


def nwb_pulse_count(nwb_path) -> int:
    """Rows of the NWB file's delivered_pulses table."""
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(nwb_path), "r") as io_:
        return len(io_.read().intervals["delivered_pulses"])


def pulses_figure(asked_vpp, pulses, limits: SafetyLimits, counters: dict, nwb_errors: int) -> Figure:
    """Asked vs requested (after the panel's clamp) vs delivered Vpp per pulse, against the device limit; and the
    session's counters."""
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax, text_ax = fig.subplots(1, 2, width_ratios=(2.2, 1))
    k, kp = np.arange(1, len(asked_vpp) + 1), np.arange(1, len(pulses) + 1)
    ax.axhspan(limits.max_vpp, max(limits.max_vpp, max(asked_vpp)) * 1.15, color="C3", alpha=0.12,
               label="above the device limit")
    ax.axhline(limits.max_vpp, color="C3", ls="--", lw=1)
    ax.plot(k, asked_vpp, "o", mfc="none", ms=9, color="0.4", label="asked (widget / script)")
    ax.plot(kp, [p.vpp_requested for p in pulses], "x", ms=8, color="C0",
            label="requested by the panel")
    ax.plot(kp, [p.vpp_measured for p in pulses], ".", ms=7, color="C2",
            label="delivered (device echo)")
    ax.set_xlabel("pulse number")
    ax.set_ylabel("stimulus (V peak-to-peak)")
    ax.set_xticks(k if len(k) >= len(kp) else kp)
    ax.set_ylim(0, max(limits.max_vpp, max(asked_vpp)) * 1.15)
    ax.set_title("scripted session: every pulse within the device limit")
    ax.legend(loc="upper left", fontsize=7)
    rows = [("pulses asked", len(asked_vpp)), ("pulses echoed", len(pulses)),
            ("frames lost (gaps)", counters["lost_frames"]), ("CRC / bad frames", counters["bad_frames"]),
            ("samples lost", counters["samples_lost"]), ("NWB validation errors", nwb_errors)]
    text_ax.axis("off")
    text_ax.grid(False)
    text_ax.set_title("session counters")
    for i, (name, value) in enumerate(rows):
        y = 0.9 - i * 0.15
        text_ax.text(0.0, y, name, fontsize=9, transform=text_ax.transAxes)
        text_ax.text(1.0, y, str(value), fontsize=9, ha="right", transform=text_ax.transAxes, weight="bold")
    return fig


_vpps = Check(lambda v: isinstance(v, (tuple, list)) and len(v) >= 1
              and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v),
              "a non-empty list of numbers (out-of-limit values are clamped by the panel)")


@dataclass(frozen=True)
class LivePanelConfig(NotebookConfig):
    """Notebook 05b. ``url`` "" = the simulator with the notebook's seed; ``script_vpp`` is what the scripted
    session asks for, one pulse each (the last quick value, 12 V, is above the 10 V limit on purpose: the panel
    must clamp it); ``readback_tolerance_v`` is the claim's allowed |delivered − requested| (fixed beforehand:
    the simulated read-back has a 0.5 % gain error and 0.01 V noise)."""

    url: str = param("", Check(lambda v: isinstance(v, str), "a string: '' (simulator) or a pyserial URL/port"))
    script_vpp: tuple = param((2.0, 3.0, 4.0, 5.0, 6.0, 12.0), _vpps)
    period_ms: float = param(3.0, positive_float)
    rate_hz: float = param(1.0, positive_float)
    tail_s: float = param(0.3, positive_float)
    window_s: float = param(2.0, positive_float)
    refresh_hz: float = param(10.0, positive_float)
    camera_fps: float = param(20.0, positive_float)
    readback_tolerance_v: float = param(0.1, positive_float)

    SCALES = {"smoke": dict(script_vpp=(3.0, 12.0), rate_hz=4.0), "quick": {}, "paper": {}}

    @property
    def device_url(self) -> str:
        return self.url or f"rigsim://?seed={self.seed}"

    def validate(self) -> None:
        if not 1 <= self.refresh_hz <= 30:
            raise ConfigError(f"LivePanelConfig: bad value for 'refresh_hz': {self.refresh_hz!r}; allowed: 1 to 30")
