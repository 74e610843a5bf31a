"""The holding clock: device time at speed × real time, held at each registered onset until that pulse is taken, and
never more than half the watchdog period ahead of the host."""

import threading
from types import SimpleNamespace

import pytest

from labkit.rig.firmware.limits import SafetyLimits
from labkit.rig.simulator.holding_clock import HoldingClock


class FakeSim:
    """What HoldingClock reads from a SimulatedRig: its clock and its device's counters."""

    def __init__(self):
        self.device = SimpleNamespace(limits=SafetyLimits(), last_host_us=0, pulses_delivered=0)

    def now_us(self):
        return 0


def _run_to(clock, sim, at_us):
    """Call the clock as the simulator does, with a host that keeps the watchdog fed, until it reads ``at_us``."""
    seen = []
    while not seen or seen[-1] < at_us:
        sim.device.last_host_us = seen[-1] if seen else 0
        seen.append(clock())
        threading.Event().wait(0.001)
    return seen


def test_holding_clock_stops_at_the_hold_until_the_pulse_is_taken():
    sim = FakeSim()
    clock = HoldingClock(sim, speed=4.0)
    clock.hold(30_000, until_pulses=1)
    seen = _run_to(clock, sim, 30_000)
    clock.wait(1, timeout_s=1.0)
    assert seen[-1] == 30_000 and all(b >= a for a, b in zip(seen, seen[1:]))
    sim.device.last_host_us = 30_000
    threading.Event().wait(0.01)
    assert clock() == 30_000  # still held: the pulse is not delivered
    sim.device.pulses_delivered = 1
    threading.Event().wait(0.01)
    assert clock() > 30_000  # released, and it carries on from the hold


def test_the_next_hold_stops_device_time_however_late_the_host_is():
    """Regression: the hold for pulse k + 1 used to be set after pulse k's echo, so a host slowed down between the
    two let device time run past onset k + 1 ("hold time is already past")."""
    sim = FakeSim()
    clock = HoldingClock(sim, speed=4.0)
    clock.hold(30_000, until_pulses=1)
    clock.hold(60_000, until_pulses=2)
    _run_to(clock, sim, 30_000)
    clock.wait(1, timeout_s=1.0)
    sim.device.pulses_delivered = 1
    seen = _run_to(clock, sim, 60_000)
    for _ in range(20):  # the host takes its time; heartbeats keep coming
        sim.device.last_host_us = seen[-1]
        threading.Event().wait(0.005)
        seen.append(clock())
    assert max(seen) == 60_000 == seen[-1]
    clock.wait(2, timeout_s=1.0)


def test_holds_come_in_delivery_order():
    sim = FakeSim()
    clock = HoldingClock(sim, speed=4.0)
    clock.hold(60_000, until_pulses=1)
    with pytest.raises(RuntimeError, match="allowed: after device time 60000 µs and for more than 1 pulses"):
        clock.hold(30_000, until_pulses=2)
    with pytest.raises(RuntimeError, match="holds come in delivery order"):
        clock.hold(90_000, until_pulses=1)


def test_wait_names_the_pulse_it_waited_for():
    clock = HoldingClock(FakeSim(), speed=4.0)
    clock.hold(10_000_000, until_pulses=1)
    with pytest.raises(TimeoutError, match="the hold for pulse 1 within 0.05 s"):
        clock.wait(1, timeout_s=0.05)


def test_holding_clock_never_runs_ahead_of_the_host_by_half_the_watchdog():
    sim = FakeSim()
    clock = HoldingClock(sim, speed=4.0)
    threading.Event().wait(0.2)  # 800 ms of device time at speed 4...
    assert clock() <= SafetyLimits().watchdog_ms * 1000 / 2  # ...but the host sent nothing: 125 ms at most
