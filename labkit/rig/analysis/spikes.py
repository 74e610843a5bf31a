"""Spikes: the robust noise level, threshold crossings, the sub-sample arrival time of the first spike after each
stimulus, and the count of distinct spikes per trial.

Spike detection
    |x| > k σ̂ with the robust noise estimate σ̂ = median(|x|) / 0.6745 (Quiroga, Nadasdy & Ben-Shaul 2004, Neural
    Comput 16:1661); k = 5 by default. Crossings closer than ``dead_ms`` to the previous crossing belong to the same
    spike.

Arrival time (sub-sample)
    The first threshold crossing after the stimulus, then the extreme of that first lobe (same sign, up to the next
    sign change or ``peak_ms``), refined by the vertex of the parabola through the extreme sample and its neighbours,

        δ = (y₋ − y₊) / (2 (y₋ − 2 y₀ + y₊)),     t = (i₀ + δ) / f_s.

    A differential pair records the same waveform at every position, only later, so this feature has the same
    offset from the pair-centre arrival on every pair and drops out of the velocity.
"""

import numpy as np

from labkit.rig._checks import bad_value
from labkit.rig.analysis._inputs import epoch_times, epochs_3d, positive_number, samples_2d
from labkit.rig.analysis.epochs import RESPONSE_MS

__all__ = ["THRESHOLD_K", "DEAD_MS", "noise_sigma", "pair_noise", "detect_spikes", "arrival_times", "count_spikes"]

THRESHOLD_K = 5.0  # spike threshold, in robust noise levels σ̂
DEAD_MS = 1.0  # crossings closer than this to the previous one belong to the same spike
_MAD_TO_SIGMA = 1 / 0.6745


def noise_sigma(x, axis: int = 0) -> np.ndarray:
    """Robust noise level median(|x|) / 0.6745 along ``axis``."""
    return np.median(np.abs(np.asarray(x, dtype=float)), axis=axis) * _MAD_TO_SIGMA


def pair_noise(epochs_uv) -> np.ndarray:
    """:func:`noise_sigma` per pair of (n_trials, n_window, n_pairs) epochs, over all their trials and samples."""
    e = np.asarray(epochs_uv, dtype=float)
    return noise_sigma(e.transpose(2, 0, 1).reshape(e.shape[2], -1), axis=1)


def detect_spikes(x, fs: float, k: float = THRESHOLD_K, dead_ms: float = DEAD_MS) -> list[np.ndarray]:
    """Spike times (s) per column of ``x`` (n, n_pairs), already band-passed: onsets of |x| > k σ̂ (MAD) that come
    more than ``dead_ms`` after the previous crossing."""
    x = samples_2d("detect_spikes", x)
    fs = positive_number("detect_spikes", "fs", fs)
    k = positive_number("detect_spikes", "k", k)
    over = np.abs(x) > k * noise_sigma(x)[None, :]
    onset = over & ~np.vstack([np.zeros((1, x.shape[1]), bool), over[:-1]])
    pair, idx = np.nonzero(onset.T)  # sorted by pair, then time
    keep = (np.diff(pair, prepend=-1) != 0) | (np.diff(idx, prepend=-1) > dead_ms / 1e3 * fs)
    return [idx[keep & (pair == c)] / fs for c in range(x.shape[1])]


def arrival_times(
    epochs_uv, times_ms, k: float = THRESHOLD_K, search_ms=(0.0, None), peak_ms: float = 0.6, sigma=None
) -> np.ndarray:
    """Arrival time (ms after the stimulus) of the first spike per trial and pair, NaN where none (module docstring).

    ``epochs_uv`` must be artefact-free and band-passed. ``search_ms`` = (start, stop); start may be one value per
    trial and pair (e.g. after a first spike, to find the next; NaN: none). ``sigma`` is the noise level, (n_pairs,),
    (n_trials, n_pairs) or, where it changes within the epoch, (n_trials, n_window, n_pairs); default: the MAD
    estimate over the pre-stimulus part of all epochs (the whole epochs when there is none).
    """
    e = epochs_3d("arrival_times", epochs_uv)
    t = epoch_times("arrival_times", times_ms, e)
    dt = t[1] - t[0]
    if sigma is None:
        base = e[:, t < 0] if np.any(t < 0) else e
        sigma = pair_noise(base)
    sigma = np.asarray(sigma, dtype=float)
    thr = positive_number("arrival_times", "k", k) * np.broadcast_to(
        sigma if sigma.ndim == 3 else np.expand_dims(sigma, -2), e.shape
    )
    lo = np.broadcast_to(np.asarray(search_ms[0], dtype=float), e[:, 0].shape)  # NaN: no search
    hi = t[-1] if search_ms[1] is None else search_ms[1]
    over = (np.abs(e) > thr) & (t[None, :, None] >= lo[:, None, :]) & (t <= hi)[None, :, None]
    found = over.any(axis=1)  # (n_trials, n_pairs)
    first = over.argmax(axis=1)
    m = max(3, int(round(peak_ms / dt)))
    idx = np.minimum(first[:, None, :] + np.arange(m)[None, :, None], e.shape[1] - 1)  # (trials, m, pairs)
    seg = np.take_along_axis(e, idx, axis=1)
    sign = np.sign(seg[:, :1])
    lobe = np.cumprod(sign * seg > 0, axis=1).astype(bool)  # up to the first sign change
    peak = np.argmax(np.where(lobe, sign * seg, -np.inf), axis=1)  # (trials, pairs)
    i0 = np.clip(np.take_along_axis(idx, peak[:, None], axis=1)[:, 0], 1, e.shape[1] - 2)
    trial = np.arange(e.shape[0])[:, None]
    pair = np.arange(e.shape[2])[None, :]
    ym, y0, yp = e[trial, i0 - 1, pair], e[trial, i0, pair], e[trial, i0 + 1, pair]
    curv = ym - 2 * y0 + yp
    delta = np.where(np.abs(curv) > 0, 0.5 * (ym - yp) / np.where(curv == 0, 1, curv), 0.0)
    return np.where(found, t[0] + (i0 + np.clip(delta, -0.5, 0.5)) * dt, np.nan)


def count_spikes(
    trace_uv, times_ms, sigma, k: float = THRESHOLD_K, dead_ms: float = DEAD_MS, window_ms=RESPONSE_MS
) -> np.ndarray:
    """Distinct spikes per trial in (n_trials, n_window) band-passed traces: onsets of |x| > k σ inside
    ``window_ms`` more than ``dead_ms`` apart (counted from the previous onset); σ a number, one per trial or one per
    trial and sample (n_trials, n_window)."""
    y = np.asarray(trace_uv, dtype=float)
    t = np.asarray(times_ms, dtype=float)
    if y.ndim != 2 or t.shape != (y.shape[1],):
        raise bad_value("count_spikes", "trace_uv", f"array of shape {y.shape}", f"(n_trials, {len(t)})")
    sigma = np.asarray(sigma, dtype=float)
    thr = k * np.broadcast_to(sigma if sigma.ndim == 2 else sigma.reshape(-1, 1), y.shape)
    over = (np.abs(y) > thr) & ((t >= window_ms[0]) & (t < window_ms[1]))[None]
    onset = over & ~np.concatenate([np.zeros((len(y), 1), bool), over[:, :-1]], axis=1)
    trial, col = np.nonzero(onset)
    new_trial = np.diff(trial, prepend=-1) != 0
    far = np.diff(t[col], prepend=-np.inf) > dead_ms
    return np.bincount(trial[new_trial | far], minlength=len(y))
