"""What the live panel draws, computed without widgets: the newest rows of a stream, their envelope at pixel width,
one tick's :class:`Snapshot`, and the stimulus-triggered :class:`SweepView`.

Display. :func:`decimate_minmax` keeps each bin's minimum and maximum (2 points per bin, bins ≈ pixels), the
usual envelope decimation of scope displays: a 1 ms spike in a 2 s window at 800 px stays visible.

Sweeps. :meth:`SweepView.of` turns the raw stream around the last pulses into artefact-free sweeps with first-spike
latencies and a conduction-velocity estimate (labkit.rig.analysis: the automatic artefact removal of the offline
estimate, then a per-sweep least-squares fit over the pairs).
"""

import math
import threading
from dataclasses import dataclass

import numpy as np

from labkit.rig.analysis.cleaning import auto_clean
from labkit.rig.analysis.epochs import BAND_HZ
from labkit.rig.analysis.propagation import fit_velocities
from labkit.rig.analysis.spikes import THRESHOLD_K, arrival_times
from labkit.rig.host.recording import Pulse
from labkit.rig.ui.settings import StimulusSettings

__all__ = ["WIDTH_PX", "RingBuffer", "decimate_minmax", "Snapshot", "SweepView"]

WIDTH_PX = 800  # the panel's plots, pixels wide: traces are decimated to one bin per pixel


class RingBuffer:
    """The last ``capacity`` rows of a stream of (n, n_columns) blocks keyed by absolute row index; thread-safe.

    Rows never written (before the first block, or skipped by a jump forward in the index) read as NaN.
    """

    def __init__(self, capacity: int, n_columns: int):
        if capacity < 1 or n_columns < 1:
            raise ValueError(f"RingBuffer: capacity={capacity!r}, n_columns={n_columns!r}; allowed: integers >= 1")
        self.capacity, self.n_columns = int(capacity), int(n_columns)
        self._data = np.full((self.capacity, self.n_columns), np.nan, np.float32)
        self._end: int | None = None  # absolute index one past the newest row
        self._lock = threading.Lock()

    @property
    def end(self) -> int | None:
        return self._end

    def write(self, first_index: int, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float32).reshape(-1, self.n_columns)
        with self._lock:
            end = first_index + len(rows)
            if self._end is not None and end <= self._end:
                return  # old or duplicate data
            if self._end is not None and first_index > self._end:  # a hole: forget what it overwrites
                hole = np.arange(max(self._end, first_index - self.capacity), first_index)
                self._data[hole % self.capacity] = np.nan
            start = max(first_index, end - self.capacity, self._end if self._end is not None else first_index)
            self._data[np.arange(start, end) % self.capacity] = rows[start - first_index :]
            self._end = end

    def snapshot(self, n: int) -> tuple[int, np.ndarray]:
        """(absolute index of the first row, a copy of the newest ``n`` rows); n is capped at the capacity."""
        n = min(int(n), self.capacity)
        with self._lock:
            end = 0 if self._end is None else self._end
            out = self._data[np.arange(end - n, end) % self.capacity]
            out[: max(0, min(n, n - end))] = np.nan  # indices < 0: nothing there yet
            if self._end is None:
                out[:] = np.nan
        return end - n, out


def decimate_minmax(y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Min/max envelope of ``y`` (n, k) in ``n_bins`` equal bins of the most recent samples.

    Returns (row positions (2 m,), values (2 m, k)): each bin's minimum then maximum, both at the bin's centre
    (in rows of ``y``), so a line through them draws one vertical stroke per bin. Short inputs (n <= 2 n_bins)
    come back unchanged. NaN in a bin makes the bin NaN (a visible break).
    """
    y = np.asarray(y, float)
    if y.ndim == 1:
        y = y[:, None]
    n = len(y)
    if n <= 2 * n_bins:
        return np.arange(n, dtype=float), y
    size = math.ceil(n / n_bins)
    m = n // size
    skip = n - m * size  # drop the oldest samples that do not fill a bin
    bins = y[skip:].reshape(m, size, -1)
    centres = skip + (np.arange(m) + 0.5) * size - 0.5
    values = np.stack([bins.min(axis=1), bins.max(axis=1)], axis=1).reshape(2 * m, -1)
    return np.repeat(centres, 2), values


@dataclass
class Snapshot:
    """What the panel draws at one tick: decimated traces, the motion signal and the counters."""

    t_s: np.ndarray  # (m,) device time of each decimated trace point
    traces_uv: np.ndarray  # (m, n_channels)
    motion_t_s: np.ndarray  # (k,) frame times
    motion: np.ndarray  # (k,) motion signal (mean zone strain, 1 = rest length doubled)
    t_end_s: float  # device time of the newest sample (the right edge of the window)
    window_s: float
    artefacts_s: np.ndarray  # (p, 2) [start, stop) of each stimulus pulse in the window (device time)
    counters: dict
    state: str
    armed: bool
    settings: StimulusSettings
    last_pulse: Pulse | None
    message: str


@dataclass(frozen=True)
class SweepView:
    """The last stimulus-triggered sweeps (a scope's persistence view), ready to draw.

    Each sweep is the stream around one echoed pulse. The artefact is estimated from the sweeps themselves,
    subtracted, and what remains blanked per pair until it falls into the noise (labkit.rig.analysis.cleaning.
    auto_clean, as the offline conduction-velocity estimate does); the first-spike arrival per pair is found after
    the blank and the conduction velocity is the median over the sweeps of the per-sweep least-squares fit over the
    pairs (labkit.rig.analysis.propagation.fit_velocities)."""

    t_ms: np.ndarray  # (S,) time after the pulse onset
    sweeps_uv: np.ndarray  # (n, S, n_pairs) artefact-free, band-passed; oldest first
    arrivals_ms: np.ndarray  # (n, n_pairs), NaN where no spike, or where the pair's blank outlasts the next
    # pair's median arrival (its first spike may be hidden)
    velocity_m_s: float  # NaN when no sweep gives one
    positions_mm: np.ndarray  # (n_pairs,)
    blank_ms: np.ndarray  # (n_pairs,) where the residual artefact ends

    @classmethod
    def of(
        cls,
        raw_uv: np.ndarray,
        start_ms: float,
        fs_hz: float,
        positions_mm: np.ndarray,
        band_hz=BAND_HZ,
        k: float = THRESHOLD_K,
    ) -> "SweepView":
        """The view of the raw sweeps ``raw_uv`` (n, S, n_pairs; NaN where nothing arrived, read as 0), sample 0 at
        ``start_ms`` after the pulse onset, at ``fs_hz``; ``band_hz`` and ``k`` as for the offline analysis."""
        t = start_ms + np.arange(raw_uv.shape[1]) / fs_hz * 1e3
        clean, sigma, blank_ms, _ = auto_clean(np.nan_to_num(raw_uv), t, fs_hz, band_hz)
        arrivals = arrival_times(
            clean, t, k=k, search_ms=(np.broadcast_to(blank_ms, clean[:, 0].shape), None), sigma=sigma
        )
        # a pair blanked past the next pair's typical arrival may hide its first spike under the blank: not used
        seen = np.isfinite(arrivals).any(axis=0)
        typical = np.full(arrivals.shape[1], np.inf)
        typical[seen] = np.nanmedian(arrivals[:, seen], axis=0)
        hidden = np.r_[blank_ms[:-1] >= typical[1:], False]
        arrivals = np.where(hidden[None, :], np.nan, arrivals)
        velocity = fit_velocities(positions_mm, arrivals)
        finite = velocity[np.isfinite(velocity)]
        return cls(
            t, clean, arrivals, float(np.median(finite)) if finite.size else float("nan"), positions_mm, blank_ms
        )
