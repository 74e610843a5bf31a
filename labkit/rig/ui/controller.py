"""The live rig panel's logic, without widgets: a plain-Python controller that a view (labkit.rig.ui.panel) or a
script drives through the same calls, so everything here is unit-tested without a browser.

    ctl = RigController("rigsim://?seed=1")        # or a serial port, e.g. "/dev/ttyACM0" or a pty path
    ctl.connect()                                  # opens the Rig and starts streaming
    ctl.set_stimulus(vpp=4.0, period_ms=3.0, rate_hz=1.0)   # clamped into the device's limits
    ctl.arm(); ctl.start()                         # record a session folder, pulse at rate_hz while armed
    snap = ctl.snapshot()                          # decimated traces + motion + counters, for drawing
    ctl.stop()                                     # the big stop: device STOP, close the recording, write NWB

State machine (``ctl.state``)::

    disconnected --connect--> streaming --start--> running --stop--> stopped --start--> running ...
                  (any state) --disconnect--> disconnected

``armed`` is a separate safety gate (arm / disarm; STOP, disconnect and the device's watchdog clear it): while
running and armed, pulses are requested at rate_hz on a fixed-rate schedule (labkit.rig.ui.schedule).

Safety. The stimulus settings in force are always inside the device's hard limits (from its INFO): see
labkit.rig.ui.settings.clamp_stimulus. The host driver and the device check every pulse again.

Threads. The Rig's reader thread fills its own ring buffer; an *acquisition* thread here copies what arrived
every ``chunk_s`` (``Rig.read_since``) into the display's RingBuffer (labkit.rig.ui.display) and, with a camera, turns
frames into the motion signal; a *stimulus* thread runs the pulse schedule or Auto-map's search, never both
(labkit.rig.ui.automap). No thread here touches a widget: the view calls :meth:`RigController.snapshot` from the
kernel's event loop. The recording is written by the Rig itself (its reader thread), independently of the display;
labkit.rig.ui.session keeps each session's folder, the motion tracked meanwhile and its NWB file.

Display. :meth:`RigController.snapshot` decimates the newest ``window_s`` to pixel width (labkit.rig.ui.display).
Sweeps. The acquisition thread also cuts ``sweep_window_ms`` around each echoed pulse out of the stream as soon as
it has arrived and keeps the last ``n_sweeps`` (cleared when the voltage or period changes); :meth:`RigController.
sweeps` turns them into a SweepView (artefact removed, latencies, a conduction-velocity estimate).

Motion. With the simulator, its camera (``SimulatedRig.camera``, labkit.rig.simulator.video.Camera) streams the
frames of the device time that has passed since the last call (JPEG-compressed like an MJPG camera's);
labkit.rig.analysis.tracking.SegmentTracker turns each frame into zone strains, and the motion signal is their mean
(relative to the first usable frame). A serial device has no camera here: no motion trace.
"""

import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from labkit.rig.analysis.epochs import BAND_HZ
from labkit.rig.analysis.spikes import THRESHOLD_K
from labkit.rig.firmware.limits import RigError, SafetyLimits
from labkit.rig.firmware.protocol import ErrorCode
from labkit.rig.host.driver import Rig
from labkit.rig.host.recording import Pulse
from labkit.rig.simulator.sim import SCHEME
from labkit.rig.simulator.video import LIVE_FPS, LIVE_SIZE, Camera
from labkit.rig.ui.display import WIDTH_PX, RingBuffer, Snapshot, SweepView, decimate_minmax
from labkit.rig.ui.schedule import PulseSchedule
from labkit.rig.ui.session import SessionRecording, SessionResult
from labkit.rig.ui.settings import StimulusSettings, clamp_stimulus

__all__ = ["default_tracker", "RigController"]


def default_tracker(n_zones: int):
    """labkit.rig.analysis.tracking's streaming tracker for the panel's camera frames of a worm with ``n_zones``
    zones."""
    from labkit.rig.analysis.tracking import SegmentTracker

    return SegmentTracker(n_zones=n_zones)


class RigController:
    """Connect / arm / stimulate on a schedule / record / stop, over :class:`labkit.rig.Rig` (module docstring).

    ``record_dir``: where session folders go (``session-<UTC time>``; the NWB file next to it, same stem).
    ``camera``: "auto" (the simulator's camera for a ``rigsim://`` URL, none otherwise) or None.
    """

    def __init__(
        self,
        url: str = "rigsim://",
        *,
        record_dir=None,
        window_s: float = 2.0,
        chunk_s: float = 0.05,
        camera: str | None = "auto",
        camera_fps: float = LIVE_FPS,
        camera_size=LIVE_SIZE,
        settings: StimulusSettings = StimulusSettings(),
        rig_factory=Rig,
        tracker_factory=None,
        n_sweeps: int = 10,
        sweep_window_ms: tuple[float, float] = (-5.0, 25.0),
    ):
        if camera not in ("auto", None):
            raise ValueError(f"camera={camera!r}; allowed: 'auto' or None")
        self.url = url
        self.record_dir = Path(record_dir) if record_dir is not None else Path(tempfile.mkdtemp(prefix="labkit-rig-"))
        self.window_s, self.chunk_s = float(window_s), float(chunk_s)
        self.camera_mode, self.camera_fps, self.camera_size = camera, float(camera_fps), tuple(camera_size)
        self.rig_factory = rig_factory
        self.tracker_factory = tracker_factory or default_tracker
        self.rig = None
        self.limits = SafetyLimits()  # the defaults until a device says otherwise
        self.settings = clamp_stimulus(self.limits, settings, **settings.__dict__)
        self.state = "disconnected"
        self.armed = False
        self.message = "not connected"
        self.pulses: list[Pulse] = []  # echoes of the pulses this controller requested
        self.refused: list[str] = []  # requests the host driver or the device refused
        self.sessions: list[SessionResult] = []
        self.ring: RingBuffer | None = None
        self.motion_ring = RingBuffer(1, 2)
        self.camera: Camera | None = None
        self.tracker = None
        self._recording: SessionRecording | None = None
        self._lock = threading.Lock()
        self._acq_stop = threading.Event()
        self._run_stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._fs_hz: float | None = None  # the stream's sample rate, kept after a disconnect for the display
        self.sweep_window_ms = tuple(float(v) for v in sweep_window_ms)
        self._sweeps: deque = deque(maxlen=int(n_sweeps))  # raw epochs (S, n_pairs), oldest first
        self._next_sweep = 0  # index into self.pulses of the next pulse to cut a sweep for
        self.sweeps_collected = 0  # sweeps cut since this controller was made (a view redraws on change)
        self._positions_mm = np.zeros(0)
        self._schedule = PulseSchedule()
        self.closed = False

    # --- connection ------------------------------------------------------------------------------
    def connect(self, url: str | None = None) -> None:
        if self.closed:
            raise RigError("this controller is closed: create a new RigController")
        if self.rig is not None:
            raise RigError(f"already connected to {self.url!r}: disconnect first")
        self.url = url or self.url
        rig = self.rig_factory(self.url, session_root=self.record_dir)
        rig.open()
        self.rig, self.limits = rig, rig.info.limits
        self.settings = clamp_stimulus(self.limits, self.settings, **self.settings.__dict__)
        self.ring = RingBuffer(int(round(self.window_s * rig.info.sample_rates_hz[0])), rig.info.max_channels)
        sim = getattr(rig.serial, "sim", None)
        if self.camera_mode == "auto" and sim is not None and urlsplit(self.url).scheme == SCHEME:
            self.camera = sim.camera(fps=self.camera_fps, size=self.camera_size)
            self.tracker = self.tracker_factory(self.camera.worm.params.n_zones)
            self.motion_ring = RingBuffer(max(2, int(self.window_s * self.camera_fps) + 1), 2)
        with self._lock:
            self._sweeps.clear()
            self._next_sweep = len(self.pulses)  # sweeps of this connection's pulses only
        self._positions_mm = np.asarray(rig.info.electrode_positions_mm, dtype=float)
        self._start_stream()
        self._fs_hz = rig.fs_hz
        self.state = "streaming"
        self.message = f"connected to {self.url} ({rig.info.firmware})"

    def disconnect(self) -> None:
        if self.rig is None:
            return
        if self.state == "running":
            self.stop()
        self._acq_stop.set()
        self.rig.close()
        self._join("acquire", timeout=self.chunk_s + 1)
        self.rig, self.camera, self.tracker = None, None, None
        self.state, self.armed, self.message = "disconnected", False, "disconnected"

    @property
    def recording(self) -> bool:
        """True while a session folder is being recorded."""
        return self._recording is not None

    def close(self) -> None:
        """Disconnect (the big stop first when running) and refuse any later connect; safe to call twice. A panel
        calls it when its cell is re-run or the kernel shuts down, so no stream outlives its view."""
        try:
            self.disconnect()
        finally:
            self.closed = True

    # --- stimulation -----------------------------------------------------------------------------
    def set_stimulus(self, **changes) -> StimulusSettings:
        """Apply ``vpp`` / ``period_ms`` / ``rate_hz`` changes clamped into the device's limits (see module)."""
        new = clamp_stimulus(self.limits, self.settings, **changes)
        clamped = [k for k, v in changes.items() if getattr(new, k) != v]
        if (new.vpp, new.period_ms) != (self.settings.vpp, self.settings.period_ms):
            with self._lock:
                self._sweeps.clear()  # the persistence view shows one stimulus at a time
        self.settings = new
        if clamped:
            self.message = "clamped to the device limits: " + ", ".join(f"{k}={getattr(new, k):g}" for k in clamped)
        elif changes:
            self.message = "set " + ", ".join(f"{k}={getattr(new, k):g}" for k in changes)
        return new

    def arm(self) -> None:
        self._require_rig().arm()
        self.armed = True
        self.message = "armed"

    def disarm(self) -> None:
        self.armed = False
        self._require_rig().disarm()
        self.message = "disarmed"

    def start(self, record: bool = True, task=None) -> None:
        """Start the pulse schedule (pulses only while armed) — or ``task(stop)`` in its place on the stimulus thread
        (Auto-map's search, labkit.rig.ui.automap; :meth:`stop` sets ``stop`` and joins it: one stimulus thread at
        a time) — and, with ``record``, a new session folder. Does nothing while running."""
        rig = self._require_rig()
        if self.state == "running":
            return
        if self.state == "stopped":
            self._start_stream()
        if record:
            recording = SessionRecording(rig, self.record_dir)
            with self._lock:
                self._recording, recording.first_pulse = recording, len(self.pulses)
            self.sessions.append(recording.result)
        self._run_stop = threading.Event()  # a new one: a thread that outlived its join keeps its set event
        self._spawn("stimulate", task or self._stimulate_loop, self._run_stop)
        self.state = "running"
        self.message = "running" + (" (recording)" if record else "") + ("" if self.armed else ": arm to stimulate")

    def pulse(self, vpp: float, period_ms: float) -> Pulse:
        """One pulse now through the driver (it checks the device's limits); its echo joins ``pulses`` like the
        schedule's (counters, sweeps, the session). Auto-map's search sends its pulses here."""
        try:
            pulse = self._require_rig().stimulate(vpp, period_ms)
        finally:
            self._schedule.last_echo = time.monotonic()
        with self._lock:
            self.pulses.append(pulse)
        return pulse

    def stop(self, on_device_stopped=None) -> SessionResult | None:
        """The big stop: device STOP first (aborts a pulse, disarms, stops the stream), then join the stimulus
        thread, close the recording and write + validate its NWB file (also when STOP failed, e.g. on a lost link;
        the error is raised after). ``on_device_stopped()`` is called as soon as STOP has been answered (or failed),
        before the NWB file is written: a view shows the stop at once. Returns the session (None if not recorded)."""
        self._run_stop.set()
        self._acq_stop.set()
        self.armed = False
        if self.rig is None:
            return None
        try:
            self.rig.stop()
        finally:
            self.state = "stopped"
            self.message = "STOP sent" + ("; writing the NWB file" if self._recording is not None else "")
            if on_device_stopped is not None:
                on_device_stopped()
            self._join("stimulate", timeout=self.rig.timeout_s + 1)  # Auto-map's search: within one trial
            session = self._finish_recording()
            if session is None:
                self.message = "stopped"
        return session

    def _finish_recording(self) -> SessionResult | None:
        recording = self._recording
        if recording is None:
            return None
        recording.close()
        self._recording = None
        session = self.sessions[-1]
        with self._lock:
            session.pulses = self.pulses[recording.first_pulse :]
            motion = recording.motion_for_nwb(self.camera)
        session.counters = dict(self.rig.counters)
        self.message = recording.write_nwb(motion)
        return session

    # --- display ---------------------------------------------------------------------------------
    def snapshot(self, n_bins: int = WIDTH_PX) -> Snapshot:
        """The newest ``window_s`` of the stream decimated to ``n_bins`` (≈ pixel width), motion and counters."""
        if self.ring is None:
            t, y, t_end = np.zeros(0), np.zeros((0, 4)), 0.0
        else:
            fs = self._fs_hz
            first, rows = self.ring.snapshot(self.ring.capacity)
            pos, y = decimate_minmax(rows, n_bins)
            t, t_end = (first + pos) / fs, (first + len(rows)) / fs
        _, motion = self.motion_ring.snapshot(self.motion_ring.capacity)
        keep = np.isfinite(motion[:, 0])
        with self._lock:
            last = self.pulses[-1] if self.pulses else None
            spans = [
                (p.t_start_s, p.t_start_s + p.period_ms_measured / 1e3)
                for p in self.pulses[-64:]
                if p.t_start_s + p.period_ms_measured / 1e3 > t_end - self.window_s
            ]
        return Snapshot(
            t,
            y,
            motion[keep, 0].astype(float),
            motion[keep, 1].astype(float),
            t_end,
            self.window_s,
            np.array(spans).reshape(-1, 2),
            self.counters(),
            self.state,
            self.armed,
            self.settings,
            last,
            self.message,
        )

    def counters(self) -> dict[str, int]:
        """Frames decoded, gaps (frames lost in transit), CRC errors (bad frames), samples lost, pulses echoed."""
        link = self.rig.counters if self.rig is not None else {}
        with self._lock:
            n_pulses = len(self.pulses)
        return {
            "frames": link.get("frames", 0),
            "gaps": link.get("lost_frames", 0),
            "crc_errors": link.get("bad_frames", 0),
            "samples_lost": link.get("samples_lost", 0),
            "pulses": n_pulses,
            "refused": len(self.refused),
        }

    def sweeps(self, band_hz=BAND_HZ, k: float = THRESHOLD_K) -> SweepView | None:
        """The stimulus-triggered sweeps collected so far (:meth:`SweepView.of`); None before the first."""
        with self._lock:
            raw = np.stack(self._sweeps) if self._sweeps else None
        if raw is None:
            return None
        return SweepView.of(raw, self.sweep_window_ms[0], self._fs_hz, self._positions_mm, band_hz, k)

    def _collect_sweeps(self, fs: float) -> None:
        """Cut the sweep of every echoed pulse whose window the ring now holds (acquisition thread)."""
        with self._lock:
            pending = self.pulses[self._next_sweep :]
        if not pending:
            return
        w0, w1 = self.sweep_window_ms
        n_win = int(round((w1 - w0) / 1e3 * fs))
        first, rows = self.ring.snapshot(self.ring.capacity)
        for p in pending:
            start = int(round((p.t_start_s + w0 / 1e3) * fs))
            if start + n_win > first + len(rows):
                break  # its window has not arrived yet
            if start >= first:
                epoch = rows[start - first : start - first + n_win]
                with self._lock:
                    self._sweeps.append(epoch.copy())
                    self.sweeps_collected += 1
            self._next_sweep += 1

    # --- threads ---------------------------------------------------------------------------------
    def _start_stream(self) -> None:
        self.rig.configure()
        self._join("acquire", timeout=self.chunk_s + 1)
        self._acq_stop = threading.Event()
        self._spawn("acquire", self._acquire_loop, self._acq_stop)

    def _acquire_loop(self, stop: threading.Event) -> None:
        rig, fs = self.rig, self.rig.fs_hz
        while not stop.wait(self.chunk_s):
            try:
                first, counts = rig.read_since(self.ring.end, self.ring.capacity)
            except RigError as e:  # the rig failed or was closed: it already sent STOP
                self.armed = False
                self.message = f"acquisition stopped: {e}"
                return
            if not len(counts):
                continue
            self.ring.write(first, counts * rig.info.scale_uv_per_count)
            self._collect_sweeps(fs)
            if self.camera is not None:
                self._track((first + len(counts)) / fs)

    def _track(self, t_s: float) -> None:
        with self._lock:
            led = [p.t_start_s for p in self.pulses]
        times, frames = self.camera.frames_until(t_s, led, max_frames=self.motion_ring.capacity)
        if not frames:
            return
        results = [self.tracker.update(frame) for frame in frames]
        self.motion_ring.write(
            self.camera.n_frames - len(frames), np.column_stack([times, [r.motion for r in results]])
        )
        with self._lock:
            if self._recording is not None:
                self._recording.motion += [(float(t), r.strain) for t, r in zip(times, results)]

    def _stimulate_loop(self, stop: threading.Event) -> None:
        rig, schedule = self.rig, self._schedule
        schedule.restart(time.monotonic())
        while not stop.wait(schedule.wait_s(self.armed, self.limits.max_rate_hz)):
            now = time.monotonic()
            if not self.armed:
                schedule.restart(now)  # the first pulse after arming goes at once
                continue
            if now < schedule.due_s(self.limits.max_rate_hz):
                continue
            s = self.settings
            schedule.advance(now, s.rate_hz)
            try:
                self.pulse(s.vpp, s.period_ms)
            except RigError as e:
                if stop.is_set():
                    return
                if rig.failure is not None:  # nothing more can be delivered: say why once, and stop
                    self.armed = False
                    self.message = f"stimulation stopped: {e}"
                    return
                self.refused.append(str(e))
                self.message = f"refused: {e}"
                if e.code == ErrorCode.NOT_ARMED:  # e.g. the device's watchdog disarmed it
                    self.armed = False

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=f"rig-panel-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def _join(self, name: str, timeout: float) -> None:
        thread = self._threads.pop(name, None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _require_rig(self):
        if self.rig is None:
            raise RigError("not connected: call connect() first")
        return self.rig
