"""The live panel's pulse schedule: when the controller's stimulus thread asks the rig for the next pulse.

While running and armed, pulses are requested on a fixed-rate schedule, every 1 / rate_hz seconds from the previous
*request* (so they start 1 / rate_hz apart on the device clock, the request-to-pulse latency being constant), never
sooner than 1 / max_rate_hz after the previous echo — stricter than the host driver's rate check, which counts from
the previous request, so that at the maximum rate the device's own check (onset to onset) is not met on a knife
edge; a late request is not followed by a burst. Times are host times (``time.monotonic()``).

labkit.rig.ui.controller.RigController keeps one :class:`PulseSchedule` and runs it on its stimulus thread (arming,
settings, refusals and the pulses themselves are the controller's).
"""

import math
import time

__all__ = ["PulseSchedule"]


class PulseSchedule:
    """The schedule's state: ``next_due``, the host time of the next scheduled request, and ``last_echo``, the host
    time of the last echo or refusal."""

    def __init__(self):
        self.last_echo = -math.inf  # host time of the last echo or refusal
        self.next_due = 0.0  # host time of the next scheduled request

    def restart(self, now: float) -> None:
        """The next request is due at ``now`` (the first pulse after starting or arming goes at once)."""
        self.next_due = now

    def advance(self, now: float, rate_hz: float) -> None:
        """A request goes at ``now``: the next is due 1 / rate_hz after this one was due, or after ``now`` if this one
        was late (no burst)."""
        period = 1.0 / rate_hz
        self.next_due = self.next_due + period if self.next_due + period > now else now + period

    def wait_s(self, armed: bool, max_rate_hz: float) -> float:
        """How long the stimulus thread may sleep: until the next request is due, at most 10 ms (a STOP or an arm is
        seen within that), at least 0.5 ms."""
        if not armed:
            return 0.01
        return min(0.01, max(0.0005, self.due_s(max_rate_hz) - time.monotonic()))

    def due_s(self, max_rate_hz: float) -> float:
        """Host time of the next request: the schedule's, never sooner than 1 / max_rate_hz after the previous echo
        (module docstring)."""
        return max(self.next_due, self.last_echo + 1.0 / max_rate_hz)
