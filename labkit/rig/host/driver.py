"""The host driver: one :class:`Rig` object talks to the rig over any pyserial URL or port.

    with Rig("rigsim://?seed=1", session_root="data") as rig:   # or Rig("/dev/ttyACM0"), Rig("/dev/pts/7")
        rig.configure(sample_rate=30000, channels=4)  # starts the data stream
        with rig.record("session-1"):                 # crash-safe session folder data/session-1 (host.recording)
            rig.arm()
            pulse = rig.stimulate(vpp=4.0, period_ms=3.0)   # the device's echo of what it delivered
            rec = rig.read(1.0)                       # the next second of samples, in µV
            rig.disarm()

Threads: a reader thread decodes every frame, puts the samples back in order (labkit.rig.host.stream) and into the
session folder while recording, answers waiting requests and counts bad and lost frames (never silently); a
heartbeat thread keeps the device's watchdog fed. What the reader does with each type of frame from the device is
one handler per message type (``Rig.HANDLERS``). Stimulation requests are checked against the device's own limits
(from its INFO) before anything is sent; the device checks them again, authoritatively. Every argument is checked
before anything is sent: a wrong type raises TypeError, a wrong value ValueError (LimitError, also a RigError, for
what the device does not allow).

Failure: when a host thread fails (the link, a full disk under the session folder, a defect), the rig stops its
heartbeats (so the device's watchdog disarms it), sends STOP if the link still takes it, closes the recording, and
every later call raises a RigError naming the cause: the device is never left armed while the host is blind.
Session folders are refused outside ``session_root`` (default: the working directory).
"""

import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import serial

from labkit.rig._checks import as_real
from labkit.rig.firmware.framing import Encoder, Frame, FrameDecoder
from labkit.rig.firmware.limits import LimitError, RigError, SafetyLimits
from labkit.rig.firmware.protocol import (
    DEVICE_TO_HOST,
    Arm,
    Configure,
    DataBlock,
    Disarm,
    Error,
    ErrorCode,
    Heartbeat,
    Hello,
    MsgType,
    PulseEcho,
    Start,
    Stimulate,
    Stop,
)
from labkit.rig.host.info import RigInfo, pulse_from_echo, waveform_code
from labkit.rig.host.recording import Pulse, Recording, SessionWriter
from labkit.rig.host.stream import SampleStream

__all__ = ["Rig", "RigInfo"]

_LIMIT_CODES = {ErrorCode.LIMIT_VPP, ErrorCode.LIMIT_PERIOD, ErrorCode.LIMIT_RATE, ErrorCode.WAVEFORM}


class _RecordingError(Exception):
    """The session writer failed (its exception is the ``__cause__``)."""


class Rig:
    """The rig behind ``url``; session folders are written only inside ``session_root`` (default: the current
    working directory)."""

    def __init__(
        self,
        url: str = "rigsim://",
        *,
        timeout_s: float = 2.0,
        heartbeat_s: float = 0.05,
        buffer_s: float = 120.0,
        baudrate: int = 2_000_000,
        session_root=None,
    ):
        self.url = url
        self.session_root = Path.cwd().resolve() if session_root is None else Path(session_root).resolve()
        self.timeout_s = timeout_s
        self.heartbeat_s = heartbeat_s
        self.buffer_s = buffer_s
        self.baudrate = baudrate
        self.serial = None
        self.info: RigInfo | None = None
        self.pulses: list[Pulse] = []
        self.device_events: list[Error] = []  # spontaneous device errors, e.g. the watchdog
        self.device_state: Heartbeat | None = None  # the device's latest HEARTBEAT: its state and counters
        self._decoder = FrameDecoder(decodes=DEVICE_TO_HOST)
        self._encoder = Encoder()
        self._write_lock = threading.Lock()
        self._state = threading.Condition()
        self._waiters: list[tuple[Callable[[Frame], bool], Future]] = []
        self._stream = SampleStream()  # the samples received, by device index (labkit.rig.host.stream)
        self._pulse_end_s: float | None = None  # device time the last pulse echoed ended
        self._implausible_echoes = 0
        self._writer: SessionWriter | None = None
        self._failure: str | None = None  # set once, by _fail: every later call raises it
        self._closed = False
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._request_id = 0
        self._last_pulse_host_s: float | None = None
        self.fs_hz: float | None = None
        self.n_channels: int | None = None

    # --- connection ------------------------------------------------------------------------------------
    def open(self) -> "Rig":
        if self.serial is not None:
            raise RigError(f"the rig is already open ({self.url})")
        self.serial = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.02)
        self.serial.reset_input_buffer()
        # a new connection: seq restarts at 0, and HELLO tells the device so (it resets its replay window)
        self._decoder, self._encoder = FrameDecoder(decodes=DEVICE_TO_HOST), Encoder()
        self._failure, self._closed, self._pulse_end_s = None, False, None
        self._closing.clear()
        self._threads = [
            threading.Thread(target=self._reader, name="rig-reader", daemon=True),
            threading.Thread(target=self._heartbeat, name="rig-heartbeat", daemon=True),
        ]
        for t in self._threads:
            t.start()
        try:
            info = self._request(Hello(), lambda f, seq: f.type == MsgType.INFO)
            self.info = RigInfo.from_dict(info.msg.info)
            self.stop()  # a known state: disarmed, not streaming
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.serial is None:
            return
        if self._failure is None and self.info is not None:
            try:
                self.stop()
            except RigError:
                pass
        self._closing.set()
        for t in self._threads:
            t.join()
        self.stop_recording()
        self.serial.close()
        self.serial = None
        self._closed = True

    def __enter__(self) -> "Rig":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def failure(self) -> str | None:
        """Why the rig failed (the message every call then raises), or None while it works."""
        return self._failure

    @property
    def counters(self) -> dict[str, int]:
        """Frames decoded, discarded (bad CRC/COBS/length/payload), lost in transit (sequence gaps), samples lost,
        well-formed frames dropped as implausible (``implausible_frames``: a DATA block that the stream does not
        continue, a PULSE echo that does not follow the previous pulse; see SampleStream and _on_pulse), and the
        device's own counters for the frames it received (from its latest HEARTBEAT): ``device_bad_frames``,
        ``device_lost_frames``, ``device_bad_seq_frames`` (replayed or corrupted seq: not executed)."""
        hb = self.device_state or Heartbeat()
        return {
            **self._decoder.counters(),
            "samples_lost": sum(g["n"] for g in self._stream.gaps),
            "device_events": len(self.device_events),
            "implausible_frames": self._stream.implausible + self._implausible_echoes,
            "device_bad_frames": hb.bad_frames,
            "device_lost_frames": hb.lost_frames,
            "device_bad_seq_frames": hb.bad_seq_frames,
        }

    # --- commands ---------------------------------------------------------------------------------------
    def configure(self, sample_rate: float | None = None, channels: int = 4, block_samples: int | None = None) -> None:
        """Set the acquisition and start streaming (call stop() first to reconfigure a running stream).

        ``block_samples`` None: the device's default. Every argument is checked before anything is sent, so a refused
        configuration leaves the previous one in force.
        """
        rate, channels, block = self._info().acquisition(sample_rate, channels, block_samples)
        self._command(Configure(int(rate), channels, block))
        with self._state:
            self.fs_hz, self.n_channels = float(rate), channels
            self._stream.restart(int(self.buffer_s * rate), channels)
        self._command(Start())

    def arm(self) -> None:
        self._info()
        self._command(Arm())

    def disarm(self) -> None:
        self._info()
        self._command(Disarm())

    def stop(self) -> None:
        """Stop everything: abort any pulse, disarm, stop streaming. The device always accepts it."""
        self._info()
        self._command(Stop())

    def stimulate(self, vpp: float, period_ms: float, waveform: str = "bipolar_sine") -> Pulse:
        """Deliver one pulse and return the device's echo (what it measured it delivered; ``aborted`` if STOP, DISARM
        or the watchdog cut it short).

        ``vpp`` and ``period_ms``: any real numbers (not bool). Out-of-limit requests raise :class:`LimitError`
        before anything is sent; the device refuses them too.
        """
        info = self._info()
        vpp, period_ms = as_real("vpp", vpp), as_real("period_ms", period_ms)
        code = waveform_code(waveform)
        since = None if self._last_pulse_host_s is None else time.monotonic() - self._last_pulse_host_s
        info.limits.check(vpp, period_ms, code, since)
        self._request_id += 1
        rid = self._request_id
        echo = self._request(
            Stimulate(rid, vpp, int(round(period_ms * 1000)), code),
            lambda f, seq: f.type == MsgType.PULSE and f.msg.request_id == rid,
            timeout=period_ms / 1000 + self.timeout_s,
        )
        self._last_pulse_host_s = time.monotonic()
        return pulse_from_echo(echo.msg)

    # --- data -------------------------------------------------------------------------------------------
    def read(self, seconds: float) -> Recording:
        """The next ``seconds`` of samples (blocking until they have arrived), with the pulses delivered in them."""
        self._info()
        if self._stream.ring is None:
            raise RigError("no stream: call configure() first")
        seconds = as_real("seconds", seconds)
        if not (math.isfinite(seconds) and 0 < round(seconds * self.fs_hz) <= len(self._stream.ring)):
            raise ValueError(
                f"seconds={seconds!r}; allowed: at least one sample (1 / {self.fs_hz:g} s) and at most "
                f"the {self.buffer_s} s ring buffer"
            )
        n = int(round(seconds * self.fs_hz))
        deadline = time.monotonic() + seconds + self.timeout_s
        with self._state:
            while self._stream.end is None:
                self._wait(deadline, "the first data block")
            start = self._stream.end
            while self._stream.end < start + n:
                self._wait(deadline, f"{seconds} s of data")
            counts, gaps = self._stream.window(start, n)
        t0, t1 = start / self.fs_hz, (start + n) / self.fs_hz
        return Recording(
            counts * self._info().scale_uv_per_count,
            self.fs_hz,
            start,
            np.asarray(self._info().electrode_positions_mm[: self.n_channels]),
            [p for p in self.pulses if t0 <= p.t_start_s < t1],
            gaps,
            self.counters,
        )

    def read_since(self, start: int | None, max_n: int) -> tuple[int, np.ndarray]:
        """The raw samples received from absolute index ``start`` on, without waiting — at most the newest ``max_n``
        (the newest ``max_n`` when ``start`` is None): ``(absolute index of the first row, int16 counts (n,
        channels))``. For live displays: unlike :meth:`read`, which waits for the *next* samples, successive calls
        miss nothing that is still in the ring buffer."""
        self._info()
        with self._state:
            if self._stream.ring is None or self._stream.end is None:
                return (0 if start is None else start), np.zeros((0, self.n_channels or 1), np.int16)
            return self._stream.since(start, max_n)

    @contextmanager
    def record(self, folder):
        """Stream everything received into a crash-safe session folder until the block exits. ``folder``: relative
        to the session root, or absolute; either way it must resolve (symlinks followed) to a folder inside it."""
        info = self._info()
        if not isinstance(folder, (str, os.PathLike)):
            raise TypeError(f"folder must be a str or a path, got {type(folder).__name__} {folder!r}")
        path = (self.session_root / folder).resolve()
        if not path.is_relative_to(self.session_root):
            raise ValueError(
                f"folder={os.fspath(folder)!r} resolves to {path}, outside the session root "
                f"{self.session_root}; allowed: a folder inside it (Rig(session_root=...) sets the root)"
            )
        with self._state:
            if self._stream.ring is None:
                raise RigError("no stream: call configure() before record()")
            if self._writer is not None:
                raise RigError("already recording")
            deadline = time.monotonic() + self.timeout_s
            while self._stream.end is None:
                self._wait(deadline, "the first data block")
            start = self._stream.end
            self._writer = SessionWriter(
                path,
                sample_rate_hz=self.fs_hz,
                n_channels=self.n_channels,
                scale_uv_per_count=info.scale_uv_per_count,
                electrode_positions_mm=info.electrode_positions_mm[: self.n_channels],
                first_sample_index=start,
                device_info={**info.__dict__, "limits": info.limits.to_dict(), "url": self.url},
            )
        try:
            yield self._writer
        finally:
            self.stop_recording()

    def stop_recording(self) -> None:
        with self._state:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close(self.counters)

    # --- internals --------------------------------------------------------------------------------------
    def _info(self) -> RigInfo:
        """The device's INFO; RigError when the rig is closed, has failed or was never opened."""
        if self._closed:
            raise RigError("the rig is closed")
        if self._failure is not None:
            raise RigError(self._failure)
        if self.info is None:
            raise RigError("the rig is not open: use `with Rig(url) as rig:` or rig.open()")
        return self.info

    def _wait(self, deadline: float, what: str) -> None:
        """Wait on the state condition (held by the caller) or raise when the rig failed or time ran out."""
        if self._failure is not None:
            raise RigError(self._failure)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RigError(f"timed out waiting for {what}")
        self._state.wait(min(remaining, 0.1))

    def _send(self, msg, before_write: Callable[[int], None] | None = None) -> None:
        """Encode and write one frame; ``before_write(seq)`` runs first, under the write lock. Nothing is sent once the
        rig has failed."""
        with self._write_lock:
            if self._failure is not None:
                raise RigError(self._failure)
            if before_write is not None:
                before_write(self._encoder.seq)
            data = self._encoder.encode(msg, time.monotonic_ns() // 1000)
            try:
                self.serial.write(data)
                return
            except (serial.SerialException, OSError) as e:
                error = e
        self._fail(f"link lost: {error}")
        raise RigError(self._failure) from error

    def _fail(self, cause: str) -> None:
        """A host thread or the link failed (called without the locks held): stop the heartbeats (the device's
        watchdog then disarms it), send STOP if the link takes it, fail the waiting requests, close the recording
        (best effort: what was written stays readable), and make every later call raise RigError naming ``cause``."""
        with self._write_lock:
            if self._failure is not None:
                return
            try:
                self.serial.write(self._encoder.encode(Stop(), time.monotonic_ns() // 1000))
                outcome = "the device was sent STOP"
            except (serial.SerialException, OSError) as e:
                watchdog_ms = self.info.limits.watchdog_ms if self.info is not None else SafetyLimits().watchdog_ms
                outcome = f"STOP could not be sent ({e}); the device's watchdog disarms it within {watchdog_ms:g} ms"
            self._failure = f"rig failed: {cause}; {outcome}"  # from here on _send sends nothing: no heartbeats
        with self._state:
            writer, self._writer = self._writer, None
            for _, future in self._waiters:
                if not future.done():
                    future.set_exception(RigError(self._failure))
            self._state.notify_all()
        if writer is not None:
            try:
                writer.close(self.counters)
            except OSError:
                pass  # already part of the failure (e.g. the disk is still full)

    def _request(self, msg, match: Callable[[Frame, int], bool], timeout: float | None = None) -> Frame:
        """Send ``msg`` and wait for the frame that ``match``es it, or for an ERROR that refers to it."""
        future: Future = Future()

        def register(seq: int) -> None:  # before sending: the answer can be fast
            with self._state:
                self._waiters.append(
                    (lambda f: match(f, seq) or (f.type == MsgType.ERROR and f.msg.ref_seq == seq), future)
                )

        try:
            self._send(msg, before_write=register)
            frame = future.result(timeout or self.timeout_s)
        except TimeoutError:
            raise RigError(
                f"no answer to {msg.TYPE.name} within {timeout or self.timeout_s} s (link counters: {self.counters})"
            ) from None
        finally:
            with self._state:
                self._waiters = [(p, f) for p, f in self._waiters if f is not future]
        if frame.type == MsgType.ERROR:
            err = frame.msg
            kind = LimitError if err.code in _LIMIT_CODES else RigError
            raise kind(f"device refused {msg.TYPE.name}: {err.message}", ErrorCode(err.code))
        return frame

    def _command(self, msg) -> None:
        self._request(msg, lambda f, seq: f.type == MsgType.ACK and f.msg.ref_seq == seq)

    def _heartbeat(self) -> None:
        try:
            while not self._closing.is_set():
                self._send(Heartbeat())
                self._closing.wait(self.heartbeat_s)
        except RigError:
            return  # the rig has failed (see _fail): heartbeats stop
        except Exception as e:
            self._fail(f"heartbeat thread: {type(e).__name__}: {e}")

    def _reader(self) -> None:
        try:
            while not self._closing.is_set():
                try:
                    data = self.serial.read(max(1, self.serial.in_waiting))
                except (serial.SerialException, OSError, TypeError) as e:
                    return self._fail(f"link lost: {e}")
                for frame in self._decoder.feed(data):
                    self._dispatch(frame)
        except _RecordingError as e:
            self._fail(f"recording: {e.__cause__}")
        except Exception as e:
            self._fail(f"reader thread: {type(e).__name__}: {e}")

    def _dispatch(self, frame: Frame) -> None:
        """Act on one frame from the device (reader thread): its type's handler in :attr:`HANDLERS`, if any, then the
        requests waiting for it. A frame of a host-to-device type (``msg`` None) is ignored; a handler that returns
        False drops its frame (no waiting request sees it)."""
        with self._state:
            handler = self.HANDLERS.get(frame.type)
            if handler is not None and frame.msg is not None and handler(self, frame.msg) is False:
                return
            for pred, future in self._waiters:
                if not future.done() and pred(frame):
                    future.set_result(frame)
            self._state.notify_all()

    # --- frame handlers: one per device-to-host message type that changes the host's state (HANDLERS) ----------
    def _on_data(self, block: DataBlock) -> None:
        """Into the sample stream (labkit.rig.host.stream) and, while recording, the session folder."""
        for stored in self._stream.store(block):
            if self._writer is not None:
                self._record(self._writer.write_block, stored.first_sample, stored.counts)

    def _on_pulse(self, echo: PulseEcho) -> bool:
        """A delivered pulse; dropped and counted (False) unless it starts after the previous pulse ended (pulses
        follow one another: it is a duplicate or was corrupted)."""
        pulse = pulse_from_echo(echo)
        if self._pulse_end_s is not None and pulse.t_start_s <= self._pulse_end_s:
            self._implausible_echoes += 1
            return False
        self._pulse_end_s = pulse.t_start_s + pulse.period_ms_measured / 1e3
        self.pulses.append(pulse)
        if self._writer is not None:
            self._record(self._writer.write_pulse, pulse)
        return True

    def _on_heartbeat(self, state: Heartbeat) -> None:
        self.device_state = state

    def _on_error(self, error: Error) -> None:
        if error.ref_seq == 0:  # spontaneous (the watchdog); a refusal answers its request
            self.device_events.append(error)

    #: message type -> what the reader does with it (under the state lock); INFO and ACK only answer requests
    HANDLERS = {
        MsgType.DATA: _on_data,
        MsgType.PULSE: _on_pulse,
        MsgType.HEARTBEAT: _on_heartbeat,
        MsgType.ERROR: _on_error,
    }

    def _record(self, write, *args) -> None:
        """Hand data to the session writer; its failure (e.g. a full disk) becomes the rig's, see _reader."""
        try:
            write(*args)
        except Exception as e:
            raise _RecordingError() from e
