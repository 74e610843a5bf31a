"""The live rig panel: a thin ipywidgets view over :class:`labkit.rig.ui.controller.RigController`.

    panel = RigPanel(RigController("rigsim://?seed=0"))
    panel                       # in JupyterLab: Connect, Arm, Start, the big STOP, settings, traces or sweeps

The view shows either the live traces (4 pairs and the motion signal, a 0.5–2 s timebase), the stimulus-triggered
sweeps (labkit.rig.ui.plots.SweepPlot: the last sweeps per pair, artefact removed, a latency cursor and a live
conduction velocity) or Auto-map's search (labkit.rig.ui.plots.AutoMapPlot); a gain control fixes the µV range
(auto: scaled to the response), Freeze holds the picture while the counters and status run on, and large ARMED and
REC indicators sit under STOP.

Auto-map (labkit.rig.ui.automap) runs the closed-loop search of both fibres' strength–duration curves on the armed
rig in place of the pulse schedule (each refuses while the other runs); STOP ends it within one trial. Its line under
the status shows its state and trial count; when it ends on its own, the next refresh tick runs the big stop (NWB).

Every widget callback calls the controller and shows what it answers: the sliders' ranges come from the
device's limits (its INFO) and a slider is set back to whatever the controller put in force (clamped, or the
previous value when refused), so the panel never shows a setting the device will not get.

Refresh. The drawings (labkit.rig.ui.plots) are sent as PNGs to an ``ipywidgets.Image`` at ``refresh_hz`` (10 Hz
default) by an asyncio task on the kernel's event loop — never from a reader thread. Redraws are skipped when no
new sample arrived. Notebook 05b's scripted session and replay are labkit.rig.ui.scripted.
"""

import asyncio
import atexit
import html
import time
import weakref

import ipywidgets as w
import numpy as np

from labkit.rig.firmware.limits import RigError
from labkit.rig.ui.automap import AutoMap
from labkit.rig.ui.controller import RigController
from labkit.rig.ui.display import WIDTH_PX, Snapshot
from labkit.rig.ui.plots import AutoMapPlot, SweepPlot, TracePlot
from labkit.rig.ui.settings import stimulus_ranges

__all__ = ["REFRESH_HZ", "REFRESH_RANGE_HZ", "RigPanel"]

REFRESH_HZ, REFRESH_RANGE_HZ = 10.0, (1.0, 30.0)  # the panel's refresh rate: default, allowed (it aims at 10-20 Hz)
_SETTINGS = (("vpp", "voltage", "Vpp", 0.1), ("period_ms", "period", "ms", 0.1), ("rate_hz", "rate", "pulses/s", 0.1))
FIGURE_REDRAW_S = 0.5  # the sweep and auto-map views take ~0.2 s to draw: at most two redraws a second
_GAINS = {"auto": None, "±50 µV": 50.0, "±100 µV": 100.0, "±200 µV": 200.0, "±500 µV": 500.0, "±1 mV": 1000.0}
_TIMEBASES = {"2 s": 2.0, "1 s": 1.0, "0.5 s": 0.5}


class RigPanel:
    """ipywidgets view over ``controller`` (see the module docstring); ``panel.widget`` is the box to display.

    One panel per kernel: creating one closes the panels created before it (their controllers too, unless
    shared with the new one), so re-running the panel's cell leaves no stream behind; the kernel's exit closes
    the last one (``atexit``). ``automap``: the Auto-map search to run (default: ``AutoMap(controller)``)."""

    _open: "weakref.WeakSet[RigPanel]" = weakref.WeakSet()

    def __init__(
        self,
        controller: RigController,
        refresh_hz: float = REFRESH_HZ,
        width_px: int = WIDTH_PX,
        automap: AutoMap | None = None,
    ):
        lo, hi = REFRESH_RANGE_HZ
        if not lo <= refresh_hz <= hi:
            raise ValueError(f"refresh_hz={refresh_hz!r}; allowed: {lo:g} to {hi:g} (the panel aims at 10-20 Hz)")
        if automap is not None and automap.ctl is not controller:
            raise ValueError("automap: an AutoMap of another controller; allowed: AutoMap(controller) or None")
        for old in list(RigPanel._open):
            old.close(keep_controller=old.ctl is controller)
        RigPanel._open.add(self)
        self.ctl, self.refresh_hz, self.width_px = controller, float(refresh_hz), width_px
        self.automap = automap if automap is not None else AutoMap(controller)
        self.plot = TracePlot(width_px=width_px)
        self.ticks = self.redraws = 0
        self._drawn: tuple | None = None
        self._shown: tuple | None = None
        self._figure_due = 0.0  # the sweep or auto-map view's next redraw, at the earliest
        self._task: asyncio.Task | None = None
        self._syncing = False

        self.url = w.Text(value=controller.url, description="device", layout=w.Layout(width="320px"))
        self.connect_button = w.Button(description="Connect", icon="plug")
        self.arm_button = w.Button(description="Arm", icon="bolt", button_style="warning")
        self.disarm_button = w.Button(description="Disarm")
        self.start_button = w.Button(description="Start", icon="play", button_style="success")
        self.automap_button = w.Button(
            description="Auto-map",
            icon="crosshairs",
            button_style="info",
            tooltip="closed-loop search of the fibres' strength-duration curves (Arm first)",
        )
        self.stop_button = w.Button(
            description="STOP", icon="stop", button_style="danger", layout=w.Layout(width="160px", height="64px")
        )
        self.stop_button.style.font_weight = "bold"
        self.record = w.Checkbox(value=True, description="record to NWB", indent=False)
        self.sliders = {
            name: w.FloatSlider(
                description=f"{label} ({unit})",
                step=step,
                continuous_update=False,
                readout=False,
                layout=w.Layout(width="360px"),
                style={"description_width": "130px"},
            )
            for name, label, unit, step in _SETTINGS
        }
        self.entries = {name: w.Text(continuous_update=False, layout=w.Layout(width="80px")) for name, *_ in _SETTINGS}
        self.ranges = {name: w.HTML() for name, *_ in _SETTINGS}
        self.image = w.Image(format="png", layout=w.Layout(width=f"{width_px}px"))
        self.counters = w.HTML()
        self.status = w.HTML()
        self.indicators = w.HTML()
        self.cv = w.HTML()
        self.automap_status = w.HTML()
        self.view = w.ToggleButtons(
            options=["traces", "sweeps", "auto-map"],
            description="view",
            style={"description_width": "40px", "button_width": "90px"},
        )
        self.freeze = w.ToggleButton(False, description="Freeze", icon="pause")
        self.gain = w.Dropdown(
            options=list(_GAINS),
            value="auto",
            description="gain",
            layout=w.Layout(width="170px"),
            style={"description_width": "40px"},
        )
        self.timebase = w.Dropdown(
            options=list(_TIMEBASES),
            value="2 s",
            description="timebase",
            layout=w.Layout(width="190px"),
            style={"description_width": "70px"},
        )
        self.sweep_plot = SweepPlot(width_px=width_px)
        self.automap_plot = AutoMapPlot(width_px=width_px)
        for name, widget in [
            ("connect", self.connect_button),
            ("arm", self.arm_button),
            ("disarm", self.disarm_button),
            ("start", self.start_button),
            ("automap", self.automap_button),
            ("automap-status", self.automap_status),
            ("stop", self.stop_button),
            ("counters", self.counters),
            ("status", self.status),
            ("traces", self.image),
            ("indicators", self.indicators),
            ("view", self.view),
            ("freeze", self.freeze),
            ("gain", self.gain),
            ("timebase", self.timebase),
            ("cv", self.cv),
            *self.sliders.items(),
            *((f"{k}-entry", v) for k, v in self.entries.items()),
        ]:
            widget.add_class(f"labkit-rig-{name.replace('_', '-')}")
        self.connect_button.on_click(lambda _: self._act(self._toggle_connection))
        self.arm_button.on_click(lambda _: self._act(self.ctl.arm))
        self.disarm_button.on_click(lambda _: self._act(self.ctl.disarm))
        self.start_button.on_click(lambda _: self._act(self._start))
        self.automap_button.on_click(lambda _: self._act(self._start_automap))
        self.stop_button.on_click(lambda _: self._act(lambda: self.ctl.stop(on_device_stopped=self._show_status)))
        for name in self.sliders:
            self.sliders[name].observe(lambda change, name=name: self._on_setting(name, change["new"]), names="value")
            self.entries[name].observe(lambda change, name=name: self._on_entry(name, change["new"]), names="value")
        self._sync_controls()

        for display_control in (self.view, self.freeze, self.gain, self.timebase):
            display_control.observe(lambda _change: self.refresh(force=True), names="value")
        controls = w.VBox(
            [
                w.HBox([self.url, self.connect_button]),
                w.HBox([self.arm_button, self.disarm_button, self.start_button, self.automap_button, self.record]),
                *(w.HBox([self.sliders[n], self.entries[n], self.ranges[n]]) for n, *_ in _SETTINGS),
                self.counters,
                self.status,
                self.automap_status,
            ]
        )
        self.widget = w.VBox(
            [
                w.HBox([controls, w.VBox([self.stop_button, self.indicators])]),
                w.HBox([self.view, self.gain, self.timebase, self.freeze]),
                self.cv,
                self.image,
            ]
        )
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
        except Exception as e:  # shown in the panel: a click must never kill the view
            self.ctl.message = f"{type(e).__name__}: {e}"
        self._sync_controls()
        self.refresh()

    def _start(self) -> None:
        if self.automap.running:
            raise RigError(
                "Auto-map is running: press STOP before Start (the pulse schedule and the search never "
                "stimulate together)"
            )
        self.ctl.start(record=self.record.value)

    def _start_automap(self) -> None:
        self.automap.start(record=self.record.value)
        self.view.value = "auto-map"

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
        self._sync_controls()  # clamped or refused: show what is in force
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
                slider.min, slider.max = -1e300, 1e300  # widen first: min/max validate each other
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
        """One tick: a search that ended on its own settled (:meth:`AutoMap.settle`), controls (when the
        controller's settings, limits or connection changed), counters and status always; the view only when there
        is something new to draw. True if redrawn. An error is shown in the status line and the next tick tries
        again."""
        self.ticks += 1
        try:
            self.automap.settle()  # a search that ended on its own: the big stop, here
            if self._state_shown() != self._shown:
                self._sync_controls()
            snap = self._show_status()
            if self.freeze.value and not force:
                return False
            view, gain = self.view.value, _GAINS[self.gain.value]
            news = {"sweeps": self.ctl.sweeps_collected, "auto-map": self.automap.updates}
            key = (
                news.get(view, (snap.t_end_s, len(snap.motion))),
                snap.state,
                snap.settings,
                view,
                self.gain.value,
                self.timebase.value,
            )
            if not force and (key == self._drawn or (view in news and time.monotonic() < self._figure_due)):
                return False  # nothing new, or a whole-figure view redrawn < FIGURE_REDRAW_S ago
            if view in news:
                self._figure_due = time.monotonic() + FIGURE_REDRAW_S
            self._drawn = key
            if view == "auto-map":
                am, mapped = self.automap, self.automap.view  # the search thread may publish a newer one
                self.automap_plot.update(mapped, am.space, f"Auto-map ({am.state}): {am.message}")
                self.image.value = self.automap_plot.png()
                self.cv.value = (
                    f"<span class='labkit-rig-automap-drawn'>{0 if mapped is None else len(mapped.vpp)}"
                    "</span> stimuli drawn (Auto-map's view)"
                )
            elif view == "sweeps":
                sweeps = self.ctl.sweeps()
                self.sweep_plot.update(sweeps, gain)
                self.image.value = self.sweep_plot.png()
                self.cv.value = (
                    ""
                    if sweeps is None
                    else (
                        f"<span class='labkit-rig-sweeps'>{len(sweeps.sweeps_uv)}</span> sweeps · conduction velocity "
                        + (
                            f"<span class='labkit-rig-cv-value'>{sweeps.velocity_m_s:.1f}</span> m/s"
                            if np.isfinite(sweeps.velocity_m_s)
                            else "– (no sweep with a first spike on 3 pairs clear of the artefact)"
                        )
                        + " · median latency "
                        + ", ".join(
                            f"{np.nanmedian(a):.2f}" if np.isfinite(a).any() else "–" for a in sweeps.arrivals_ms.T
                        )
                        + " ms (pairs 1–4)"
                    )
                )
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
            f"<b>pulses</b> <span class='labkit-rig-pulses'>{c['pulses']}</span> · <b>refused</b> {c['refused']}"
        )
        last = (
            "none"
            if snap.last_pulse is None
            else f"<span class='labkit-rig-last-vpp'>{snap.last_pulse.vpp_requested:.2f}</span> Vpp asked, "
            f"{snap.last_pulse.vpp_measured:.2f} delivered, {snap.last_pulse.period_ms_measured:.2f} ms"
        )
        badge = (
            "<div style='font:bold 22px sans-serif;color:white;background:{};padding:4px 10px;margin:4px 0;"
            "border-radius:6px;text-align:center'>{}</div>"
        )
        self.indicators.value = badge.format(
            "#c00" if snap.armed else "#999", "ARMED" if snap.armed else "disarmed"
        ) + badge.format("#c00" if self.ctl.recording else "#999", "● REC" if self.ctl.recording else "not recording")
        self.status.value = (
            f"<b>state</b> <span class='labkit-rig-state'>{snap.state}</span>"
            f"{' · <b style=color:#c00>ARMED</b>' if snap.armed else ' · disarmed'} · "
            f"last pulse: {last}<br><span class='labkit-rig-message'>"
            f"{html.escape(snap.message)}</span>"
        )
        am = self.automap
        trials = 0 if am.view is None else len(am.view.mgf)
        self.automap_status.value = (
            f"<b>Auto-map</b> <span class='labkit-rig-automap-state'>{am.state}</span> · trials "
            f"<span class='labkit-rig-automap-trials'>{trials}</span> · {html.escape(am.message)}"
        )
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
            self.refresh()  # never raises: errors go to the status line
            due = max(due + period, time.monotonic())
            await asyncio.sleep(due - time.monotonic())


@atexit.register
def _close_panels() -> None:
    for panel in list(RigPanel._open):
        panel.close()
