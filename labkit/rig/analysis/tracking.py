"""Segment tracking from the raceway's top-view video (OpenCV): zone lengths, strain per zone, a kymograph and the
LED sync that puts every frame on the recording's device clock.

Per frame (:class:`SegmentTracker`, one call of ``update(frame)``; vectorised OpenCV/numpy, no per-pixel loops):

1. Body mask. The worm is reddish on a grey raceway: a pixel is body where R − B > ``body_threshold`` (50 grey
   levels; body ≈ 85–95, channel and background ≈ 20–25 in the simulated camera). A difference of channels is
   unchanged by a global lighting gain up to the margin between those levels, so slow drift does not move the mask.
2. Width profile w(x) = body pixels per column; the body's ends are the first and last columns with
   w(x) >= max(``min_width_px``, 0.3 × the 90th percentile of w) (stray noise pixels never reach that).
3. Zone boundaries. Alternating segment shades (the camera's zones; real annuli or painted marks alike) make the
   midline intensity p(x) (red channel, mean over the central rows) a square wave along the body. With the local
   mean p̄(x) over the body only (normalised box filter of ~2 zones: Σ box(p·m) / Σ box(m)), the boundaries are the
   zero crossings of p(x) − p̄(x) (p smoothed over 3 px), refined linearly between pixels (sub-pixel); gain changes
   scale p − p̄ and leave its zeros in place. A frame is usable when it shows exactly n_zones − 1 boundaries and no
   zone is shorter than half the median zone (a noise crossing makes two short zones).
4. Zone lengths: between consecutive boundaries; the two end zones run from the last boundary to the body's end,
   minus half the end zone's width (the rounded head and tail caps; width measured 0.75 median widths inside the
   body). Strain ε_j = L_j / L_j,rest − 1 (< 0: shorter); rest lengths from the first usable frame (streaming) or
   the per-zone median over the video (batch: the worm rests most of the time at 1 pulse/s). The frame's scalar
   motion signal is the mean strain over zones.
5. LED: lit when more than ``led_min_pixels`` pixels of the LED region (default: the top-right corner) are brighter
   than ``led_level``.

Time alignment (:func:`align_frames`): the LED is lit in frame i iff τ ≤ t_i < τ + on for a pulse τ, so a frame
where it turns on has t_i ∈ [τ, τ + 1/fps), expected τ + 1/(2 fps). The onsets o_j are matched to pulses
τ_{j+s} for the shift s whose least-squares line t = a + b·o fits best (ties: the smallest shift, i.e. the video
started before the first pulse); with one onset only the nominal frame rate is kept. Irregular (jittered)
inter-pulse intervals make the match unique.

The kymograph is the stack of midline profiles p(x) over frames (the raceway is straight).
"""

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from labkit.rig._checks import check_value

__all__ = [
    "FrameResult",
    "SegmentTracker",
    "Tracking",
    "read_frames",
    "track_frames",
    "track_video",
    "led_onsets",
    "align_frames",
]


@dataclass(frozen=True)
class FrameResult:
    """What :meth:`SegmentTracker.update` returns for one frame."""

    lengths_px: np.ndarray  # (n_zones,) zone lengths, NaN when the frame was not usable
    strain: np.ndarray  # (n_zones,) L / L_rest − 1, NaN until rest lengths are known or when not usable
    motion: float  # mean strain over zones (NaN when not usable)
    led: bool  # the sync LED is lit
    body_px: tuple  # (head, tail) column of the body's ends (NaN when no body)
    midline: np.ndarray  # (width,) midline intensity, one kymograph row

    @property
    def ok(self) -> bool:
        return bool(np.all(np.isfinite(self.lengths_px)))


def _box(v: np.ndarray, n: int) -> np.ndarray:
    """Running sum over n samples, centred (edges: the part of the window inside the array)."""
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(len(v))
    lo, hi = np.clip(i - n // 2, 0, len(v)), np.clip(i + n - n // 2, 0, len(v))
    return c[hi] - c[lo]


class SegmentTracker:
    """Streaming tracker: ``update(frame)`` per BGR frame (H, W, 3) uint8 -> :class:`FrameResult`.

    ``n_zones``: number of alternating body zones (default: learnt from the first frame with evenly spaced
    boundaries); ``rest_px``: rest zone lengths (default: the first usable frame's). Other arguments: see the module
    docstring.
    """

    def __init__(
        self,
        n_zones: int | None = None,
        rest_px=None,
        *,
        body_threshold: int = 50,
        min_width_px: int = 3,
        midline_rows: int = 7,
        band=(0.25, 0.75),
        led_roi=(0.875, 0.0, 1.0, 0.25),
        led_level: int = 200,
        led_min_pixels: int = 20,
    ):
        check_value(
            "SegmentTracker",
            "n_zones",
            n_zones is None or (isinstance(n_zones, int) and n_zones >= 2),
            n_zones,
            "None or an integer >= 2",
        )
        check_value(
            "SegmentTracker", "band", 0 <= band[0] < band[1] <= 1, band, "(top, bottom) fractions, top < bottom"
        )
        check_value(
            "SegmentTracker",
            "led_roi",
            0 <= led_roi[0] < led_roi[2] <= 1 and 0 <= led_roi[1] < led_roi[3] <= 1,
            led_roi,
            "(x0, y0, x1, y1) fractions of the frame with x0 < x1 and y0 < y1",
        )
        self.n_zones = n_zones
        self.rest_px = None if rest_px is None else np.asarray(rest_px, dtype=float)
        if self.rest_px is not None:
            check_value(
                "SegmentTracker",
                "rest_px",
                n_zones is not None and self.rest_px.shape == (n_zones,) and np.all(self.rest_px > 0),
                rest_px,
                "n_zones positive lengths (and n_zones given)",
            )
        self.body_threshold, self.min_width_px, self.midline_rows = body_threshold, min_width_px, midline_rows
        self.band, self.led_roi, self.led_level, self.led_min_pixels = band, led_roi, led_level, led_min_pixels

    @staticmethod
    def _even(lengths: np.ndarray) -> bool:
        """No zone shorter than half the median: a noise crossing would make two short zones."""
        return len(lengths) >= 2 and lengths.min() >= 0.5 * np.median(lengths)

    def update(self, frame: np.ndarray) -> FrameResult:
        check_value(
            "SegmentTracker.update",
            "frame",
            isinstance(frame, np.ndarray)
            and frame.ndim == 3
            and frame.shape[2] == 3
            and frame.dtype == np.uint8
            and min(frame.shape[:2]) >= 16,
            getattr(frame, "shape", type(frame)),
            "a BGR image, uint8 array of shape (H >= 16, W >= 16, 3)",
        )
        h, w = frame.shape[:2]
        band = frame[int(self.band[0] * h) : int(self.band[1] * h)]
        blue, red = band[:, :, 0], band[:, :, 2]
        body = cv2.compare(cv2.subtract(red, blue), self.body_threshold, cv2.CMP_GT)  # 255 where body
        width = cv2.reduce(body, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel() / 255.0
        mid = band.shape[0] // 2
        rows = red[mid - self.midline_rows // 2 : mid + self.midline_rows // 2 + 1]
        midline = cv2.reduce(rows, 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
        x0, y0, x1, y1 = self.led_roi
        roi = frame[int(y0 * h) : max(int(y1 * h), int(y0 * h) + 1), int(x0 * w) : max(int(x1 * w), int(x0 * w) + 1)]
        led = bool(np.count_nonzero(roi.min(axis=2) > self.led_level) > self.led_min_pixels)
        nan = np.full(self.n_zones or 0, np.nan)
        cols = np.flatnonzero(width >= max(self.min_width_px, 0.3 * np.percentile(width, 90)))
        if len(cols) < 8:
            return FrameResult(nan, nan.copy(), math.nan, led, (math.nan, math.nan), midline)
        head, tail = int(cols[0]), int(cols[-1])
        inset = int(0.75 * np.median(width[cols]))  # a point past the cap, inside the end zone
        half_head, half_tail = width[min(head + inset, w - 1)] / 2, width[max(tail - inset, 0)] / 2
        on_body = np.zeros(w)  # the body without its rounded caps (no boundary there)
        on_body[int(head + half_head) + 2 : int(tail - half_tail) - 1] = 1.0
        p = midline.astype(float) * on_body
        span = max(4, int(round(2 * (tail - head) / max(self.n_zones or 30, 2))))
        local = _box(p, 3) / np.maximum(_box(on_body, 3), 1)  # 3-px smoothing against pixel noise
        detail = np.where(on_body > 0, local - _box(p, span) / np.maximum(_box(on_body, span), 1), 0.0)
        a, b = detail[:-1], detail[1:]
        k = np.flatnonzero((on_body[:-1] > 0) & (on_body[1:] > 0) & (np.sign(a) != np.sign(b)) & (a != 0))
        crossings = k + a[k] / (a[k] - b[k])
        lengths = np.diff(np.concatenate([[head + half_head], crossings, [tail + 1 - half_tail]]))
        if self.n_zones is None and self._even(lengths):
            self.n_zones = len(lengths)
        if len(lengths) != self.n_zones or not self._even(lengths):
            nan = np.full(self.n_zones or 0, np.nan)
            return FrameResult(nan, nan.copy(), math.nan, led, (float(head), float(tail)), midline)
        if self.rest_px is None:
            self.rest_px = lengths.copy()
        strain = lengths / self.rest_px - 1.0
        return FrameResult(lengths, strain, float(strain.mean()), led, (float(head), float(tail)), midline)


def read_frames(path):
    """Yield the BGR frames of a video file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"OpenCV cannot open {path} as a video")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


@dataclass
class Tracking:
    """A tracked video: per-frame zone lengths and strain, LED state, kymograph and (once aligned) frame times."""

    lengths_px: np.ndarray  # (n_frames, n_zones), NaN in unusable frames
    strain: np.ndarray  # (n_frames, n_zones), relative to the per-zone median length
    led_on: np.ndarray  # (n_frames,) bool
    kymograph: np.ndarray  # (n_frames, width) midline intensity
    body_px: np.ndarray  # (n_frames, 2) head and tail columns
    fps: float
    frame_times_s: np.ndarray | None = None  # device clock, from the LED sync
    sync_residual_s: float | None = None  # rms residual of the LED alignment

    @property
    def motion(self) -> np.ndarray:
        """Mean strain over zones per frame (< 0: the body is shorter)."""
        return np.where(self.usable, self.strain.mean(axis=1), np.nan)

    @property
    def usable(self) -> np.ndarray:
        return np.all(np.isfinite(self.lengths_px), axis=1)


def track_frames(frames, fps: float, tracker: SegmentTracker | None = None) -> Tracking:
    """Track an iterable of BGR frames (batch); strain is relative to each zone's median length over the frames."""
    tracker = tracker or SegmentTracker()
    results = [tracker.update(f) for f in frames]
    if not results:
        raise ValueError("track_frames: no frames")
    n = tracker.n_zones or 0
    lengths = np.array([r.lengths_px if len(r.lengths_px) == n else np.full(n, np.nan) for r in results])
    if not np.isfinite(lengths).any():
        raise ValueError(
            f"track_frames: no usable frame (never exactly {n - 1} zone boundaries found); is a "
            "worm in view, with alternating segment shades?"
        )
    rest = np.nanmedian(lengths, axis=0)
    return Tracking(
        lengths,
        lengths / rest - 1.0,
        np.array([r.led for r in results]),
        np.array([r.midline for r in results]),
        np.array([r.body_px for r in results], dtype=float),
        float(fps),
    )


def track_video(path, pulse_times_s=None, **tracker_kwargs) -> Tracking:
    """Track a video file; with ``pulse_times_s`` (device clock) the frames are timed through the LED sync."""
    cap = cv2.VideoCapture(str(path)) if Path(path).is_file() else None
    fps = cap.get(cv2.CAP_PROP_FPS) if cap is not None else 0.0
    if cap is not None:
        cap.release()
    tracking = track_frames(read_frames(path), fps, SegmentTracker(**tracker_kwargs))
    if pulse_times_s is not None:
        tracking.frame_times_s, tracking.sync_residual_s = align_frames(tracking.led_on, pulse_times_s, fps)
    return tracking


def led_onsets(led_on) -> np.ndarray:
    """Frames where the LED turns on (a lit first frame is not an onset: its start is unseen)."""
    led = np.asarray(led_on, dtype=bool).ravel()
    return np.flatnonzero(led[1:] & ~led[:-1]) + 1


def align_frames(led_on, pulse_times_s, fps: float) -> tuple[np.ndarray, float]:
    """Device time of every frame from the LED onsets and the pulse times: (frame_times_s, rms residual in s)."""
    check_value("align_frames", "fps", isinstance(fps, (int, float)) and fps > 0, fps, "the nominal frame rate > 0")
    onsets = led_onsets(led_on)
    pulses = np.sort(np.asarray(pulse_times_s, dtype=float).ravel())
    if len(onsets) == 0:
        raise ValueError("align_frames: the LED never turns on in this video; no sync possible")
    if len(onsets) > len(pulses):
        raise ValueError(
            f"align_frames: {len(onsets)} LED onsets but only {len(pulses)} pulses; allowed: at most "
            "one onset per pulse (is the LED region right?)"
        )
    best = None
    for s in range(len(pulses) - len(onsets) + 1):
        target = pulses[s : s + len(onsets)] + 0.5 / fps
        if len(onsets) >= 2:
            slope, icpt = np.polyfit(onsets, target, 1)
        else:
            slope, icpt = 1 / fps, float(target[0] - onsets[0] / fps)
        resid = float(np.sqrt(np.mean((icpt + slope * onsets - target) ** 2)))
        if best is None or resid < best[0] - 1e-9:
            best = (resid, slope, icpt)
    resid, slope, icpt = best
    return icpt + slope * np.arange(len(np.asarray(led_on).ravel())), resid
