"""The synthetic raceway camera: file, frame count and times, LED sync frames, motion where the strain moves."""

import json

import cv2
import numpy as np
import pytest

from labkit.rig.simulator import video
from labkit.rig.simulator.video import render_video
from labkit.rig.simulator.worm import Earthworm


def read_frames(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return count, np.array(frames)


@pytest.fixture(scope="module")
def twitching(tmp_path_factory):
    """One supra-threshold pulse at 0.5 s, filmed from 0.1 to 1.6 s, with LED flashes at 0.21 and 0.71 s."""
    worm = Earthworm(seed=3, spontaneous_rate_hz=0.0)
    worm.deliver(0.5, 2.5 * worm.threshold_vpp("LGF", 3.0), 3.0)
    path = tmp_path_factory.mktemp("video") / "run.avi"
    info = render_video(
        worm, path, 0.1, 1.6, fps=30.0, led_times_s=[0.21, 0.71], led_on_s=0.08, size=(640, 160), seed=1
    )
    count, frames = read_frames(path)
    return worm, path, info, count, frames


def test_file_frame_count_times_and_sidecar(twitching):
    _, path, info, count, frames = twitching
    assert count == 45 and len(frames) == 45
    assert frames.shape[1:] == (160, 640, 3)
    assert info["file"] == str(path) and info["fps"] == 30.0 and info["size"] == [640, 160]
    np.testing.assert_allclose(info["frame_times_s"], 0.1 + np.arange(45) / 30.0)
    assert json.loads(path.with_suffix(".json").read_text()) == info


def test_led_is_lit_in_exactly_the_expected_frames(twitching):
    _, _, info, _, frames = twitching
    times = np.asarray(info["frame_times_s"])
    expected = ((times >= 0.21) & (times < 0.29)) | ((times >= 0.71) & (times < 0.79))
    assert np.flatnonzero(expected).tolist() == [4, 5, 19, 20]  # t = 0.233, 0.267, 0.733, 0.767
    assert info["led_on"] == expected.tolist()
    corner = frames[:, : frames.shape[1] // 4, -frames.shape[2] // 8 :].mean(axis=3).max(axis=(1, 2))
    lit = corner > (corner.max() + corner.min()) / 2
    assert lit.tolist() == expected.tolist()
    assert corner[lit].min() - corner[~lit].max() > 100


def test_frames_change_where_the_strain_changes(twitching):
    worm, _, info, _, frames = twitching
    strain = worm.segment_strain(info["frame_times_s"])
    moving = np.abs(np.diff(strain, axis=0)).max(axis=1)  # per consecutive frame pair
    band = frames[:, 60:100].astype(float).mean(axis=(1, 3))  # kymograph rows: worm band, mean over y
    change = np.abs(np.diff(band, axis=0)).max(axis=1)
    still, busy = moving == 0, moving > 0.005
    assert still.sum() >= 10 and busy.sum() >= 5
    assert change[busy].min() > 2 * change[still].max()
    # a contracted worm is shorter: its tail end moves towards the head
    body = (frames[:, 80, :, 2].astype(int) - frames[:, 80, :, 0]) > 40  # reddish pixels on the midline
    tail = np.array([np.flatnonzero(row).max() for row in body])
    peak = int(np.argmin(strain.sum(axis=1)))
    assert tail[peak] < tail[0] - 20


def test_same_inputs_same_video(tmp_path):
    worm = Earthworm(seed=2)
    a = render_video(worm, tmp_path / "a.avi", 0.0, 0.3, seed=5)
    b = render_video(worm, tmp_path / "b.avi", 0.0, 0.3, seed=5)
    assert a["frame_times_s"] == b["frame_times_s"] and len(a["frame_times_s"]) == 9
    assert np.array_equal(read_frames(tmp_path / "a.avi")[1], read_frames(tmp_path / "b.avi")[1])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(path="x.mp4"), "path"),
        (dict(t_stop_s=0.0), "t_stop_s"),
        (dict(fps=0.0), "fps"),
        (dict(led_on_s=0.0), "led_on_s"),
        (dict(size=(10, 10)), "size"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, name):
    args = dict(path=tmp_path / "v.avi", t_start_s=0.0, t_stop_s=1.0) | kwargs
    with pytest.raises(ValueError, match=f"'{name}'"):
        render_video(Earthworm(), args.pop("path"), args.pop("t_start_s"), args.pop("t_stop_s"), **args)


def test_a_stream_rendered_piece_by_piece_equals_one_rendered_at_once():
    worm = Earthworm(seed=3)
    times = [0.2 + k / 20 for k in range(8)]
    led = video.led_states(times, [0.25], 0.1)
    whole = list(video.render_frames(worm, times, led, size=(128, 64), seed=2))
    pieces = [
        *video.render_frames(worm, times[:3], led[:3], size=(128, 64), seed=2),
        *video.render_frames(worm, times[3:], led[3:], size=(128, 64), seed=2, first_index=3),
    ]
    assert all(np.array_equal(a, b) for a, b in zip(whole, pieces)) and len(pieces) == 8
    assert led == [False, True, True, False, False, False, False, False]


def test_the_live_camera_delivers_each_frame_once_in_time_order():
    camera = video.Camera(Earthworm(seed=3), fps=20.0, size=(128, 64), seed=2)
    t1, f1 = camera.frames_until(0.26)
    t2, f2 = camera.frames_until(0.26)
    t3, f3 = camera.frames_until(0.5, max_frames=2)
    assert np.allclose(t1, np.arange(6) / 20) and len(f1) == 6 and f1[0].shape == (64, 128, 3)
    assert len(t2) == 0 and f2 == []
    assert np.allclose(t3, [0.4, 0.45]) and len(f3) == 2  # older frames beyond max_frames skipped
