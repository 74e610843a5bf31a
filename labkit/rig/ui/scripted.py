"""Notebook 05b run headlessly: a scripted session through the live panel's controller, its sample-exact replay,
its figure and its config.

Determinism. A live session runs in real time, so the samples of two runs differ (noise blocks and pulse onsets land
on different device samples). The notebook therefore draws its saved trace figure from :func:`replay_session`: the
simulator's deterministic signal for the pulses the device echoed, delivered at nominal times ``pre_s + k /
rate_hz`` through a fresh simulated worm built from the same URL (labkit.rig.simulator.sim.worm_from_url: same
per-pulse thresholds and read-back, since both are drawn per pulse number), quantised by the device's ADC, through
the same camera, tracker, decimation and drawing code as the live panel. Everything the claims use (echoed
voltages, counts, NWB validity) is seed-determined when the session is healthy.
"""

import time
from dataclasses import asdict, dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from labkit.config import Check, ConfigError, NotebookConfig, param, positive_float
from labkit.rig.firmware.device import SCALE_UV_PER_COUNT, to_counts
from labkit.rig.firmware.limits import SafetyLimits
from labkit.rig.simulator.sim import worm_from_url
from labkit.rig.simulator.video import LIVE_FPS, LIVE_SIZE, Camera
from labkit.rig.ui.controller import RigController, default_tracker
from labkit.rig.ui.display import WIDTH_PX, Snapshot, decimate_minmax
from labkit.rig.ui.panel import REFRESH_HZ, REFRESH_RANGE_HZ
from labkit.rig.ui.session import SessionResult
from labkit.rig.ui.settings import StimulusSettings

__all__ = ["run_scripted_session", "Replay", "replay_session", "nwb_pulse_count", "pulses_figure", "LivePanelConfig"]


def run_scripted_session(
    ctl: RigController, vpps, period_ms: float, rate_hz: float, tail_s: float = 0.3, timeout_s: float = 10.0
) -> SessionResult:
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
        ctl.disarm()  # no pulse beyond the script while the tail records
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


def replay_session(
    url: str,
    pulses,
    rate_hz: float,
    *,
    pre_s: float = 0.25,
    tail_s: float = 0.5,
    n_bins: int = WIDTH_PX,
    camera_fps: float = LIVE_FPS,
    camera_size=LIVE_SIZE,
    settings: StimulusSettings = StimulusSettings(),
    tracker_factory=default_tracker,
) -> Replay:
    """The simulator's deterministic signal for ``pulses`` (their requested Vpp and period, in order) delivered at
    ``pre_s + k / rate_hz`` on a fresh worm built from ``url`` (a ``rigsim://`` URL); drawn data as the live panel
    would show it."""
    worm = worm_from_url(url)
    onsets = pre_s + np.arange(len(pulses)) / rate_hz
    measured = [
        worm.deliver(float(t), p.vpp_requested, p.period_ms_requested)["vpp_measured"] for t, p in zip(onsets, pulses)
    ]
    window_s = float(onsets[-1] + tail_s) if len(pulses) else pre_s + tail_s
    n = int(round(window_s * worm.fs_hz))
    samples = to_counts(worm.acquire(0, n), SCALE_UV_PER_COUNT) * SCALE_UV_PER_COUNT  # the device's ADC
    pos, traces = decimate_minmax(samples, n_bins)
    times, frames = Camera.of(worm, fps=camera_fps, size=camera_size).frames_until(window_s, onsets)
    tracker = tracker_factory(worm.params.n_zones)
    motion = np.array([tracker.update(frame).motion for frame in frames])
    spans = np.column_stack([onsets, onsets + np.array([p.period_ms_requested for p in pulses]) / 1e3])
    snap = Snapshot(
        pos / worm.fs_hz,
        traces,
        times,
        motion,
        window_s,
        window_s,
        spans.reshape(-1, 2),
        {},
        "replay",
        False,
        settings,
        None,
        "",
    )
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
    ax.axhspan(
        limits.max_vpp,
        max(limits.max_vpp, max(asked_vpp)) * 1.15,
        color="C3",
        alpha=0.12,
        label="above the device limit",
    )
    ax.axhline(limits.max_vpp, color="C3", ls="--", lw=1)
    ax.plot(k, asked_vpp, "o", mfc="none", ms=9, color="0.4", label="asked (widget / script)")
    ax.plot(kp, [p.vpp_requested for p in pulses], "x", ms=8, color="C0", label="requested by the panel")
    ax.plot(kp, [p.vpp_measured for p in pulses], ".", ms=7, color="C2", label="delivered (device echo)")
    ax.set_xlabel("pulse number")
    ax.set_ylabel("stimulus (V peak-to-peak)")
    ax.set_xticks(k if len(k) >= len(kp) else kp)
    ax.set_ylim(0, max(limits.max_vpp, max(asked_vpp)) * 1.15)
    ax.set_title("scripted session: every pulse within the device limit")
    ax.legend(loc="upper left", fontsize=7)
    rows = [
        ("pulses asked", len(asked_vpp)),
        ("pulses echoed", len(pulses)),
        ("frames lost (gaps)", counters["lost_frames"]),
        ("CRC / bad frames", counters["bad_frames"]),
        ("samples lost", counters["samples_lost"]),
        ("NWB validation errors", nwb_errors),
    ]
    text_ax.axis("off")
    text_ax.grid(False)
    text_ax.set_title("session counters")
    for i, (name, value) in enumerate(rows):
        y = 0.9 - i * 0.15
        text_ax.text(0.0, y, name, fontsize=9, transform=text_ax.transAxes)
        text_ax.text(1.0, y, str(value), fontsize=9, ha="right", transform=text_ax.transAxes, weight="bold")
    return fig


_vpps = Check(
    lambda v: (
        isinstance(v, (tuple, list))
        and len(v) >= 1
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    ),
    "a non-empty list of numbers (out-of-limit values are clamped by the panel)",
)


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
    refresh_hz: float = param(REFRESH_HZ, positive_float)
    camera_fps: float = param(LIVE_FPS, positive_float)
    readback_tolerance_v: float = param(0.1, positive_float)

    SCALES = {"smoke": dict(script_vpp=(3.0, 12.0), rate_hz=4.0), "quick": {}, "paper": {}}

    @property
    def device_url(self) -> str:
        return self.url or f"rigsim://?seed={self.seed}"

    def validate(self) -> None:
        lo, hi = REFRESH_RANGE_HZ
        if not lo <= self.refresh_hz <= hi:
            raise ConfigError(
                f"LivePanelConfig: bad value for 'refresh_hz': {self.refresh_hz!r}; allowed: {lo:g} to {hi:g}"
            )
