"""The live panel's drawings: :class:`TracePlot` (the traces of the 4 pairs and the motion signal) and
:class:`SweepPlot` (the stimulus-triggered sweeps), each a matplotlib figure on the Agg canvas encoded as PNG.

Drawing. The traces' lines are updated in place (``set_data``) and blitted over a saved background; the panel
(labkit.rig.ui.panel) sends a PNG to an ``ipywidgets.Image`` at its refresh rate. This needs no extension beyond
ipywidgets (the ipympl canvas needs its JupyterLab extension and a live frontend to draw at all), renders the same
under papermill and in a browser, and a test can read the pixels.
"""

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from labkit.rig.ui.display import WIDTH_PX, Snapshot, SweepView

__all__ = ["TracePlot", "SweepPlot"]

HEIGHT_PX = 480                 # the panel's plots, pixels high

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

    def __init__(self, n_channels: int = 4, width_px: int = WIDTH_PX, height_px: int = HEIGHT_PX, dpi: int = 100,
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

    def __init__(self, n_channels: int = 4, width_px: int = WIDTH_PX, height_px: int = HEIGHT_PX, dpi: int = 100):
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
