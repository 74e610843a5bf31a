"""The host driver: one :class:`Rig` object talks to the rig over any pyserial URL or port.

    with Rig("rigsim://?seed=1", session_root="data") as rig:   # or Rig("/dev/ttyACM0"), Rig("/dev/pts/7")
        rig.configure(sample_rate=30000, channels=4)  # starts the data stream
        with rig.record("session-1"):                 # crash-safe session folder data/session-1 (labkit.rig.recording)
            rig.arm()
            pulse = rig.stimulate(vpp=4.0, period_ms=3.0)   # the device's echo of what it delivered
            rec = rig.read(1.0)                       # the next second of samples, in µV
            rig.disarm()

Threads: a reader thread decodes every frame into a ring buffer (and the session folder while recording), answers
waiting requests and counts bad and lost frames (never silently); a heartbeat thread keeps the device's watchdog
fed. Stimulation requests are checked against the device's own limits (from its INFO) before anything is sent;
the device checks them again, authoritatively. Every argument is checked before anything is sent: a wrong type
raises TypeError, a wrong value ValueError (LimitError, also a RigError, for what the device does not allow).

Failure: when a host thread fails (the link, a full disk under the session folder, a defect), the rig stops its
heartbeats (so the device's watchdog disarms it), sends STOP if the link still takes it, closes the recording, and
every later call raises a RigError naming the cause: the device is never left armed while the host is blind.
Session folders are refused outside ``session_root`` (default: the working directory).
"""

import math
import numbers
import os
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import serial

from labkit.rig.limits import CHARGE_BALANCED, LimitError, RigError, SafetyLimits
from labkit.rig.protocol import (DEVICE_TO_HOST, MAX_BLOCK_SAMPLES, PROTOCOL_VERSION, Arm, Configure, DataBlock, Disarm,
                                 Encoder, Error, ErrorCode, Frame, FrameDecoder, Heartbeat, Hello, MsgType, PulseEcho,
                                 Start, Stimulate, Stop, Waveform)
from labkit.rig.recording import Pulse, Recording, SessionWriter

__all__ = ["Rig", "RigInfo"]

_LIMIT_CODES = {ErrorCode.LIMIT_VPP, ErrorCode.LIMIT_PERIOD, ErrorCode.LIMIT_RATE, ErrorCode.WAVEFORM}
_ALLOWED_WAVEFORMS = ", ".join(w.name.lower() for w in CHARGE_BALANCED)


@dataclass(frozen=True)
class RigInfo:
    """What the device says about itself (its INFO message)."""

    firmware: str
    protocol: int
    simulated: bool
    max_channels: int
    sample_rates_hz: tuple
    block_samples: int
    scale_uv_per_count: float
    electrode_positions_mm: tuple
    limits: SafetyLimits

    @classmethod
    def from_dict(cls, d: dict) -> "RigInfo":
        """From the INFO JSON object; RigError if it lacks a key or speaks another protocol version."""
        if d.get("protocol") != PROTOCOL_VERSION:
            raise RigError(f"the device speaks protocol {d.get('protocol')!r}; this host speaks {PROTOCOL_VERSION} "
                           "(docs/rig-protocol.md)")
        try:
            return cls(d["firmware"], d["protocol"], d["simulated"], d["max_channels"], tuple(d["sample_rates_hz"]),
                       d["block_samples"], d["scale_uv_per_count"], tuple(d["electrode_positions_mm"]),
                       SafetyLimits(**d["limits"]))
        except (KeyError, TypeError) as e:
            raise RigError(f"the device's INFO is unusable ({type(e).__name__}: {e}): {str(d)[:300]}") from None


def _pulse(echo: PulseEcho) -> Pulse:
    """The host's record of a PULSE echo (flags bit 0: aborted; period_ms_measured is then the part delivered)."""
    return Pulse(echo.request_id, echo.t_start_us / 1e6, echo.vpp_requested, echo.vpp_measured,
                 echo.period_ms_requested, echo.period_ms_measured, Waveform(echo.waveform).name.lower(),
                 bool(echo.flags & 1))


class _RecordingError(Exception):
    """The session writer failed (its exception is the ``__cause__``)."""


def _real(name: str, value) -> float:
    """``value`` as a float if it is a real number (int, float, numpy scalar; not bool), else TypeError."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number (int, float or a numpy scalar), got {type(value).__name__} "
                        f"{value!r}")
    return float(value)


def _integer(name: str, value) -> int:
    """``value`` as an int if it is an integer (int, numpy integer; not bool), else TypeError."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


class Rig:
    """The rig behind ``url``; session folders are written only inside ``session_root`` (default: the current
    working directory)."""

    def __init__(self, url: str = "rigsim://", *, timeout_s: float = 2.0, heartbeat_s: float = 0.05,
                 buffer_s: float = 120.0, baudrate: int = 2_000_000, session_root=None):
        self.url = url
        self.session_root = Path.cwd().resolve() if session_root is None else Path(session_root).resolve()
        self.timeout_s = timeout_s
        self.heartbeat_s = heartbeat_s
        self.buffer_s = buffer_s
        self.baudrate = baudrate
        self.serial = None
        self.info: RigInfo | None = None
        self.pulses: list[Pulse] = []
        self.device_events: list[Error] = []     # spontaneous device errors, e.g. the watchdog
        self.device_state: Heartbeat | None = None   # the device's latest HEARTBEAT: its state and counters
        self._decoder = FrameDecoder(decodes=DEVICE_TO_HOST)
        self._encoder = Encoder()
        self._write_lock = threading.Lock()
        self._state = threading.Condition()
        self._waiters: list[tuple[Callable[[Frame], bool], Future]] = []
        self._ring: np.ndarray | None = None
        self._ring_end: int | None = None        # absolute index of the next sample expected
        self._ring_first = 0                      # absolute index of the first sample since configure()
        self._gaps: list[dict[str, int]] = []
        self._held: DataBlock | None = None     # a block that does not continue the stream, until the next one does
        self._pulse_end_s: float | None = None  # device time the last pulse echoed ended
        self._implausible_frames = 0
        self._writer: SessionWriter | None = None
        self._failure: str | None = None         # set once, by _fail: every later call raises it
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
        self._threads = [threading.Thread(target=self._reader, name="rig-reader", daemon=True),
                         threading.Thread(target=self._heartbeat, name="rig-heartbeat", daemon=True)]
        for t in self._threads:
            t.start()
        try:
            info = self._request(Hello(), lambda f, seq: f.type == MsgType.INFO)
            self.info = RigInfo.from_dict(info.msg.info)
            self.stop()                              # a known state: disarmed, not streaming
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
        continue, a PULSE echo that does not follow the previous pulse; see _store and _dispatch), and the device's
        own counters for the frames it received (from its latest HEARTBEAT): ``device_bad_frames``,
        ``device_lost_frames``, ``device_bad_seq_frames`` (replayed or corrupted seq: not executed)."""
        hb = self.device_state or Heartbeat()
        return {**self._decoder.counters(), "samples_lost": sum(g["n"] for g in self._gaps),
                "device_events": len(self.device_events), "implausible_frames": self._implausible_frames,
                "device_bad_frames": hb.bad_frames, "device_lost_frames": hb.lost_frames,
                "device_bad_seq_frames": hb.bad_seq_frames}

    # --- commands ---------------------------------------------------------------------------------------
    def configure(self, sample_rate: float | None = None, channels: int = 4, block_samples: int | None = None) -> None:
        """Set the acquisition and start streaming (call stop() first to reconfigure a running stream).

        ``block_samples`` None: the device's default. Every argument is checked before anything is sent, so a refused
        configuration leaves the previous one in force.
        """
        info = self._info()
        rate = info.sample_rates_hz[0] if sample_rate is None else _real("sample_rate", sample_rate)
        if rate not in info.sample_rates_hz:
            raise LimitError(f"sample_rate={sample_rate!r} unsupported by this device; allowed: "
                             f"{list(info.sample_rates_hz)}", ErrorCode.BAD_CONFIG)
        channels = _integer("channels", channels)
        if not 1 <= channels <= info.max_channels:
            raise LimitError(f"channels={channels!r} unsupported; allowed: 1 to {info.max_channels}",
                             ErrorCode.BAD_CONFIG)
        block = info.block_samples if block_samples is None else _integer("block_samples", block_samples)
        if not 1 <= block <= MAX_BLOCK_SAMPLES:
            raise LimitError(f"block_samples={block_samples!r}; allowed: 1 to {MAX_BLOCK_SAMPLES}, or None (the "
                             f"device's default, {info.block_samples})", ErrorCode.BAD_CONFIG)
        self._command(Configure(int(rate), channels, block))
        with self._state:
            self.fs_hz, self.n_channels = float(rate), channels
            self._ring = np.zeros((int(self.buffer_s * rate), channels), np.int16)
            self._ring_end = None
            self._ring_first = 0
            self._held = None
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
        vpp, period_ms = _real("vpp", vpp), _real("period_ms", period_ms)
        if not isinstance(waveform, str):
            raise TypeError(f"waveform must be a str, got {type(waveform).__name__} {waveform!r}; allowed: "
                            f"{_ALLOWED_WAVEFORMS}")
        try:
            code = Waveform[waveform.upper()]
        except KeyError:
            raise LimitError(f"unknown waveform {waveform!r}; allowed: {_ALLOWED_WAVEFORMS}",
                             ErrorCode.WAVEFORM) from None
        since = None if self._last_pulse_host_s is None else time.monotonic() - self._last_pulse_host_s
        info.limits.check(vpp, period_ms, code, since)
        self._request_id += 1
        rid = self._request_id
        echo = self._request(Stimulate(rid, vpp, int(round(period_ms * 1000)), code),
                             lambda f, seq: f.type == MsgType.PULSE and f.msg.request_id == rid,
                             timeout=period_ms / 1000 + self.timeout_s)
        self._last_pulse_host_s = time.monotonic()
        return _pulse(echo.msg)

    # --- data -------------------------------------------------------------------------------------------
    def read(self, seconds: float) -> Recording:
        """The next ``seconds`` of samples (blocking until they have arrived), with the pulses delivered in them."""
        self._info()
        if self._ring is None:
            raise RigError("no stream: call configure() first")
        seconds = _real("seconds", seconds)
        if not (math.isfinite(seconds) and 0 < round(seconds * self.fs_hz) <= len(self._ring)):
            raise ValueError(f"seconds={seconds!r}; allowed: at least one sample (1 / {self.fs_hz:g} s) and at most "
                             f"the {self.buffer_s} s ring buffer")
        n = int(round(seconds * self.fs_hz))
        deadline = time.monotonic() + seconds + self.timeout_s
        with self._state:
            while self._ring_end is None:
                self._wait(deadline, "the first data block")
            start = self._ring_end
            while self._ring_end < start + n:
                self._wait(deadline, f"{seconds} s of data")
            rows = np.arange(start, start + n) % len(self._ring)
            counts = self._ring[rows].copy()
            gaps = [g for g in self._gaps if g["start_index"] < start + n and g["start_index"] + g["n"] > start]
        t0, t1 = start / self.fs_hz, (start + n) / self.fs_hz
        return Recording(counts * self._info().scale_uv_per_count, self.fs_hz, start,
                         np.asarray(self._info().electrode_positions_mm[: self.n_channels]),
                         [p for p in self.pulses if t0 <= p.t_start_s < t1], gaps, self.counters)

    def read_since(self, start: int | None, max_n: int) -> tuple[int, np.ndarray]:
        """The raw samples received from absolute index ``start`` on, without waiting — at most the newest ``max_n``
        (the newest ``max_n`` when ``start`` is None): ``(absolute index of the first row, int16 counts (n,
        channels))``. For live displays: unlike :meth:`read`, which waits for the *next* samples, successive calls
        miss nothing that is still in the ring buffer."""
        self._info()
        with self._state:
            if self._ring is None or self._ring_end is None:
                return (0 if start is None else start), np.zeros((0, self.n_channels or 1), np.int16)
            end = self._ring_end
            oldest = max(self._ring_first, end - min(len(self._ring), max_n))
            first = oldest if start is None else max(start, oldest)
            return first, self._ring[np.arange(first, end) % len(self._ring)].copy()

    @contextmanager
    def record(self, folder):
        """Stream everything received into a crash-safe session folder until the block exits. ``folder``: relative
        to the session root, or absolute; either way it must resolve (symlinks followed) to a folder inside it."""
        info = self._info()
        if not isinstance(folder, (str, os.PathLike)):
            raise TypeError(f"folder must be a str or a path, got {type(folder).__name__} {folder!r}")
        path = (self.session_root / folder).resolve()
        if not path.is_relative_to(self.session_root):
            raise ValueError(f"folder={os.fspath(folder)!r} resolves to {path}, outside the session root "
                             f"{self.session_root}; allowed: a folder inside it (Rig(session_root=...) sets the root)")
        with self._state:
            if self._ring is None:
                raise RigError("no stream: call configure() before record()")
            if self._writer is not None:
                raise RigError("already recording")
            deadline = time.monotonic() + self.timeout_s
            while self._ring_end is None:
                self._wait(deadline, "the first data block")
            start = self._ring_end
            self._writer = SessionWriter(path, sample_rate_hz=self.fs_hz, n_channels=self.n_channels,
                                         scale_uv_per_count=info.scale_uv_per_count,
                                         electrode_positions_mm=info.electrode_positions_mm[: self.n_channels],
                                         first_sample_index=start,
                                         device_info={**info.__dict__, "limits": info.limits.to_dict(), "url": self.url})
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
            self._failure = f"rig failed: {cause}; {outcome}"   # from here on _send sends nothing: no heartbeats
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
                pass                               # already part of the failure (e.g. the disk is still full)

    def _request(self, msg, match: Callable[[Frame, int], bool], timeout: float | None = None) -> Frame:
        """Send ``msg`` and wait for the frame that ``match``es it, or for an ERROR that refers to it."""
        future: Future = Future()

        def register(seq: int) -> None:             # before sending: the answer can be fast
            with self._state:
                self._waiters.append(
                    (lambda f: match(f, seq) or (f.type == MsgType.ERROR and f.msg.ref_seq == seq), future))

        try:
            self._send(msg, before_write=register)
            frame = future.result(timeout or self.timeout_s)
        except TimeoutError:
            raise RigError(f"no answer to {msg.TYPE.name} within {timeout or self.timeout_s} s "
                           f"(link counters: {self.counters})") from None
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
            return                                   # the rig has failed (see _fail): heartbeats stop
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
        """Act on one frame from the device (reader thread). A frame of a host-to-device type (``msg`` None) is
        ignored; so is, counted, a PULSE echo that does not start after the previous pulse ended (pulses follow one
        another: it is a duplicate or was corrupted)."""
        msg = frame.msg
        with self._state:
            if isinstance(msg, DataBlock):
                self._store(msg)
            elif isinstance(msg, PulseEcho):
                pulse = _pulse(msg)
                if self._pulse_end_s is not None and pulse.t_start_s <= self._pulse_end_s:
                    self._implausible_frames += 1
                    return
                self._pulse_end_s = pulse.t_start_s + pulse.period_ms_measured / 1e3
                self.pulses.append(pulse)
                if self._writer is not None:
                    self._record(self._writer.write_pulse, pulse)
            elif isinstance(msg, Heartbeat):
                self.device_state = msg
            elif isinstance(msg, Error) and msg.ref_seq == 0:
                self.device_events.append(msg)
            for pred, future in self._waiters:
                if not future.done() and pred(frame):
                    future.set_result(frame)
            self._state.notify_all()

    def _store(self, block: DataBlock) -> None:
        """Put a block into the ring buffer (caller holds the state lock).

        A block that continues the stream (``first_sample`` = the next index expected) is stored. One that does not
        (the first after configure(), one after blocks lost in transit, or one whose ``first_sample`` was corrupted
        yet passed the CRC) is held until the next block continues *it*: then both are stored, lost samples
        becoming a zero-filled gap; otherwise it is dropped and counted (``implausible_frames``), so that one
        corrupted index can neither blind the stream nor fill the disk with zeros.
        """
        if self._ring is None or block.counts.shape[1] != self._ring.shape[1]:
            return
        held, self._held = self._held, None
        if self._ring_end is not None and block.first_sample == self._ring_end:
            self._implausible_frames += int(held is not None)
            self._put(block)
        elif (held is not None and block.first_sample == held.first_sample + len(held.counts)
              and (self._ring_end is None or held.first_sample > self._ring_end)):
            self._put(held)
            self._put(block)
        else:
            self._implausible_frames += int(held is not None)
            self._held = block

    def _put(self, block: DataBlock) -> None:
        first, n, size = block.first_sample, len(block.counts), len(self._ring)
        if self._ring_end is None:
            self._ring_first = first
        elif first > self._ring_end:
            self._gaps.append({"start_index": self._ring_end, "n": first - self._ring_end})
            self._ring[np.arange(max(self._ring_end, first - size), first) % size] = 0
        self._ring[np.arange(first, first + n) % size] = block.counts
        self._ring_end = first + n
        if self._writer is not None:
            self._record(self._writer.write_block, first, block.counts)

    def _record(self, write, *args) -> None:
        """Hand data to the session writer; its failure (e.g. a full disk) becomes the rig's, see _reader."""
        try:
            write(*args)
        except Exception as e:
            raise _RecordingError() from e
