"""Responses to stimulus strength: the compound response amplitude, its dose–response test, and the
strength–duration fit of thresholds.

Dose–response
    Response amplitude = peak-to-peak of the artefact-free, band-passed epoch in a window after the stimulus, per pair;
    monotonic increase with voltage tested by Spearman's ρ. Recruitment steps (none → MGF → MGF + LGF, in threshold
    order) are counted as distinct spikes on the farthest pair, where the fibres' arrivals are furthest apart.

Strength–duration (Weiss 1901; Lapicque 1907)
    V_th = Rb (1 + c / d) is linear in 1/d: V_th = Rb + (Rb c) / d, so least squares on (1, 1/d) gives the rheobase
    Rb and the chronaxie c = slope / Rb.
"""

import numpy as np
from scipy import stats

from labkit.rig._checks import bad_value
from labkit.rig.analysis._inputs import epochs_3d
from labkit.rig.analysis.epochs import RESPONSE_MS

__all__ = ["response_amplitude", "dose_response", "fit_strength_duration"]


def response_amplitude(epochs_uv, times_ms, window_ms=RESPONSE_MS) -> np.ndarray:
    """Peak-to-peak (µV) of each artefact-free, band-passed epoch inside ``window_ms``: (n_trials, n_pairs)."""
    e = epochs_3d("response_amplitude", epochs_uv)
    t = np.asarray(times_ms, dtype=float)
    inside = (t >= window_ms[0]) & (t < window_ms[1])
    if t.shape != (e.shape[1],) or not inside.any():
        raise bad_value("response_amplitude", "window_ms", window_ms, "a window that holds samples of the epochs")
    seg = e[:, inside]
    return seg.max(axis=1) - seg.min(axis=1)


def dose_response(vpp, amplitude_uv) -> dict:
    """Spearman's ρ (and p) of response amplitude on stimulus voltage, plus the mean amplitude per voltage."""
    v = np.asarray(vpp, dtype=float).ravel()
    a = np.asarray(amplitude_uv, dtype=float).ravel()
    if v.shape != a.shape or len(v) < 3:
        raise bad_value("dose_response", "amplitude_uv", f"{len(a)} values", f"{len(v)} values (>= 3), one per voltage")
    rho, p = stats.spearmanr(v, a)
    levels = np.unique(v)
    return {"rho": float(rho), "p": float(p), "vpp": levels, "mean_uv": np.array([a[v == lv].mean() for lv in levels])}


def fit_strength_duration(durations_ms, thresholds_v) -> tuple[float, float]:
    """Weiss–Lapicque fit V_th = Rb (1 + c / d): (rheobase_v, chronaxie_ms) by least squares on 1/d."""
    d = np.asarray(durations_ms, dtype=float).ravel()
    v = np.asarray(thresholds_v, dtype=float).ravel()
    if len(d) < 2 or d.shape != v.shape or not (np.all(d > 0) and np.all(np.isfinite(d))):
        raise bad_value(
            "fit_strength_duration",
            "durations_ms",
            durations_ms,
            "at least 2 finite durations > 0 (ms), one per threshold",
        )
    if not (np.all(v > 0) and np.all(np.isfinite(v))):
        raise bad_value("fit_strength_duration", "thresholds_v", thresholds_v, "finite thresholds > 0 (V)")
    if np.ptp(1 / d) == 0:
        raise bad_value("fit_strength_duration", "durations_ms", durations_ms, "at least 2 different durations")
    (rb, slope), *_ = np.linalg.lstsq(np.stack([np.ones_like(d), 1 / d], axis=1), v, rcond=None)
    if not rb > 0:
        raise ValueError(
            f"fit_strength_duration: the fitted rheobase {rb:.3g} V is not positive; the thresholds do "
            "not fall with duration as V_th = Rb (1 + c / d)"
        )
    return float(rb), float(slope / rb)
