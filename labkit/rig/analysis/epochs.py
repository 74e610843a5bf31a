"""Stimulus-locked epochs and the band-pass: the windows and the filter every other step of the analysis works on.

Every function of labkit.rig.analysis works on plain arrays (µV, seconds or ms as named), so it analyses any
recording, simulated or not. Stimulus-locked *epochs* have shape (n_trials, n_window, n_pairs); pairs are ordered by
position along the worm.

Epochs
    Window [t_k + w₀, t_k + w₁) around each stimulus time t_k, starting at sample round((t_k + w₀) f_s): the stimulus
    falls within half a sample of the same place in every epoch.

Band-pass
    Butterworth (order 4) as second-order sections, run forward and backward (``scipy.signal.sosfiltfilt``): zero
    phase, so filtering shifts no arrival time.
"""

import numpy as np
from scipy import signal

from labkit.rig._checks import bad_value
from labkit.rig.analysis._inputs import positive_number, samples_2d

__all__ = ["WINDOW_MS", "RESPONSE_MS", "BAND_HZ", "bandpass", "epochs", "subsample_offsets"]

WINDOW_MS = (-5.0, 20.0)  # default epoch window around each stimulus, ms
RESPONSE_MS = (0.0, 15.0)  # default window after the stimulus in which responses are measured, ms
BAND_HZ = (200.0, 5000.0)  # default band-pass for spikes, Hz


def bandpass(x, fs: float, band_hz=BAND_HZ, order: int = 4, axis: int = 0) -> np.ndarray:
    """Zero-phase Butterworth band-pass of ``x`` along ``axis`` (sosfiltfilt)."""
    fs = positive_number("bandpass", "fs", fs)
    lo, hi = band_hz
    if not 0 < lo < hi < fs / 2:
        raise bad_value("bandpass", "band_hz", band_hz, f"(low, high) with 0 < low < high < fs / 2 = {fs / 2:g} Hz")
    sos = signal.butter(order, [lo, hi], btype="bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, np.asarray(x, dtype=float), axis=axis)


def epochs(samples, fs: float, stim_times_s, window_ms=WINDOW_MS) -> tuple[np.ndarray, np.ndarray]:
    """Stimulus-locked windows of ``samples`` (n, n_pairs): (epochs (n_trials, n_window, n_pairs), times in ms).

    ``stim_times_s`` are relative to row 0 of ``samples`` (t = row / fs). Every window must lie inside the samples.
    """
    x = samples_2d("epochs", samples)
    fs = positive_number("epochs", "fs", fs)
    t = np.asarray(stim_times_s, dtype=float).ravel()
    w0, w1 = window_ms
    if not w1 > w0:
        raise bad_value("epochs", "window_ms", window_ms, "(start, stop) in ms with stop > start")
    if len(t) == 0 or not np.all(np.isfinite(t)):
        raise bad_value("epochs", "stim_times_s", stim_times_s, "a non-empty list of finite times in s")
    first = np.rint((t + w0 / 1e3) * fs).astype(int)
    n_win = int(round((w1 - w0) / 1e3 * fs))
    outside = (first < 0) | (first + n_win > len(x))
    if outside.any():
        raise bad_value(
            "epochs",
            "stim_times_s",
            t[outside].tolist(),
            f"times whose window {tuple(window_ms)} ms lies inside the {len(x) / fs:g} s of samples",
        )
    e = x[first[:, None] + np.arange(n_win)[None, :]]
    return e, w0 + np.arange(n_win) / fs * 1e3


def subsample_offsets(stim_times_s, fs: float, window_ms=WINDOW_MS) -> np.ndarray:
    """Where each stimulus falls after t = 0 of its epoch from :func:`epochs` (same arguments), in samples, within
    [-0.5, 0.5]: epochs start on whole samples, stimuli need not."""
    fs = positive_number("subsample_offsets", "fs", fs)
    exact = (np.asarray(stim_times_s, dtype=float).ravel() + window_ms[0] / 1e3) * fs
    return exact - np.rint(exact)
