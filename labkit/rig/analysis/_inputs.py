"""Argument checks of the analysis functions: arrays of samples, stimulus-locked epochs and their times.

Each raises labkit.rig._checks.bad_value (a ValueError naming the function, the argument and what it allows).
"""

import numpy as np

from labkit.rig._checks import bad_value, is_real

__all__ = ["positive_number", "samples_2d", "epochs_3d", "epoch_times"]


def positive_number(func: str, name: str, value) -> float:
    if not (is_real(value) and np.isfinite(value) and value > 0):
        raise bad_value(func, name, value, "a finite number > 0")
    return float(value)


def samples_2d(func: str, samples, n_pairs: int | None = None) -> np.ndarray:
    x = np.asarray(samples, dtype=float)
    if x.ndim != 2 or len(x) == 0 or (n_pairs is not None and x.shape[1] != n_pairs):
        want = f"(n, {n_pairs})" if n_pairs is not None else "(n, n_pairs)"
        raise bad_value(func, "samples", f"array of shape {x.shape}", f"a non-empty 2-D array of shape {want}")
    if not np.all(np.isfinite(x)):
        raise bad_value(func, "samples", "an array with NaN or inf", "finite values")
    return x


def epochs_3d(func: str, e) -> np.ndarray:
    e = np.asarray(e, dtype=float)
    if e.ndim != 3 or 0 in e.shape:
        raise bad_value(func, "epochs", f"array of shape {e.shape}", "a non-empty (n_trials, n_window, n_pairs) array")
    return e


def epoch_times(func: str, times_ms, e: np.ndarray) -> np.ndarray:
    """``times_ms`` as floats, one per sample of the epochs ``e``'s window."""
    t = np.asarray(times_ms, dtype=float)
    if t.shape != (e.shape[1],):
        raise bad_value(func, "times_ms", f"array of shape {t.shape}", f"shape ({e.shape[1]},)")
    return t
