"""Analysis of rig recordings: stimulus artefact, filtering, spikes, arrival times, conduction velocity, dose–response
and strength–duration.

Every function works on plain arrays (µV, seconds or ms as named), so it analyses any recording, simulated or not.
Stimulus-locked *epochs* have shape (n_trials, n_window, n_pairs); pairs are ordered by position along the worm.

Epochs
    Window [t_k + w₀, t_k + w₁) around each stimulus time t_k, starting at sample round((t_k + w₀) f_s): the stimulus
    falls within half a sample of the same place in every epoch.

Stimulus artefact (rig notes: "blank or subtract it (template from sub-threshold trials); favour the far pairs")
    The artefact grows linearly with the stimulus voltage V (notes), so a template per volt is the mean of e / V over
    trials that evoked no spike; subtracting V·template from a trial removes it, spikes and all later responses
    untouched. Blanking instead replaces [0, blank_ms) after the stimulus by the straight line joining its ends
    (nothing recorded there survives: use it when the artefact is brief).

Band-pass
    Butterworth (order 4) as second-order sections, run forward and backward (``scipy.signal.sosfiltfilt``): zero
    phase, so filtering shifts no arrival time.

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

Conduction velocity and fibre identity
    Per trial, the least-squares slope of arrival time against pair position, t = a + x / v (mm/ms = m/s); the
    recording's velocity is the median over trials (robust to a trial with a missed or spurious spike). The first
    spike on every pair is the fastest fibre's when fibres fire together (the MGF: lowest threshold, fires first and
    conducts fastest). Identity by speed (notes): MGF 20–30 m/s, LGF 10–15 m/s; the boundary is ours, 17.5 m/s.

Dose–response
    Response amplitude = peak-to-peak of the artefact-free, band-passed epoch in a window after the stimulus, per pair;
    monotonic increase with voltage tested by Spearman's ρ. Recruitment steps (none → MGF → MGF + LGF, notes) are
    counted as distinct spikes on the farthest pair, where the fibres' arrivals are furthest apart.

Strength–duration (Weiss 1901; Lapicque 1907)
    V_th = Rb (1 + c / d) is linear in 1/d: V_th = Rb + (Rb c) / d, so least squares on (1, 1/d) gives the rheobase
    Rb and the chronaxie c = slope / Rb.
"""

import numbers

import numpy as np
from scipy import signal, stats

__all__ = ["MGF_LGF_BOUNDARY_M_S", "bandpass", "epochs", "artefact_template", "subtract_artefact", "blank",
           "noise_sigma", "detect_spikes", "arrival_times", "fit_velocities", "conduction_velocity",
           "fibre_identity", "response_amplitude", "count_spikes", "dose_response", "fit_strength_duration"]

MGF_LGF_BOUNDARY_M_S = 17.5     # ours: between the LGF's 10–15 and the MGF's 20–30 m/s (rig notes)
_MAD_TO_SIGMA = 1 / 0.6745


def _bad(func: str, name: str, value, allowed: str) -> ValueError:
    return ValueError(f"{func}: bad value for {name!r}: {value!r}; allowed: {allowed}")


def _positive(func: str, name: str, value) -> float:
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value) and value > 0):
        raise _bad(func, name, value, "a finite number > 0")
    return float(value)


def _samples(func: str, samples, n_pairs: int | None = None) -> np.ndarray:
    x = np.asarray(samples, dtype=float)
    if x.ndim != 2 or len(x) == 0 or (n_pairs is not None and x.shape[1] != n_pairs):
        want = f"(n, {n_pairs})" if n_pairs is not None else "(n, n_pairs)"
        raise _bad(func, "samples", f"array of shape {x.shape}", f"a non-empty 2-D array of shape {want}")
    if not np.all(np.isfinite(x)):
        raise _bad(func, "samples", "an array with NaN or inf", "finite values")
    return x


def _epochs_array(func: str, e) -> np.ndarray:
    e = np.asarray(e, dtype=float)
    if e.ndim != 3 or 0 in e.shape:
        raise _bad(func, "epochs", f"array of shape {e.shape}", "a non-empty (n_trials, n_window, n_pairs) array")
    return e


def bandpass(x, fs: float, band_hz=(200.0, 5000.0), order: int = 4, axis: int = 0) -> np.ndarray:
    """Zero-phase Butterworth band-pass of ``x`` along ``axis`` (sosfiltfilt)."""
    fs = _positive("bandpass", "fs", fs)
    lo, hi = band_hz
    if not 0 < lo < hi < fs / 2:
        raise _bad("bandpass", "band_hz", band_hz, f"(low, high) with 0 < low < high < fs / 2 = {fs / 2:g} Hz")
    sos = signal.butter(order, [lo, hi], btype="bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, np.asarray(x, dtype=float), axis=axis)


def epochs(samples, fs: float, stim_times_s, window_ms=(-5.0, 20.0)) -> tuple[np.ndarray, np.ndarray]:
    """Stimulus-locked windows of ``samples`` (n, n_pairs): (epochs (n_trials, n_window, n_pairs), times in ms).

    ``stim_times_s`` are relative to row 0 of ``samples`` (t = row / fs). Every window must lie inside the samples.
    """
    x = _samples("epochs", samples)
    fs = _positive("epochs", "fs", fs)
    t = np.asarray(stim_times_s, dtype=float).ravel()
    w0, w1 = window_ms
    if not w1 > w0:
        raise _bad("epochs", "window_ms", window_ms, "(start, stop) in ms with stop > start")
    if len(t) == 0 or not np.all(np.isfinite(t)):
        raise _bad("epochs", "stim_times_s", stim_times_s, "a non-empty list of finite times in s")
    first = np.rint((t + w0 / 1e3) * fs).astype(int)
    n_win = int(round((w1 - w0) / 1e3 * fs))
    outside = (first < 0) | (first + n_win > len(x))
    if outside.any():
        raise _bad("epochs", "stim_times_s", t[outside].tolist(),
                   f"times whose window {tuple(window_ms)} ms lies inside the {len(x) / fs:g} s of samples")
    e = x[first[:, None] + np.arange(n_win)[None, :]]
    return e, w0 + np.arange(n_win) / fs * 1e3


def artefact_template(epochs_uv, vpp, quiet, times_ms=None, duration_ms: float | None = None) -> np.ndarray:
    """The artefact per volt, (n_window, n_pairs): the mean of epoch / V over the ``quiet`` (spike-free) trials.

    With ``times_ms`` and ``duration_ms`` (the stimulus duration) the template is zero outside [0, duration_ms):
    the artefact lasts while the stimulus current flows, and elsewhere the template would only add its own noise.
    """
    e = _epochs_array("artefact_template", epochs_uv)
    v = np.asarray(vpp, dtype=float).ravel()
    q = np.asarray(quiet, dtype=bool).ravel()
    if v.shape != (len(e),) or not np.all(v > 0):
        raise _bad("artefact_template", "vpp", vpp, f"{len(e)} stimulus voltages > 0, one per trial")
    if q.shape != (len(e),) or not q.any():
        raise _bad("artefact_template", "quiet", quiet, f"{len(e)} booleans, one per trial, at least one True")
    template = (e[q] / v[q, None, None]).mean(axis=0)
    if duration_ms is not None:
        t = np.asarray(times_ms, dtype=float)
        if t.shape != (e.shape[1],) or not duration_ms > 0:
            raise _bad("artefact_template", "duration_ms", duration_ms,
                       f"a duration > 0 ms together with times_ms of shape ({e.shape[1]},)")
        template[(t < 0) | (t >= duration_ms)] = 0.0
    return template


def subtract_artefact(epochs_uv, template, vpp) -> np.ndarray:
    """``epochs_uv`` minus V × ``template`` per trial (template from :func:`artefact_template`)."""
    e = _epochs_array("subtract_artefact", epochs_uv)
    v = np.asarray(vpp, dtype=float).ravel()
    tpl = np.asarray(template, dtype=float)
    if tpl.shape != e.shape[1:]:
        raise _bad("subtract_artefact", "template", f"array of shape {tpl.shape}", f"shape {e.shape[1:]}")
    if v.shape != (len(e),):
        raise _bad("subtract_artefact", "vpp", vpp, f"{len(e)} stimulus voltages, one per trial")
    return e - v[:, None, None] * tpl[None]


def blank(epochs_uv, times_ms, blank_ms: float) -> np.ndarray:
    """Replace [0, blank_ms) after the stimulus by the straight line joining the samples on either side."""
    e = _epochs_array("blank", epochs_uv).copy()
    t = np.asarray(times_ms, dtype=float)
    if t.shape != (e.shape[1],):
        raise _bad("blank", "times_ms", f"array of shape {t.shape}", f"shape ({e.shape[1]},)")
    inside = np.flatnonzero((t >= 0) & (t < blank_ms))
    if len(inside) == 0:
        return e
    a, b = inside[0] - 1, inside[-1] + 1
    if a < 0 or b >= len(t):
        raise _bad("blank", "blank_ms", blank_ms, "a blank with at least one sample on either side in the window")
    frac = ((t[inside] - t[a]) / (t[b] - t[a]))[None, :, None]
    e[:, inside] = e[:, a:a + 1] + frac * (e[:, b:b + 1] - e[:, a:a + 1])
    return e


def noise_sigma(x, axis: int = 0) -> np.ndarray:
    """Robust noise level median(|x|) / 0.6745 along ``axis``."""
    return np.median(np.abs(np.asarray(x, dtype=float)), axis=axis) * _MAD_TO_SIGMA


def detect_spikes(x, fs: float, k: float = 5.0, dead_ms: float = 1.0) -> list[np.ndarray]:
    """Spike times (s) per column of ``x`` (n, n_pairs), already band-passed: onsets of |x| > k σ̂ (MAD) that come
    more than ``dead_ms`` after the previous crossing."""
    x = _samples("detect_spikes", x)
    fs = _positive("detect_spikes", "fs", fs)
    k = _positive("detect_spikes", "k", k)
    over = np.abs(x) > k * noise_sigma(x)[None, :]
    onset = over & ~np.vstack([np.zeros((1, x.shape[1]), bool), over[:-1]])
    pair, idx = np.nonzero(onset.T)                        # sorted by pair, then time
    keep = (np.diff(pair, prepend=-1) != 0) | (np.diff(idx, prepend=-1) > dead_ms / 1e3 * fs)
    return [idx[keep & (pair == c)] / fs for c in range(x.shape[1])]


def arrival_times(epochs_uv, times_ms, k: float = 5.0, search_ms=(0.0, None), peak_ms: float = 0.6,
                  sigma=None) -> np.ndarray:
    """Arrival time (ms after the stimulus) of the first spike per trial and pair, NaN where none (module docstring).

    ``epochs_uv`` must be artefact-free and band-passed. ``search_ms`` = (start, stop); start may be one value per
    trial and pair (e.g. after a first spike, to find the next; NaN: none). ``sigma`` (n_pairs,) or (n_trials, n_pairs) is the noise
    level; default: the MAD estimate over the pre-stimulus part of all epochs (the whole epochs when there is none).
    """
    e = _epochs_array("arrival_times", epochs_uv)
    t = np.asarray(times_ms, dtype=float)
    if t.shape != (e.shape[1],):
        raise _bad("arrival_times", "times_ms", f"array of shape {t.shape}", f"shape ({e.shape[1]},)")
    dt = t[1] - t[0]
    if sigma is None:
        base = e[:, t < 0] if np.any(t < 0) else e
        sigma = noise_sigma(base.transpose(2, 0, 1).reshape(e.shape[2], -1), axis=1)
    thr = _positive("arrival_times", "k", k) * np.broadcast_to(np.asarray(sigma, dtype=float), e[:, 0].shape)
    lo = np.broadcast_to(np.asarray(search_ms[0], dtype=float), e[:, 0].shape)      # NaN: no search
    hi = t[-1] if search_ms[1] is None else search_ms[1]
    over = (np.abs(e) > thr[:, None, :]) & (t[None, :, None] >= lo[:, None, :]) & (t <= hi)[None, :, None]
    found = over.any(axis=1)                                            # (n_trials, n_pairs)
    first = over.argmax(axis=1)
    m = max(3, int(round(peak_ms / dt)))
    idx = np.minimum(first[:, None, :] + np.arange(m)[None, :, None], e.shape[1] - 1)   # (trials, m, pairs)
    seg = np.take_along_axis(e, idx, axis=1)
    sign = np.sign(seg[:, :1])
    lobe = np.cumprod(sign * seg > 0, axis=1).astype(bool)              # up to the first sign change
    peak = np.argmax(np.where(lobe, sign * seg, -np.inf), axis=1)       # (trials, pairs)
    i0 = np.clip(np.take_along_axis(idx, peak[:, None], axis=1)[:, 0], 1, e.shape[1] - 2)
    trial = np.arange(e.shape[0])[:, None]
    pair = np.arange(e.shape[2])[None, :]
    ym, y0, yp = e[trial, i0 - 1, pair], e[trial, i0, pair], e[trial, i0 + 1, pair]
    curv = ym - 2 * y0 + yp
    delta = np.where(np.abs(curv) > 0, 0.5 * (ym - yp) / np.where(curv == 0, 1, curv), 0.0)
    return np.where(found, t[0] + (i0 + np.clip(delta, -0.5, 0.5)) * dt, np.nan)


def fit_velocities(positions_mm, arrivals_ms, min_pairs: int = 3) -> np.ndarray:
    """Per-trial velocity (m/s) from the least-squares slope of arrival time on position; NaN where fewer than
    ``min_pairs`` arrivals or the slope is not positive."""
    x = np.asarray(positions_mm, dtype=float).ravel()
    a = np.atleast_2d(np.asarray(arrivals_ms, dtype=float))
    if a.shape[1] != len(x) or len(x) < 2:
        raise _bad("fit_velocities", "arrivals_ms", f"array of shape {a.shape}", f"(n_trials, {len(x)}), >= 2 pairs")
    w = np.isfinite(a)
    n = w.sum(axis=1)
    xs = np.where(w, x[None], 0.0)
    ts = np.where(w, a, 0.0)
    xm, tm = xs.sum(1) / np.maximum(n, 1), ts.sum(1) / np.maximum(n, 1)
    sxx = (w * (x[None] - xm[:, None]) ** 2).sum(1)
    sxt = (w * (x[None] - xm[:, None]) * (ts - tm[:, None])).sum(1)
    slope = np.where(sxx > 0, sxt / np.where(sxx > 0, sxx, 1), np.nan)
    ok = (n >= min_pairs) & (slope > 0)
    return np.where(ok, 1.0 / np.where(ok, slope, 1.0), np.nan)


def conduction_velocity(samples, fs, electrode_positions_mm, stim_times_s, *, artefact=None, blank_ms: float = 0.0,
                        window_ms=(-5.0, 20.0), band_hz=(200.0, 5000.0), k: float = 5.0) -> float:
    """Conduction velocity (m/s) of the first spike evoked by each stimulus (median over trials).

    ``samples`` (n, 4) in µV, one column per pair ordered by ``electrode_positions_mm`` (increasing);
    ``stim_times_s`` relative to row 0. The stimulus artefact is removed by subtracting ``artefact`` (µV, shape
    (n_window, n_pairs) or (n_trials, n_window, n_pairs), e.g. V × :func:`artefact_template`) and/or by blanking the
    first ``blank_ms`` after each stimulus; arrival times are searched after the blank.
    """
    pos = np.asarray(electrode_positions_mm, dtype=float).ravel()
    if len(pos) < 2 or not np.all(np.diff(pos) > 0):
        raise _bad("conduction_velocity", "electrode_positions_mm", electrode_positions_mm,
                   "at least 2 strictly increasing positions in mm, one per column of samples")
    x = _samples("conduction_velocity", samples, len(pos))
    if not (isinstance(blank_ms, numbers.Real) and blank_ms >= 0):
        raise _bad("conduction_velocity", "blank_ms", blank_ms, "a number of ms >= 0")
    e, t = epochs(x, fs, stim_times_s, window_ms)
    if artefact is not None:
        art = np.asarray(artefact, dtype=float)
        if art.shape not in (e.shape, e.shape[1:]):
            raise _bad("conduction_velocity", "artefact", f"array of shape {art.shape}",
                       f"shape {e.shape[1:]} or {e.shape} (the epochs of window_ms={tuple(window_ms)})")
        e = e - art
    if blank_ms > 0:
        e = blank(e, t, blank_ms)
    f = bandpass(e, fs, band_hz, axis=1)
    v = fit_velocities(pos, arrival_times(f, t, k=k, search_ms=(blank_ms, None)))
    if not np.any(np.isfinite(v)):
        raise ValueError("conduction_velocity: no trial had a spike on at least 3 pairs; check the stimulus times, "
                         "the artefact removal (artefact=, blank_ms=) and the threshold k")
    return float(np.nanmedian(v))


def fibre_identity(velocity_m_s) -> np.ndarray:
    """'MGF' where the velocity is >= MGF_LGF_BOUNDARY_M_S, 'LGF' below it, '' where NaN."""
    v = np.asarray(velocity_m_s, dtype=float)
    return np.where(np.isnan(v), "", np.where(v >= MGF_LGF_BOUNDARY_M_S, "MGF", "LGF"))


def response_amplitude(epochs_uv, times_ms, window_ms=(0.0, 15.0)) -> np.ndarray:
    """Peak-to-peak (µV) of each artefact-free, band-passed epoch inside ``window_ms``: (n_trials, n_pairs)."""
    e = _epochs_array("response_amplitude", epochs_uv)
    t = np.asarray(times_ms, dtype=float)
    inside = (t >= window_ms[0]) & (t < window_ms[1])
    if t.shape != (e.shape[1],) or not inside.any():
        raise _bad("response_amplitude", "window_ms", window_ms, "a window that holds samples of the epochs")
    seg = e[:, inside]
    return seg.max(axis=1) - seg.min(axis=1)


def count_spikes(trace_uv, times_ms, sigma, k: float = 5.0, dead_ms: float = 1.0,
                 window_ms=(0.0, 15.0)) -> np.ndarray:
    """Distinct spikes per trial in (n_trials, n_window) band-passed traces: onsets of |x| > k σ inside
    ``window_ms`` more than ``dead_ms`` apart (counted from the previous onset); σ a number or one per trial."""
    y = np.asarray(trace_uv, dtype=float)
    t = np.asarray(times_ms, dtype=float)
    if y.ndim != 2 or t.shape != (y.shape[1],):
        raise _bad("count_spikes", "trace_uv", f"array of shape {y.shape}", f"(n_trials, {len(t)})")
    thr = k * np.broadcast_to(np.asarray(sigma, dtype=float), (len(y),))[:, None]
    over = (np.abs(y) > thr) & ((t >= window_ms[0]) & (t < window_ms[1]))[None]
    onset = over & ~np.concatenate([np.zeros((len(y), 1), bool), over[:, :-1]], axis=1)
    trial, col = np.nonzero(onset)
    new_trial = np.diff(trial, prepend=-1) != 0
    far = np.diff(t[col], prepend=-np.inf) > dead_ms
    return np.bincount(trial[new_trial | far], minlength=len(y))


def dose_response(vpp, amplitude_uv) -> dict:
    """Spearman's ρ (and p) of response amplitude on stimulus voltage, plus the mean amplitude per voltage."""
    v = np.asarray(vpp, dtype=float).ravel()
    a = np.asarray(amplitude_uv, dtype=float).ravel()
    if v.shape != a.shape or len(v) < 3:
        raise _bad("dose_response", "amplitude_uv", f"{len(a)} values", f"{len(v)} values (>= 3), one per voltage")
    rho, p = stats.spearmanr(v, a)
    levels = np.unique(v)
    return {"rho": float(rho), "p": float(p), "vpp": levels,
            "mean_uv": np.array([a[v == lv].mean() for lv in levels])}


def fit_strength_duration(durations_ms, thresholds_v) -> tuple[float, float]:
    """Weiss–Lapicque fit V_th = Rb (1 + c / d): (rheobase_v, chronaxie_ms) by least squares on 1/d."""
    d = np.asarray(durations_ms, dtype=float).ravel()
    v = np.asarray(thresholds_v, dtype=float).ravel()
    if len(d) < 2 or d.shape != v.shape or not (np.all(d > 0) and np.all(np.isfinite(d))):
        raise _bad("fit_strength_duration", "durations_ms", durations_ms,
                   "at least 2 finite durations > 0 (ms), one per threshold")
    if not (np.all(v > 0) and np.all(np.isfinite(v))):
        raise _bad("fit_strength_duration", "thresholds_v", thresholds_v, "finite thresholds > 0 (V)")
    if np.ptp(1 / d) == 0:
        raise _bad("fit_strength_duration", "durations_ms", durations_ms, "at least 2 different durations")
    (rb, slope), *_ = np.linalg.lstsq(np.stack([np.ones_like(d), 1 / d], axis=1), v, rcond=None)
    if not rb > 0:
        raise ValueError(f"fit_strength_duration: the fitted rheobase {rb:.3g} V is not positive; the thresholds do "
                         "not fall with duration as V_th = Rb (1 + c / d)")
    return float(rb), float(slope / rb)
