"""The host driver: one :class:`Rig` object talks to the rig over any pyserial URL or port.

    with Rig("rigsim://?seed=1", session_root="data") as rig:   # or Rig("/dev/ttyACM0"), Rig("/dev/pts/7")
        rig.configure(sample_rate=30000, channels=4)  # starts the data stream
        with rig.record("session-1"):                 # crash-safe session folder data/session-1 (host.recording)
            rig.arm()
            pulse = rig.stimulate(vpp=4.0, period_ms=3.0)   # the device's echo of what it delivered
            rec = rig.read(1.0)                       # the next second of samples, in µV
            rig.disarm()

Rig is the rig's API: opening and closing it, the commands, the reads and the recording. The link underneath (the
reader and heartbeat threads, requests and their answers, and a host thread's failure, after which every call raises a
RigError naming the cause) is labkit.rig.host.link's RigLink. Stimulation requests are checked against the device's
own limits (from its INFO) before anything is sent; the device checks them again, authoritatively. Every argument is
checked before anything is sent: a wrong type raises TypeError, a wrong value ValueError (LimitError, also a RigError,
for what the device does not allow). Session folders are refused outside ``session_root`` (default: the working
directory).
"""

import math
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import serial

from labkit.rig._checks import as_real
from labkit.rig.firmware.framing import Encoder, FrameDecoder
from labkit.rig.firmware.limits import RigError
from labkit.rig.firmware.protocol import DEVICE_TO_HOST, Arm, Configure, Disarm, Hello, MsgType, Start, Stimulate, Stop
from labkit.rig.host.info import RigInfo, pulse_from_echo, waveform_code
from labkit.rig.host.link import RigLink
from labkit.rig.host.recording import Pulse, Recording, SessionWriter

__all__ = ["Rig", "RigInfo"]


class Rig(RigLink):
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
        super().__init__(url, timeout_s=timeout_s, heartbeat_s=heartbeat_s, baudrate=baudrate)
        self.session_root = Path.cwd().resolve() if session_root is None else Path(session_root).resolve()
        self.buffer_s = buffer_s
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
        before anything is sent; the device refuses them too. The host's copy of the rate limit counts from when the
        previous STIMULATE was sent — the nearest host-side stand-in for the device's onset — not from its echo, which
        a busy host may handle late.
        """
        info = self._info()
        vpp, period_ms = as_real("vpp", vpp), as_real("period_ms", period_ms)
        code = waveform_code(waveform)
        since = None if self._last_pulse_host_s is None else time.monotonic() - self._last_pulse_host_s
        info.limits.check(vpp, period_ms, code, since)
        self._request_id += 1
        rid = self._request_id
        self._last_pulse_host_s = time.monotonic()
        echo = self._request(
            Stimulate(rid, vpp, int(round(period_ms * 1000)), code),
            lambda f, seq: f.type == MsgType.PULSE and f.msg.request_id == rid,
            timeout=period_ms / 1000 + self.timeout_s,
        )
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
