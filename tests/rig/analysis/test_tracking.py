"""Segment tracking on frames rendered by labkit.rig.simulator.video with a known strain; LED sync; streaming
(throughput: benchmarks/bench_rig_analysis.py)."""

import numpy as np
import pytest

from labkit.rig.analysis import tracking as tr
from labkit.rig.simulator.video import render_video
from labkit.rig.simulator.worm import Earthworm

LED_TIMES = [0.21, 0.64, 1.37]  # irregular on purpose: the LED match is then unique


@pytest.fixture(scope="module")
def filmed(tmp_path_factory):
    """A worm twitching after a strong pulse at 0.5 s, filmed 0.1–1.6 s at 30 fps, LED flashes at LED_TIMES."""
    worm = Earthworm(seed=3, spontaneous_rate_hz=0.0)
    worm.deliver(0.5, 2.5 * worm.threshold_vpp("LGF", 3.0), 3.0)
    path = tmp_path_factory.mktemp("tracking") / "run.avi"
    info = render_video(worm, path, 0.1, 1.6, fps=30.0, led_times_s=LED_TIMES, led_on_s=0.05, seed=1)
    frames = list(tr.read_frames(path))
    truth = worm.segment_strain(info["frame_times_s"])
    return worm, path, info, frames, truth


def test_tracked_strain_matches_the_rendered_strain(filmed):
    worm, path, info, _, truth = filmed
    t = tr.track_video(path)
    assert t.usable.all() and t.strain.shape == truth.shape == (45, worm.params.n_zones)
    err = t.strain - (truth - np.median(truth, axis=0))  # batch strain is relative to the median frame
    assert np.sqrt(np.mean(err**2)) < 0.02
    assert np.corrcoef(t.motion, truth.mean(axis=1))[0, 1] > 0.99
    assert truth.min() < -0.1  # the test does exercise a real contraction
    assert t.kymograph.shape == (45, 640)


def test_led_sync_puts_frames_on_the_device_clock(filmed):
    _, path, info, _, _ = filmed
    t = tr.track_video(path, pulse_times_s=LED_TIMES)
    assert t.led_on.tolist() == info["led_on"]
    # a lit frame is within one frame after its pulse: the alignment is good to half a frame
    assert np.abs(t.frame_times_s - np.asarray(info["frame_times_s"])).max() < 0.5 / 30
    assert t.sync_residual_s < 0.5 / 30


def test_led_match_finds_the_right_pulses_when_the_video_starts_late(filmed):
    _, _, info, _, _ = filmed
    pulses = [-1.3, -0.45] + LED_TIMES  # two earlier pulses the camera did not see
    times, _ = tr.align_frames(info["led_on"], pulses, 30.0)
    assert np.abs(times - np.asarray(info["frame_times_s"])).max() < 0.5 / 30


def test_streaming_tracker_gives_a_strain_per_zone_and_a_motion_signal(filmed):
    worm, _, info, frames, truth = filmed
    tracker = tr.SegmentTracker()
    results = [tracker.update(f) for f in frames]
    assert tracker.n_zones == worm.params.n_zones
    assert all(r.ok and r.strain.shape == (worm.params.n_zones,) for r in results)
    np.testing.assert_allclose(results[0].strain, 0.0)  # rest lengths from the first frame (at rest)
    motion = np.array([r.motion for r in results])
    assert np.corrcoef(motion, truth.mean(axis=1))[0, 1] > 0.99
    assert abs(motion.min() - truth.mean(axis=1).min()) < 0.02
    assert [r.led for r in results] == info["led_on"]


def test_robust_to_strong_lighting_drift_and_noise(filmed):
    _, _, _, frames, truth = filmed
    g = np.random.default_rng(0)
    gains = 1 + 0.15 * np.sin(np.linspace(0, 3 * np.pi, len(frames)))  # ±15 % (the camera has ±4 %)
    dimmed = [np.clip(f * k + g.normal(0, 6, f.shape), 0, 255).astype(np.uint8) for f, k in zip(frames, gains)]
    t = tr.track_frames(dimmed, 30.0)
    assert t.usable.mean() > 0.95
    ok = t.usable
    assert np.corrcoef(t.motion[ok], truth.mean(axis=1)[ok])[0, 1] > 0.98


@pytest.mark.parametrize("frame", [np.zeros((160, 640), np.uint8), np.zeros((160, 640, 3), np.float32), "frame"])
def test_update_rejects_bad_frames(frame):
    with pytest.raises(ValueError, match="'frame'"):
        tr.SegmentTracker().update(frame)


def test_bad_arguments_and_inputs(tmp_path):
    with pytest.raises(ValueError, match="'n_zones'"):
        tr.SegmentTracker(n_zones=1)
    with pytest.raises(ValueError, match="'led_roi'"):
        tr.SegmentTracker(led_roi=(0.5, 0.0, 0.4, 0.2))
    with pytest.raises(FileNotFoundError):
        tr.track_video(tmp_path / "missing.avi")
    with pytest.raises(ValueError, match="no usable frame"):
        tr.track_frames([np.full((160, 640, 3), 120, np.uint8)] * 3, 30.0)
    with pytest.raises(ValueError, match="never turns on"):
        tr.align_frames([False] * 10, [0.1], 30.0)
    with pytest.raises(ValueError, match="LED onsets"):
        tr.align_frames([False, True, False, True], [0.1], 30.0)
    with pytest.raises(ValueError, match="'fps'"):
        tr.align_frames([False, True], [0.1], 0.0)
