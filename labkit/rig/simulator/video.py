"""Synthetic top-view camera of the raceway: the simulated worm's segments, lighting, noise and an LED marker.

Frame i shows device time t_i = t_start + i / fps for every t_i < t_stop (n = floor((t_stop - t_start) fps)
frames). The worm lies along the channel, head on the left and held at the stimulating electrodes (assumed).
Body zone j is drawn as a filled band (alternating shades; rounded head and tail) of rest length
ℓ_j = body_length / n_zones and rest width W; at strain ε_j(t) = ``worm.segment_strain`` it has

    length ℓ_j (1 + ε_j),      width W / sqrt(1 + ε_j)      (constant volume of a fluid-filled segment),

so a shortening segment widens and local width is a proxy for strain. W = 6 mm (assumed). Slow
lighting drift multiplies the scene by 1 + 0.04 sin(2π t / 17 s + φ) and each frame gets white pixel noise of
3 grey levels rms (both assumed, "mild"); φ and the noise come from ``repro.rng(seed, ...)``. The LED (a bright
disc in the top-right corner, a camera-sync marker driven by the stimulator, assumed) is lit in frame i iff
τ <= t_i < τ + led_on_s for some τ in ``led_times_s``. Codec: MJPG in an .avi (OpenCV 5 writes MJPG/XVID/mp4v,
no H.264). The returned description is also written as JSON next to the video (same stem).
"""

import json
import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from labkit import repro
from labkit.atomic import atomic_write_text
from labkit.rig._checks import check_value

__all__ = ["LIVE_FPS", "LIVE_SIZE", "led_states", "render_frames", "render_video", "Camera"]

WORM_WIDTH_MM = 6.0  # assumed rest diameter of an adult L. terrestris
DRIFT_DEPTH, DRIFT_PERIOD_S = 0.04, 17.0
NOISE_GREY = 3.0
_SHIFT = 4  # cv2 sub-pixel bits: coordinates drawn at 1/16 px
_BACKGROUND, _CHANNEL = (70, 80, 90), (150, 165, 175)  # BGR
_BODY = ((95, 105, 190), (80, 90, 165))  # alternating zone colours (BGR)
_LED_ON, _LED_OFF = (255, 255, 255), (40, 40, 40)
LIVE_FPS, LIVE_SIZE = 20.0, (320, 80)  # the live camera's frame rate and (width, height)


def _fix(x: float, y: float) -> tuple[int, int]:
    """Sub-pixel coordinates for cv2 drawing with ``shift=_SHIFT``."""
    return round(x * 2**_SHIFT), round(y * 2**_SHIFT)


def led_states(times_s, led_times_s=(), led_on_s: float = 0.05) -> list[bool]:
    """Whether the LED is lit at each frame time: τ <= t < τ + ``led_on_s`` for some τ in ``led_times_s``."""
    led_times = np.asarray(led_times_s, dtype=float).ravel()
    return [bool(np.any((led_times <= t) & (t < led_times + led_on_s))) for t in times_s]


def render_frames(
    worm, times_s, led_on, *, size=(640, 160), seed: int = 0, first_index: int = 0
) -> Iterator[np.ndarray]:
    """The frames (BGR uint8, ``(height, width, 3)``) of ``worm`` at device times ``times_s``, LED per ``led_on``.

    ``first_index`` is the absolute index of the first frame in its stream: the pixel noise of frame k is drawn
    from ``repro.rng(seed, 1, k)``, so a stream rendered piece by piece equals one rendered at once.
    """
    check_value(
        "render_video",
        "size",
        len(size) == 2 and all(int(s) == s and s >= 64 for s in size),
        size,
        "(width, height) in pixels, integers >= 64",
    )
    width, height = int(size[0]), int(size[1])
    strain = np.clip(worm.segment_strain(list(times_s)), -0.9, None)  # keeps 1 + ε > 0 for any overlap of twitches
    p = worm.params
    margin = 0.06 * width
    mm_px = (width - 2 * margin) / p.body_length_mm
    rest_len, rest_w = p.body_length_mm / p.n_zones * mm_px, WORM_WIDTH_MM * mm_px
    mid_y, led_r = height / 2, max(4, height // 16)
    drift_phase = repro.rng(seed, 0).uniform(0, 2 * np.pi)
    for i, t in enumerate(times_s):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = _BACKGROUND
        frame[int(height * 0.25) : int(height * 0.75)] = _CHANNEL
        lengths = rest_len * (1.0 + strain[i])
        widths = rest_w / np.sqrt(1.0 + strain[i])
        edges = margin + np.concatenate([[0.0], np.cumsum(lengths)])
        for j in (0, p.n_zones - 1):  # rounded head and tail
            cv2.ellipse(
                frame,
                _fix(edges[j + (j > 0)], mid_y),
                _fix(widths[j] / 2, widths[j] / 2),
                0,
                0,
                360,
                _BODY[j % 2],
                -1,
                cv2.LINE_AA,
                _SHIFT,
            )
        for j in range(p.n_zones):
            x0, x1, half = edges[j], edges[j + 1], widths[j] / 2
            quad = np.array(
                [_fix(x0, mid_y - half), _fix(x1, mid_y - half), _fix(x1, mid_y + half), _fix(x0, mid_y + half)],
                np.int32,
            )
            cv2.fillPoly(frame, [quad], _BODY[j % 2], cv2.LINE_AA, _SHIFT)
        gain = 1.0 + DRIFT_DEPTH * math.sin(2 * np.pi * t / DRIFT_PERIOD_S + drift_phase)
        image = frame * gain
        cv2.circle(image, (width - 2 * led_r, 2 * led_r), led_r, _LED_ON if led_on[i] else _LED_OFF, -1)
        image += NOISE_GREY * repro.rng(seed, 1, first_index + i).standard_normal(image.shape)
        yield np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_video(
    worm,
    path,
    t_start_s: float,
    t_stop_s: float,
    *,
    fps: float = 30.0,
    led_times_s=(),
    led_on_s: float = 0.05,
    size=(640, 160),
    seed: int = 0,
) -> dict:
    """Write the synthetic video of ``worm`` (a :class:`labkit.rig.simulator.worm.Earthworm`) to ``path`` (.avi).

    Returns ``{"file", "fps", "frame_times_s", "led_on", "size"}`` (see the module docstring), also saved as
    ``path`` with suffix ``.json``.
    """
    path = Path(path)
    check_value("render_video", "path", path.suffix.lower() == ".avi", str(path), "a file name ending in .avi (MJPG)")
    check_value("render_video", "fps", fps > 0 and math.isfinite(fps), fps, "a number > 0")
    check_value("render_video", "t_stop_s", t_stop_s > t_start_s, t_stop_s, f"a time after t_start_s={t_start_s!r}")
    check_value("render_video", "led_on_s", led_on_s > 0, led_on_s, "a number > 0")
    n_frames = math.floor((t_stop_s - t_start_s) * fps + 1e-9)
    times = [t_start_s + i / fps for i in range(n_frames)]
    led_on = led_states(times, led_times_s, led_on_s)
    frames = render_frames(worm, times, led_on, size=size, seed=seed)  # checks size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (int(size[0]), int(size[1])))
    if not writer.isOpened():
        raise RuntimeError(f"render_video: OpenCV could not open {path} for MJPG writing")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()

    info = {
        "file": str(path),
        "fps": fps,
        "frame_times_s": times,
        "led_on": led_on,
        "size": [int(size[0]), int(size[1])],
    }
    atomic_write_text(path.with_suffix(".json"), json.dumps(info, indent=1))
    return info


class Camera:
    """The simulated camera as a live stream: frame k of the stream shows device time ``t_start_s + k / fps``.

    :meth:`frames_until` returns the frames due since the previous call, rendered as :func:`render_video` would
    render them (same noise per absolute frame), JPEG-compressed and decoded like an MJPG camera's frames.
    """

    def __init__(
        self,
        worm,
        *,
        fps: float = LIVE_FPS,
        size=LIVE_SIZE,
        seed: int = 0,
        t_start_s: float = 0.0,
        led_on_s: float = 0.05,
        jpeg_quality: int = 95,
    ):
        check_value("render_video", "fps", fps > 0 and math.isfinite(fps), fps, "a number > 0")
        self.worm, self.fps, self.size, self.seed = worm, float(fps), tuple(size), int(seed)
        self.t_start_s, self.led_on_s, self.jpeg_quality = float(t_start_s), float(led_on_s), int(jpeg_quality)
        self.n_frames = 0

    @classmethod
    def of(cls, worm, **kwargs) -> "Camera":
        """The camera on ``worm`` with its pixel noise seeded by the worm's seed (the live panel's camera, and the
        replay of its session); other keywords as for the constructor."""
        return cls(worm, seed=worm.seed, **kwargs)

    def frames_until(self, t_s: float, led_times_s=(), max_frames: int | None = None) -> tuple[np.ndarray, list]:
        """(frame times ``(n,)``, frames ``[n × (h, w, 3) uint8]``) for every frame time in [previous stop, ``t_s``);
        the LED is lit for ``led_times_s`` (the pulse onsets). With ``max_frames``, older frames beyond that many
        are skipped unrendered (e.g. after the stream was stopped for a while)."""
        n = math.ceil((t_s - self.t_start_s - self.n_frames / self.fps) * self.fps - 1e-9)
        if max_frames is not None and n > max_frames:
            self.n_frames, n = self.n_frames + n - max_frames, max_frames
        if n < 1:
            return np.zeros(0), []
        times = self.t_start_s + (self.n_frames + np.arange(n)) / self.fps
        params = [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
        frames = [
            cv2.imdecode(cv2.imencode(".jpg", f, params)[1], cv2.IMREAD_COLOR)
            for f in render_frames(
                self.worm,
                times,
                led_states(times, led_times_s, self.led_on_s),
                size=self.size,
                seed=self.seed,
                first_index=self.n_frames,
            )
        ]
        self.n_frames += n
        return times, frames
