"""The host end of the link to the rig: its two threads, requests matched to their answers, and failure.

:class:`RigLink` is what labkit.rig.host.driver's Rig stands on: Rig opens and closes the serial connection and adds
the commands, the reads and the recording; everything between a frame arriving (or being sent) and the host's state
is here.

Threads: a reader thread decodes every frame, puts the samples back in order (labkit.rig.host.stream) and into the
session folder while recording, answers waiting requests and counts bad and lost frames (never silently); a
heartbeat thread keeps the device's watchdog fed. What the reader does with each type of frame from the device is
one handler per message type (``RigLink.HANDLERS``). A request waits for the frame that answers it or for the
device's ERROR that refuses it (LimitError, also a RigError, for what the device does not allow).

Failure: when a host thread fails (the link, a full disk under the session folder, a defect), the rig stops its
heartbeats (so the device's watchdog disarms it), sends STOP if the link still takes it, closes the recording, and
every later call raises a RigError naming the cause: the device is never left armed while the host is blind.
"""

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import serial

from labkit.rig.firmware.framing import Encoder, Frame, FrameDecoder
from labkit.rig.firmware.limits import LimitError, RigError, SafetyLimits
from labkit.rig.firmware.protocol import (
    DEVICE_TO_HOST,
    DataBlock,
    Error,
    ErrorCode,
    Heartbeat,
    MsgType,
    PulseEcho,
    Stop,
)
from labkit.rig.host.info import RigInfo, pulse_from_echo
from labkit.rig.host.recording import Pulse, SessionWriter
from labkit.rig.host.stream import SampleStream

__all__ = ["RigLink"]

_LIMIT_CODES = {ErrorCode.LIMIT_VPP, ErrorCode.LIMIT_PERIOD, ErrorCode.LIMIT_RATE, ErrorCode.WAVEFORM}


class _RecordingError(Exception):
    """The session writer failed (its exception is the ``__cause__``)."""


class RigLink:
    """The link to the rig behind ``url``: the host's state as the device's frames update it, requests and their
    answers, and failure. Its subclass :class:`labkit.rig.host.driver.Rig` opens and closes it and adds the API."""

    def __init__(self, url: str, *, timeout_s: float, heartbeat_s: float, baudrate: int):
        self.url = url
        self.timeout_s = timeout_s
        self.heartbeat_s = heartbeat_s
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

    # --- state ------------------------------------------------------------------------------------------
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
            raise RigError(f"timed out waiting for {what} (Rig timeout_s={self.timeout_s:g} s)")
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
