"""The simulated rig's public constructors: the worm behind a rigsim:// URL, and the camera on the rig's worm."""

import pytest

from labkit.rig.firmware.device import BLOCK_SAMPLES
from labkit.rig.simulator.sim import SimulatedRig, parse_query, worm_from_url
from labkit.rig.simulator.video import LIVE_FPS, LIVE_SIZE
from labkit.rig.simulator.worm import FS_HZ

URL = "rigsim://?seed=3&fs=30000&block=150&mgf_velocity_m_s=21"


def test_the_worm_behind_a_url_is_the_one_the_simulated_rig_builds():
    sim = SimulatedRig(**parse_query(URL.split("?", 1)[1]))
    try:
        fresh = worm_from_url(URL)  # keys of the device and the link (block) are not the worm's
        assert (fresh.seed, fresh.fs_hz, fresh.params) == (sim.worm.seed, sim.worm.fs_hz, sim.worm.params)
        assert sim.device.block_samples == 150 and fresh.params.mgf_velocity_m_s == 21
    finally:
        sim.close()


def test_defaults_and_refusals():
    worm = worm_from_url("rigsim://")
    assert (worm.seed, worm.fs_hz) == (0, FS_HZ)
    with pytest.raises(ValueError, match="rigsim://"):
        worm_from_url("/dev/ttyACM0")
    sim = SimulatedRig()
    try:
        assert sim.device.block_samples == BLOCK_SAMPLES
    finally:
        sim.close()


def test_the_rig_camera_is_seeded_by_the_worm():
    sim = SimulatedRig(seed=5)
    try:
        camera = sim.camera()
        assert (camera.worm, camera.seed, camera.fps, camera.size) == (sim.worm, 5, LIVE_FPS, LIVE_SIZE)
        assert sim.camera(fps=10.0, size=(160, 64)).fps == 10.0
    finally:
        sim.close()
