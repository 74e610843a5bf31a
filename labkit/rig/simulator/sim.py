"""The simulated rig: firmware logic (:class:`labkit.rig.firmware.device.Device`) on a simulated earthworm
(:class:`labkit.rig.simulator.worm.Earthworm`), paced in real time, reachable three ways:

- in-process, through pyserial: ``serial.serial_for_url("rigsim://?seed=1&fs=30000&mgf_velocity_m_s=25")`` once
  ``labkit.rig`` is imported (query keys: ``seed``, ``fs``, ``block`` and any ``WormParams`` field);
- on a pseudo-terminal, for any serial client: ``python -m labkit.rig.simulator.sim --pty [--seed 1] [--param k=v]``
  prints the ``/dev/pts/N`` path and serves until SIGINT/SIGTERM (``--video out.avi`` then renders the camera);
  hosts may close and reopen the port (what the device sends while none has it open is lost);
- directly, as :class:`SimulatedRig` (``write`` / ``read``), which both of the above wrap.

The worm behind a URL is :func:`worm_from_url` (a fresh one, as the simulated rig builds it: e.g. to replay a
session's pulses sample-exactly), and the simulated camera on it :meth:`SimulatedRig.camera`.

A pty ignores the baud rate, so the simulator paces itself: device time is the monotonic clock since start, and
the device is stepped every millisecond. If the host stops reading, the output backlog is capped at
``max_backlog_bytes`` by dropping whole frames (the host then sees sequence gaps, as with a real device).
"""

import argparse
import ast
import os
import pty
import select
import signal
import sys
import threading
import time
import tty
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from labkit.rig.firmware.device import BLOCK_SAMPLES, Device
from labkit.rig.simulator.worm import FS_HZ, Earthworm

__all__ = ["SCHEME", "SimulatedRig", "parse_query", "simulated_worm", "worm_from_url", "serve_pty", "main"]

SCHEME = "rigsim"  # the simulator's URL scheme: rigsim://?key=value&...


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_query(query: str) -> dict:
    """``"seed=1&fs=30000&mgf_velocity_m_s=25"`` -> keyword arguments of :class:`SimulatedRig`."""
    kwargs = {k: _literal(v) for k, v in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))}
    if "fs" in kwargs:
        kwargs["fs_hz"] = kwargs.pop("fs")
    if "block" in kwargs:
        kwargs["block_samples"] = kwargs.pop("block")
    return kwargs


def simulated_worm(seed: int = 0, fs_hz: float = FS_HZ, **worm_params) -> Earthworm:
    """The earthworm a :class:`SimulatedRig` with these arguments simulates (fresh: no pulse delivered yet)."""
    return Earthworm(fs_hz=float(fs_hz), seed=int(seed), **worm_params)


def worm_from_url(url: str) -> Earthworm:
    """The earthworm behind ``rigsim://?...`` (:func:`simulated_worm` of its query; the keys that set up the device
    and its link, ``block`` and ``max_backlog_bytes``, are not the worm's)."""
    parts = urlsplit(url)
    if parts.scheme != SCHEME:
        raise ValueError(f"expected the simulator's URL ({SCHEME}://...), got {url!r}")
    kwargs = parse_query(parts.query)
    kwargs.pop("block_samples", None)
    kwargs.pop("max_backlog_bytes", None)
    return simulated_worm(**kwargs)


class SimulatedRig:
    """Device + earthworm on a background thread, paced in real time; thread-safe ``write`` and ``read``."""

    def __init__(
        self,
        seed: int = 0,
        fs_hz: float = FS_HZ,
        block_samples: int = BLOCK_SAMPLES,
        max_backlog_bytes: int = 4_000_000,
        **worm_params,
    ):
        self.worm = simulated_worm(seed, fs_hz, **worm_params)
        self.device = Device(self.worm, block_samples=int(block_samples))
        self.max_backlog_bytes = max_backlog_bytes
        self.dropped_bytes = 0
        self._in, self._out = bytearray(), bytearray()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._t0 = time.monotonic_ns()
        self._clock: Callable[[], int] = self._real_time_us
        self._thread = threading.Thread(target=self._run, name="rigsim", daemon=True)
        self._thread.start()

    def now_us(self) -> int:
        """Device time in µs: real (monotonic) time since start, unless :meth:`set_clock` installed another."""
        return self._clock()

    def set_clock(self, clock: Callable[[], int]) -> None:
        """Replace the device's time source by ``clock()`` → µs (never decreasing, called from the simulator's
        thread), e.g. one that holds at scheduled pulse onsets so that a scripted session is sample-exact
        (labkit.rig.simulator.holding_clock.HoldingClock)."""
        self._clock = clock

    def _real_time_us(self) -> int:
        return (time.monotonic_ns() - self._t0) // 1000

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                data, self._in = bytes(self._in), bytearray()
            now = self.now_us()
            self.device.receive(data, now)
            self.device.step(now)
            out = self.device.take_output()
            if out:
                with self._cond:
                    self._out += out
                    excess = len(self._out) - self.max_backlog_bytes
                    if excess > 0:  # drop whole frames from the front
                        cut = self._out.index(b"\x00", excess) + 1 if b"\x00" in self._out[excess:] else len(self._out)
                        del self._out[:cut]
                        self.dropped_bytes += cut
                    self._cond.notify_all()
            self._stop.wait(0.001)

    def write(self, data: bytes) -> int:
        with self._cond:
            self._in += data
        return len(data)

    def send_raw(self, data: bytes) -> None:
        """Queue ``data`` for the host as if the device had sent it, between two of its frames (to test a host
        against a faulty device or link)."""
        with self._cond:
            self._out += data
            self._cond.notify_all()

    def read(self, size: int, timeout: float | None) -> bytes:
        """Up to ``size`` bytes; waits until ``size`` are there or ``timeout`` s passed (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._out) < size and not self._stop.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            out = bytes(self._out[:size])
            del self._out[:size]
            return out

    @property
    def in_waiting(self) -> int:
        with self._cond:
            return len(self._out)

    def reset_output(self) -> None:
        with self._cond:
            self._out.clear()

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join()

    def camera(self, **kwargs):
        """The simulated camera on this rig's worm as a live stream (labkit.rig.simulator.video.Camera.of; keywords
        ``fps``, ``size``)."""
        from labkit.rig.simulator.video import Camera  # OpenCV only when a camera is wanted

        return Camera.of(self.worm, **kwargs)

    def render_video(self, path, t_start_s: float = 0.0, t_stop_s: float | None = None, **kwargs) -> dict:
        """The synthetic camera (labkit.rig.simulator.video) over [t_start_s, t_stop_s], LED lit at every delivered
        pulse."""
        from labkit.rig.simulator.video import render_video

        led = [e["t_s"] for e in self.worm.events() if e["kind"] == "pulse"]
        stop = self.now_us() / 1e6 if t_stop_s is None else t_stop_s
        return render_video(self.worm, path, t_start_s, stop, led_times_s=led, **kwargs)


def serve_pty(sim: SimulatedRig, ready=print, stop: threading.Event | None = None) -> None:
    """Shuttle bytes between a new pseudo-terminal and ``sim`` until ``stop`` is set (or forever)."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # raw bytes, no echo, no line discipline
    os.set_blocking(master, False)
    ready(os.ttyname(slave))
    pending = b""
    stop = stop or threading.Event()
    try:
        while not stop.is_set():
            readable, _, _ = select.select([master], [], [], 0.001)
            if readable:
                try:
                    sim.write(os.read(master, 65536))
                except (BlockingIOError, OSError):
                    pass
            pending += sim.read(1 << 20, timeout=0)
            if pending:
                try:
                    pending = pending[os.write(master, pending) :]
                except BlockingIOError:
                    pass  # the host is not reading: the simulator's backlog cap applies
                except OSError:
                    pending = b""  # no host has the port open (EIO): lost, as on a real serial line
    finally:
        os.close(master)
        os.close(slave)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.rig.simulator.sim", description="Run the simulated rig.")
    parser.add_argument("--pty", action="store_true", required=True, help="serve on a new pseudo-terminal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fs", type=float, default=FS_HZ, help="sample rate (Hz)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="any WormParams field")
    parser.add_argument("--video", help="render the synthetic camera to this .avi when stopped")
    args = parser.parse_args(argv)
    params = dict(p.split("=", 1) for p in args.param)
    sim = SimulatedRig(seed=args.seed, fs_hz=args.fs, **{k: _literal(v) for k, v in params.items()})
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve_pty(sim, ready=lambda path: print(path, flush=True), stop=stop)
    finally:
        sim.close()
        if args.video:
            sim.render_video(args.video)
    return 0


if __name__ == "__main__":
    sys.exit(main())
