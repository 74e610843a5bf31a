"""Test doubles for the rig: a front end whose every call is logged, and helpers to talk to a Device directly."""

import numpy as np
import pytest

from labkit.rig.firmware.device import Device
from labkit.rig.firmware.framing import Encoder, FrameDecoder


class StubFrontend:
    """A front end with a known signal (sample index as µV on channel 0) that logs every delivered pulse."""

    fs_hz = 30000.0
    electrode_positions_mm = np.array([30.0, 50.0, 70.0, 90.0])

    def __init__(self):
        self.delivered: list[tuple[float, float, float]] = []

    def deliver(self, t_s, vpp, period_ms):
        self.delivered.append((t_s, vpp, period_ms))
        return {"vpp_measured": vpp * 0.99, "period_ms_measured": period_ms, "fibres": ()}

    def acquire(self, start_index, n):
        out = np.zeros((n, 4))
        out[:, 0] = (np.arange(start_index, start_index + n) % 1000) * 0.2
        return out


class DeviceHarness:
    """Drives a Device with raw host frames (no host-side checks) and collects what it answers."""

    def __init__(self):
        self.frontend = StubFrontend()
        self.device = Device(self.frontend)
        self.host = Encoder()
        self.decoder = FrameDecoder()
        self.now = 0

    def send(self, msg, at_us=None) -> list:
        self.now = self.now if at_us is None else at_us
        self.device.receive(self.host.encode(msg, self.now), self.now)
        return self.advance(self.now)

    def advance(self, to_us) -> list:
        self.now = to_us
        self.device.step(to_us)
        return self.decoder.feed(self.device.take_output())


@pytest.fixture
def harness() -> DeviceHarness:
    return DeviceHarness()


def run_session(rig, folder, n_pulses=10, gap_s=0.15):
    """The acceptance session: configure, record, arm, pulses at 2–6 Vpp, read, disarm. Returns (pulses, recording)."""
    rig.configure(sample_rate=30000, channels=4)
    with rig.record(folder):
        rig.arm()
        pulses = []
        for vpp in np.linspace(2.0, 6.0, n_pulses):
            pulses.append(rig.stimulate(vpp=float(vpp), period_ms=3.0))
            rig.read(gap_s)
        recording = rig.read(0.2)
        rig.disarm()
    return pulses, recording
