"""The live panel's drawings: :class:`TracePlot` (the traces of the 4 pairs and the motion signal),
:class:`SweepPlot` (the stimulus-triggered sweeps) and :class:`AutoMapPlot` (what Auto-map's search has chosen and
learnt), each a matplotlib figure on the Agg canvas encoded as PNG.

Drawing. The traces' lines are updated in place (``set_data``) and blitted over a saved background; the panel
(labkit.rig.ui.panel) sends a PNG to an ``ipywidgets.Image`` at its refresh rate. This needs no extension beyond
ipywidgets (the ipympl canvas needs its JupyterLab extension and a live frontend to draw at all), renders the same
under papermill and in a browser, and a test can read the pixels.
"""

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from labkit.rig.experiments.search import SearchSpace
from labkit.rig.experiments.strength_duration import FibreModel
from labkit.rig.ui.automap import AutoMapView
from labkit.rig.ui.display import WIDTH_PX, Snapshot, SweepView

__all__ = ["TracePlot", "SweepPlot", "threshold_se_vpp", "AutoMapPlot"]

HEIGHT_PX = 480  # the panel's plots, pixels high

_COLOURS = ("C0", "C1", "C2", "C3")
_NICE_UV = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
_NICE_STRAIN = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _nice_limit(peak: float, steps=_NICE_UV) -> float:
    """The smallest of ``steps`` above ``peak`` (the last one if none): axis limits that change rarely."""
    return next((s for s in steps if s >= peak), steps[-1])


def _png(rgba: np.ndarray) -> bytes:
    """An RGBA canvas as PNG bytes (OpenCV, fast compression: the panel encodes one per tick)."""
    _, data = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return data.tobytes()


def _figure_png(figure: Figure) -> bytes:
    """The whole ``figure`` drawn and encoded (:func:`_png`): for the views redrawn whole."""
    figure.canvas.draw()
    return _png(np.asarray(figure.canvas.buffer_rgba()))


class TracePlot:
    """The panel's traces: one axis per recording pair plus the motion signal, lines updated in place.

    Each pair's axis is scaled to what lies outside the stimulus artefacts (the artefact, mV against the
    response's tens of µV, is clipped at the axis edge), so the evoked response stays readable.

    ``live=True`` draws the axes once and then only the lines over a saved background (blitting), re-drawing
    everything only when an axis limit changes (limits move in coarse steps, :func:`_nice_limit`); the layout is
    computed once, for the widest tick labels, and kept, which halves a whole redraw (benchmarks/
    bench_rig_panel.py) — a click on the panel waits for a redraw under way. ``png()`` encodes the canvas with
    OpenCV. ``live=False`` is an ordinary figure (for ``savefig``).
    """

    def __init__(
        self,
        n_channels: int = 4,
        width_px: int = WIDTH_PX,
        height_px: int = HEIGHT_PX,
        dpi: int = 100,
        title: str = "live traces",
        live: bool = True,
    ):
        self.live = live
        self.figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
        FigureCanvasAgg(self.figure)
        axes = self.figure.subplots(n_channels + 1, 1, sharex=True)
        self.trace_axes, self.motion_axis = list(axes[:-1]), axes[-1]
        self.lines = [
            ax.plot([], [], lw=0.6, color=_COLOURS[k % 4], animated=live)[0] for k, ax in enumerate(self.trace_axes)
        ]
        for k, ax in enumerate(self.trace_axes):
            ax.set_ylabel(f"pair {k + 1}\n(µV)")
        (self.motion_line,) = self.motion_axis.plot([], [], lw=1.0, color="k", animated=live)
        self.motion_axis.set_ylabel("motion\n(strain)")
        self.motion_axis.set_xlabel("time (s, 0 = newest sample)")
        self.figure.suptitle(title, fontsize=10)
        if live:  # lay out once, for the widest tick labels, and keep it (class docstring)
            for ax in self.trace_axes:
                ax.set_ylim(-_NICE_UV[-1], _NICE_UV[-1])
            self.motion_axis.set_ylim(-_NICE_STRAIN[0], _NICE_STRAIN[0])
            self.motion_axis.set_xlim(-2.0, 0.0)  # the 2 s timebase: two-decimal time labels, the widest
            self.figure.canvas.draw()
            self.figure.set_layout_engine("none")
        self._limits: tuple | None = None
        self._background = None

    def update(self, snap: Snapshot, gain_uv: float | None = None, window_s: float | None = None) -> None:
        """Lines from ``snap``; each pair's axis ±``gain_uv`` (None: scaled to what lies outside the artefacts),
        the last ``window_s`` seconds shown (None: the whole window)."""
        x = snap.t_s - snap.t_end_s
        limits = [(-min(window_s or snap.window_s, snap.window_s), 0.0)]
        centres = np.unique(snap.t_s)  # decimated points come in (min, max) pairs
        pad = 0.5 * float(np.median(np.diff(centres))) if len(centres) > 1 else 0.0  # half a bin
        clear = np.ones(len(snap.t_s), bool)  # bins that do not overlap a stimulus artefact
        for a, b in snap.artefacts_s:
            clear &= (snap.t_s < a - pad) | (snap.t_s >= b + pad)
        for k, line in enumerate(self.lines):
            y = snap.traces_uv[:, k] if snap.traces_uv.shape[1] > k else np.zeros(len(x))
            line.set_data(x, y)
            seen = np.abs(y[clear & np.isfinite(y)])
            limits.append(gain_uv or _nice_limit(float(seen.max()) if seen.size else 0.0))
        self.motion_line.set_data(snap.motion_t_s - snap.t_end_s, snap.motion)
        finite = np.abs(snap.motion[np.isfinite(snap.motion)])
        limits.append(_nice_limit(float(finite.max()) if finite.size else 0.0, _NICE_STRAIN))
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
            top = gain_uv or _nice_limit(
                float(
                    np.abs(view.sweeps_uv[:, view.t_ms > view.blank_ms[k], k]).max()
                    if (view.t_ms > view.blank_ms[k]).any()
                    else 0.0
                )
            )
            ax.set_ylim(-top, top)
            ax.text(
                0.99, 0.95, f"{view.positions_mm[k]:g} mm", transform=ax.transAxes, ha="right", va="top", fontsize=8
            )
        ax.set_xlim(view.t_ms[0], view.t_ms[-1])
        cv = "no estimate" if not np.isfinite(view.velocity_m_s) else f"{view.velocity_m_s:.1f} m/s"
        self.figure.suptitle(
            f"last {self.n_sweeps} sweeps (grey), mean (colour), latency (red); conduction velocity {cv}", fontsize=10
        )

    def png(self) -> bytes:
        return _figure_png(self.figure)


def threshold_se_vpp(model: FibreModel, period_ms) -> np.ndarray:
    """Standard error of a fibre's fitted threshold V_th(T) at each period T (ms), by the delta method on the
    weights' Laplace covariance Σ (labkit.rig.experiments.strength_duration):

        V_th(T) = 2 Rb (1 + c / d), d = T / 2  =  -2 (w_1 + 2 w_2 / T) / w_0,
        ∇_w V_th = (-V_th / w_0, -2 / w_0, -4 / (w_0 T)),    se = √(∇ᵀ Σ ∇);

    NaN while the model is undefined."""
    t = np.asarray(period_ms, dtype=float)
    if not model.defined:
        return np.full(t.shape, np.nan)
    w0 = model.coef[0]
    grad = np.stack([-model.threshold_vpp(t) / w0, np.full(t.shape, -2.0 / w0), -4.0 / (w0 * t)], axis=-1)
    return np.sqrt(np.einsum("...i,ij,...j->...", grad, model.cov, grad))


_FIBRE_COLOURS = {"MGF": "C0", "LGF": "C1"}
_RESPONSES = {
    (False, False): ("no fibre fired", "0.45"),
    (True, False): ("MGF fired", "C0"),
    (False, True): ("LGF fired", "C1"),
    (True, True): ("MGF + LGF fired", "C4"),
}


class AutoMapPlot:
    """Auto-map's view (labkit.rig.ui.automap), redrawn whole after each trial: the search space (period × V_pp, grey
    bars), each chosen stimulus (filled = a fibre fired, coloured by which; open = none; grey crosses: the template
    pulses; the newest ringed), each fibre's posterior threshold curve (the model's 50 % contour,
    FibreModel.threshold_vpp) in a band of ± 2 standard errors (:func:`threshold_se_vpp`), and beside it Rb ± se and
    c ± se per fibre and the pulses and charge used against the budget."""

    def __init__(self, width_px: int = WIDTH_PX, height_px: int = HEIGHT_PX, dpi: int = 100):
        self.figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
        FigureCanvasAgg(self.figure)
        self.ax, self.side = self.figure.subplots(1, 2, width_ratios=(2.4, 1.0))

    def update(self, view: AutoMapView | None, space: SearchSpace, title: str) -> None:
        ax, side = self.ax, self.side
        ax.clear()
        side.clear()
        side.axis("off")
        periods, top = np.asarray(space.periods_ms, float), max(space.vpp_range) * 1.15
        ax.set_xscale("log")
        ax.set_xlim(periods.min() / 1.6, periods.max() * 1.6)
        ax.set_ylim(0.0, top)
        ax.vlines(periods, *sorted(space.vpp_range), color="0.9", lw=8, zorder=0, label="search space")
        ax.set_xticks(periods, [f"{p:g}" for p in periods], minor=False)
        ax.set_xticks([], minor=True)
        ax.set_xlabel("pulse period (ms, log scale)")
        ax.set_ylabel("stimulus amplitude (V peak-to-peak)")
        ax.grid(alpha=0.3)
        self.figure.suptitle(title, fontsize=10)
        if view is None:
            side.text(0.0, 1.0, "no trial yet", va="top", fontsize=9)
            return
        t = np.geomspace(*ax.get_xlim(), 80)
        for fibre, model in view.models.items():
            if model.defined:
                colour, curve, se = _FIBRE_COLOURS[fibre], model.threshold_vpp(t), threshold_se_vpp(model, t)
                ax.fill_between(t, curve - 2 * se, curve + 2 * se, color=colour, alpha=0.15, lw=0)
                ax.plot(t, curve, color=colour, lw=1.6, label=f"{fibre} threshold ± 2 se")
        n_done = len(view.mgf)
        ax.plot(view.period_ms[view.template], view.vpp[view.template], "x", color="0.5", ms=5, label="template pulse")
        chosen = ~view.template[:n_done]
        for (mgf, lgf), (label, colour) in _RESPONSES.items():
            hit = chosen & (view.mgf == mgf) & (view.lgf == lgf)
            if hit.any():
                ax.plot(
                    view.period_ms[:n_done][hit],
                    view.vpp[:n_done][hit],
                    "o",
                    ms=6,
                    mec=colour,
                    mfc=colour if (mgf or lgf) else "none",
                    label=f"{label} ({hit.sum()})",
                )
        ax.plot(view.period_ms[-1:], view.vpp[-1:], "o", ms=13, mfc="none", mec="k", mew=1.2, label="newest pulse")
        lines = []
        for fibre, (rb, c, se_rb, se_c) in view.estimates.items():
            lines += [
                f"{fibre}: not defined yet"
                if not np.isfinite(rb)
                else f"{fibre}:\n  Rb = {rb:.3f} ± {se_rb:.3f} V\n  c  = {c:.3f} ± {se_c:.3f} ms"
            ]
        b = view.budget
        lines += [
            f"pulses {len(view.vpp)} / {b.max_pulses}",
            f"charge {view.charge_v_ms:.1f} / {b.max_charge_v_ms:g} V·ms",
        ]
        side.text(0.0, 1.0, "\n".join(lines), va="top", fontsize=9, family="monospace")
        side.legend(*ax.get_legend_handles_labels(), loc="lower left", fontsize=7, frameon=False)

    def png(self) -> bytes:
        return _figure_png(self.figure)
