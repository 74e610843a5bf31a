"""The host driver: one :class:`Rig` object talks to the rig over any pyserial URL or port.

    with Rig("rigsim://?seed=1") as rig:              # or Rig("/dev/ttyACM0"), Rig("/dev/pts/7")
        rig.configure(sample_rate=30000, channels=4)  # starts the data stream
        with rig.record("session-1"):                 # crash-safe session folder (labkit.rig.recording)
            rig.arm()
            pulse = rig.stimulate(vpp=4.0, period_ms=3.0)   # the device's echo of what it delivered
            rec = rig.read(1.0)                       # the next second of samples, in µV
            rig.disarm()

Threads: a reader thread decodes every frame into a ring buffer (and the session folder while recording), answers
waiting requests and counts bad and lost frames (never silently); a heartbeat thread keeps the device's watchdog
fed. Stimulation requests are checked against the device's own limits (from its INFO) before anything is sent;
the device checks them again, authoritatively.
"""

import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import serial

from labkit.rig.limits import LimitError, RigError, SafetyLimits
from labkit.rig.protocol import (Arm, Configure, DataBlock, Disarm, Encoder, Error, ErrorCode, Frame, FrameDecoder,
                                 Heartbeat, Hello, MsgType, PulseEcho, Start, Stimulate, Stop, Waveform)
from labkit.rig.recording import Pulse, Recording, SessionWriter

__all__ = ["Rig", "RigInfo"]

_LIMIT_CODES = {ErrorCode.LIMIT_VPP, ErrorCode.LIMIT_PERIOD, ErrorCode.LIMIT_RATE, ErrorCode.WAVEFORM}


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
        return cls(d["firmware"], d["protocol"], d["simulated"], d["max_channels"], tuple(d["sample_rates_hz"]),
                   d["block_samples"], d["scale_uv_per_count"], tuple(d["electrode_positions_mm"]),
                   SafetyLimits(**d["limits"]))


def _pulse(echo: PulseEcho) -> Pulse:
    return Pulse(echo.request_id, echo.t_start_us / 1e6, echo.vpp_requested, echo.vpp_measured,
                 echo.period_ms_requested, echo.period_ms_measured, Waveform(echo.waveform).name.lower())


class Rig:
    def __init__(self, url: str = "rigsim://", *, timeout_s: float = 2.0, heartbeat_s: float = 0.05,
                 buffer_s: float = 120.0, baudrate: int = 2_000_000):
        self.url = url
        self.timeout_s = timeout_s
        self.heartbeat_s = heartbeat_s
        self.buffer_s = buffer_s
        self.baudrate = baudrate
        self.serial = None
        self.info: RigInfo | None = None
        self.pulses: list[Pulse] = []
        self.device_events: list[Error] = []     # spontaneous device errors, e.g. the watchdog
        self.device_state: Heartbeat | None = None
        self._decoder = FrameDecoder()
        self._encoder = Encoder()
        self._write_lock = threading.Lock()
        self._state = threading.Condition()
        self._waiters: list[tuple[Callable[[Frame], bool], Future]] = []
        self._ring: np.ndarray | None = None
        self._ring_end: int | None = None        # absolute index of the next sample expected
        self._ring_first = 0                      # absolute index of the first sample since configure()
        self._gaps: list[dict[str, int]] = []
        self._writer: SessionWriter | None = None
        self._link_error: Exception | None = None
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._request_id = 0
        self._last_pulse_host_s: float | None = None
        self.fs_hz: float | None = None
        self.n_channels: int | None = None

    # --- connection ------------------------------------------------------------------------------------
    def open(self) -> "Rig":
        self.serial = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.02)
        self.serial.reset_input_buffer()
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
        if self._link_error is None and self.info is not None:
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

    def __enter__(self) -> "Rig":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def counters(self) -> dict[str, int]:
        """Frames decoded, discarded (bad CRC/COBS/length), lost in transit (sequence gaps), samples lost."""
        return {**self._decoder.counters(), "samples_lost": sum(g["n"] for g in self._gaps),
                "device_events": len(self.device_events)}

    # --- commands ---------------------------------------------------------------------------------------
    def configure(self, sample_rate: float | None = None, channels: int = 4, block_samples: int | None = None) -> None:
        """Set the acquisition and start streaming (call stop() first to reconfigure a running stream)."""
        info = self._info()
        rate = info.sample_rates_hz[0] if sample_rate is None else sample_rate
        if rate not in info.sample_rates_hz:
            raise RigError(f"sample_rate={rate!r} unsupported by this device; allowed: {list(info.sample_rates_hz)}")
        if not 1 <= channels <= info.max_channels:
            raise RigError(f"channels={channels!r} unsupported; allowed: 1 to {info.max_channels}")
        self._command(Configure(int(rate), channels, block_samples or info.block_samples))
        with self._state:
            self.fs_hz, self.n_channels = float(rate), channels
            self._ring = np.zeros((int(self.buffer_s * rate), channels), np.int16)
            self._ring_end = None
            self._ring_first = 0
        self._command(Start())

    def arm(self) -> None:
        self._command(Arm())

    def disarm(self) -> None:
        self._command(Disarm())

    def stop(self) -> None:
        """Stop everything: abort any pulse, disarm, stop streaming. The device always accepts it."""
        self._command(Stop())

    def stimulate(self, vpp: float, period_ms: float, waveform: str = "bipolar_sine") -> Pulse:
        """Deliver one pulse and return the device's echo (what it measured it delivered).

        Out-of-limit requests raise :class:`LimitError` before anything is sent; the device refuses them too.
        """
        info = self._info()
        try:
            code = Waveform[waveform.upper()]
        except KeyError:
            raise LimitError(f"unknown waveform {waveform!r}; allowed: bipolar_sine", ErrorCode.WAVEFORM) from None
        since = None if self._last_pulse_host_s is None else time.monotonic() - self._last_pulse_host_s
        info.limits.check(vpp, period_ms, code, since)
        self._request_id += 1
        rid = self._request_id
        echo = self._request(Stimulate(rid, float(vpp), int(round(period_ms * 1000)), code),
                             lambda f, seq: f.type == MsgType.PULSE and f.msg.request_id == rid,
                             timeout=period_ms / 1000 + self.timeout_s)
        self._last_pulse_host_s = time.monotonic()
        return _pulse(echo.msg)

    # --- data -------------------------------------------------------------------------------------------
    def read(self, seconds: float) -> Recording:
        """The next ``seconds`` of samples (blocking until they have arrived), with the pulses delivered in them."""
        if self._ring is None:
            raise RigError("no stream: call configure() first")
        n = int(round(seconds * self.fs_hz))
        if not 0 < n <= len(self._ring):
            raise RigError(f"seconds={seconds!r}; allowed: > 0 and <= the {self.buffer_s} s ring buffer")
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
        with self._state:
            if self._ring is None or self._ring_end is None:
                return (0 if start is None else start), np.zeros((0, self.n_channels or 1), np.int16)
            end = self._ring_end
            oldest = max(self._ring_first, end - min(len(self._ring), max_n))
            first = oldest if start is None else max(start, oldest)
            return first, self._ring[np.arange(first, end) % len(self._ring)].copy()

    @contextmanager
    def record(self, folder):
        """Stream everything received into a crash-safe session folder until the block exits."""
        info = self._info()
        with self._state:
            if self._ring is None:
                raise RigError("no stream: call configure() before record()")
            if self._writer is not None:
                raise RigError("already recording")
            start = self._ring_end
            while start is None:
                self._wait(time.monotonic() + self.timeout_s, "the first data block")
                start = self._ring_end
            self._writer = SessionWriter(Path(folder), sample_rate_hz=self.fs_hz, n_channels=self.n_channels,
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
        if self.info is None:
            raise RigError("the rig is not open: use `with Rig(url) as rig:` or rig.open()")
        return self.info

    def _wait(self, deadline: float, what: str) -> None:
        """Wait on the state condition (held by the caller) or raise when the link died or time ran out."""
        if self._link_error is not None:
            raise RigError(f"link lost: {self._link_error}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RigError(f"timed out waiting for {what}")
        self._state.wait(min(remaining, 0.1))

    def _send(self, msg, before_write: Callable[[int], None] | None = None) -> None:
        """Encode and write one frame; ``before_write(seq)`` runs first, under the write lock."""
        with self._write_lock:
            if before_write is not None:
                before_write(self._encoder.seq)
            data = self._encoder.encode(msg, time.monotonic_ns() // 1000)
            try:
                self.serial.write(data)
            except (serial.SerialException, OSError) as e:
                self._link_error = e
                raise RigError(f"link lost: {e}") from e

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
        while not self._closing.is_set():
            try:
                self._send(Heartbeat())
            except RigError:
                return
            self._closing.wait(self.heartbeat_s)

    def _reader(self) -> None:
        while not self._closing.is_set():
            try:
                data = self.serial.read(max(1, self.serial.in_waiting))
            except (serial.SerialException, OSError, TypeError) as e:
                with self._state:
                    self._link_error = e
                    self._state.notify_all()
                if self._writer is not None:
                    self._writer.flush()
                return
            if data:
                for frame in self._decoder.feed(data):
                    self._dispatch(frame)

    def _dispatch(self, frame: Frame) -> None:
        msg = frame.msg
        with self._state:
            if isinstance(msg, DataBlock):
                self._store(msg)
            elif isinstance(msg, PulseEcho):
                pulse = _pulse(msg)
                self.pulses.append(pulse)
                if self._writer is not None:
                    self._writer.write_pulse(pulse)
            elif isinstance(msg, Heartbeat):
                self.device_state = msg
            elif isinstance(msg, Error) and msg.ref_seq == 0:
                self.device_events.append(msg)
            for pred, future in self._waiters:
                if not future.done() and pred(frame):
                    future.set_result(frame)
            self._state.notify_all()

    def _store(self, block: DataBlock) -> None:
        """Put a block into the ring buffer (caller holds the state lock); lost blocks become zero-filled gaps."""
        if self._ring is None or block.counts.shape[1] != self._ring.shape[1]:
            return
        first, n = block.first_sample, len(block.counts)
        if self._ring_end is not None and first < self._ring_end:
            return                                  # a duplicate
        if self._ring_end is not None and first > self._ring_end:
            missing = first - self._ring_end
            self._gaps.append({"start_index": self._ring_end, "n": missing})
            self._ring[np.arange(self._ring_end, first) % len(self._ring)] = 0
        self._ring[np.arange(first, first + n) % len(self._ring)] = block.counts
        if self._ring_end is None:
            self._ring_first = first
        self._ring_end = first + n
        if self._writer is not None:
            self._writer.write_block(first, block.counts)
