"""A device clock for scripted sessions on the simulator: every pulse starts exactly at its scheduled device time.

The simulator paces itself by the monotonic clock, and the device starts a pulse when the STIMULATE frame arrives, so
a real-time session is not sample-exact: onsets move by ~1 ms from run to run. :class:`HoldingClock`, installed with
``SimulatedRig.set_clock``, runs device time at ``speed`` × real time but *holds* it at each scheduled onset until
the device has taken that pulse; the host waits for the hold (:meth:`HoldingClock.wait`), then sends the pulse. So
every onset lies on the sample grid whatever the load on the machine.

Holds are registered ahead (:meth:`HoldingClock.hold`, in delivery order): the moment pulse k is delivered, device
time runs on to onset k + 1 and stops there, without waiting for the host to say where to stop next — a host slowed
down between two pulses (a busy machine, a long analysis) only lengthens the hold, never lets device time run past
an onset. Device time also never runs more than half the watchdog period ahead of the last host frame, so a busy
host slows the simulation instead of tripping the watchdog.
"""

import threading
import time
from collections import deque

__all__ = ["HoldingClock"]


class HoldingClock:
    """Device µs for ``SimulatedRig.now_us`` (see the module docstring). Called from the simulator's thread;
    :meth:`hold` and :meth:`wait` from the host's."""

    def __init__(self, sim, speed: float):
        self._device, self._speed = sim.device, float(speed)
        self._lead_us = sim.device.limits.watchdog_ms * 1000 / 2
        self._t = float(sim.now_us())
        self._real = time.monotonic_ns()
        self._holds: deque[tuple[int, int]] = deque()  # (pulses delivered, device µs held at until then), in order
        self._reached = 0  # the largest ``until_pulses`` whose hold device time has reached
        self._cond = threading.Condition()

    def __call__(self) -> int:
        with self._cond:
            real = time.monotonic_ns()
            t = self._t + (real - self._real) / 1000 * self._speed
            self._real = real
            t = min(t, max(self._t, self._device.last_host_us + self._lead_us))
            while self._holds and self._holds[0][0] <= self._device.pulses_delivered:
                self._holds.popleft()  # taken: released
            if self._holds and t >= self._holds[0][1]:
                pulses, t = self._holds[0]
                if pulses > self._reached:
                    self._reached = pulses
                    self._cond.notify_all()
            self._t = max(self._t, t)
            return int(self._t)

    def hold(self, at_us: int, until_pulses: int) -> None:
        """Stop device time at ``at_us`` until the device has delivered ``until_pulses`` pulses in all. Holds come in
        delivery order: each later and for more pulses than the one before."""
        with self._cond:
            last_pulses, last_at = self._holds[-1] if self._holds else (0, self._t)
            if at_us < last_at or until_pulses <= last_pulses:
                raise RuntimeError(
                    f"HoldingClock: hold at {at_us} µs until {until_pulses} pulses; allowed: after device time "
                    f"{last_at:.0f} µs and for more than {last_pulses} pulses (holds come in delivery order)"
                )
            self._holds.append((int(until_pulses), int(at_us)))

    def wait(self, until_pulses: int, timeout_s: float) -> None:
        """Return once device time has reached the hold for ``until_pulses`` (it stays there until they are
        delivered)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._reached >= until_pulses, timeout_s):
                raise TimeoutError(
                    f"HoldingClock: device time did not reach the hold for pulse {until_pulses} within {timeout_s} s"
                )
