"""Analysis of rig recordings: stimulus artefact, filtering, spikes, arrival times, conduction velocity, dose–response
and strength–duration.

Every function works on plain arrays (µV, seconds or ms as named), so it analyses any recording, simulated or not.
Stimulus-locked *epochs* have shape (n_trials, n_window, n_pairs); pairs are ordered by position along the worm.

Epochs
    Window [t_k + w₀, t_k + w₁) around each stimulus time t_k, starting at sample round((t_k + w₀) f_s): the stimulus
    falls within half a sample of the same place in every epoch.

Stimulus artefact (blank it, or subtract a template from sub-threshold trials; the far pairs are cleaner)
    The artefact grows linearly with the stimulus voltage V (assumed here), so a template per volt is the mean of
    e / V over trials that evoked no spike; subtracting V·template from a trial removes it, spikes and all later
    responses untouched. Blanking instead replaces [0, blank_ms) after the stimulus by the straight line joining its
    ends (nothing recorded there survives: use it when the artefact is brief).

Automatic artefact removal (what :func:`conduction_velocity` does by default)
    Assumed here, and checked afterwards rather than trusted: in every trial i and on every pair p the artefact is
    one shape s(t), time-locked to the stimulus, times a scale a_ip (size and sign may vary between pairs and
    trials), while a spike reaches different pairs at different times (later at
    farther pairs). One stimulus waveform per call: trials with different periods have different shapes. All
    steps work on the band-passed epochs y_ip(t); the filter is linear and time-invariant, so the model keeps its
    form, y_ip(t) = a_ip s_f(t) + spikes + noise.

    1. Alignment. Epochs start on whole samples, so stimulus i falls φ_i ∈ [-½, ½] sample after the epoch's t = 0
       (:func:`subsample_offsets`, from ``stim_times_s``). Each epoch is advanced by φ_i with the Fourier shift
       theorem, Y(f) -> Y(f) exp(2πi f φ_i Δt) (exact for the band-limited band-passed signal), so the artefact
       is a_ip s_f(t) in every aligned epoch; the fitted artefact is delayed back by φ_i before it is subtracted.
    2. Rank-one fit that sets spikes aside. Per pair, ŝ_p(t) = Σ_i a_ip y_ip(t) / Σ_i a_ip², of precision
       w_p = Σ_i a_ip² / σ_p² (σ_p: MAD noise level more than 1 ms before the stimulus). At each t the pair that
       disagrees most with the precision-weighted mean ŝ_(-p) of the others,
       z_p = |ŝ_p - ŝ_(-p)| / √(1 / w_p + 1 / w_(-p)) > 5, is set aside there (a spike is where the pairs do not
       share the shape), repeatedly while more than two pairs remain; s(t) is the weighted mean of the rest.
       Then a_ip is the least-squares scale of y_ip on s over the samples not set aside. Three rounds, starting
       from the leading singular vector of the epochs after t = -0.5 ms. Related published methods: template
       subtraction (Hashimoto, Elder & Vitek 2002, J Neurosci Methods 113:181) and the multichannel PCA
       subtraction ERAASR (O'Shea & Shenoy 2018, J Neural Eng 15:026020); the leave-one-pair-out test is ours.
    3. Subtraction of a_ip s_f(t - φ_i Δt), only on the pairs where the fitted artefact is significant (median
       over trials of its peak in [-0.5, 0.3) ms at least 2 σ_p): a recording without an artefact is left as is.
    4. Automatic blank, per pair: whatever the subtraction leaves counts as artefact until the epoch-median
       envelope m_p(t) = median_i |r_ip(t)| of the residue falls into the noise band,
       m_p(t) <= max(2.5 σ_p, max of m_p over t < -1 ms), and stays there for 0.3 ms (first such t >= 0).
       Arrival times are searched only after it, on the residue; a trial crossing the spike threshold within
       those 0.3 ms (its residue outlasts the median's) gives no arrival on that pair.
    Where the assumptions fail (different artefact shapes on different pairs, spikes on more than two pairs at
    once while the artefact is large and the same in every trial) the residue is long, pairs lose their arrivals
    and the plausibility checks below refuse the result; pass ``artefact=`` (e.g. a template from sub-threshold
    trials) or ``blank_ms=`` instead.

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
    conducts fastest). Identity by speed (ranges and sources under Plausibility): MGF 20–30 m/s, LGF 10–15 m/s;
    the boundary is ours, 17.5 m/s.

Plausibility (:func:`velocity_diagnostics`)
    :func:`conduction_velocity` returns a number only if (a) it lies within ``PLAUSIBLE_VELOCITY_M_S`` = 2–50 m/s:
    the giant fibres conduct at 10–15 m/s (LGF; a literature range whose primary source is not recorded here) and
    20–30 m/s (MGF; mean 30.2 m/s in intact awake worms, Bähring & Bauer 2014), and the range leaves a factor 5
    below the LGF for cold, small or dissected preparations and ~1.65 above the MGF's mean; (b) the arrival times
    fit t = a + x / v: the median over trials of the rms misfit is at most ``MAX_FIT_RESIDUAL_MS`` = 0.05 ms (or
    one sample, if longer) — clean arrivals fit to a few µs, and 0.05 ms is a sixth of the 0.33 ms between pairs
    10 mm apart at 30 m/s;
    (c) the trials agree: robust CV 1.4826 MAD / median of the per-trial velocities at most
    ``MAX_TRIAL_SPREAD`` = 0.25 (with 3 trials or more), and no more than half of the fitted trials have a
    non-positive slope (a wave that does not travel away from the stimulus). These thresholds are ours. Otherwise
    it raises :class:`ImplausibleVelocityError` (a ValueError) whose message gives the diagnostics, or with
    ``on_implausible="warn"`` issues an :class:`ImplausibleVelocityWarning` and returns the number.

Dose–response
    Response amplitude = peak-to-peak of the artefact-free, band-passed epoch in a window after the stimulus, per pair;
    monotonic increase with voltage tested by Spearman's ρ. Recruitment steps (none → MGF → MGF + LGF, in threshold
    order) are counted as distinct spikes on the farthest pair, where the fibres' arrivals are furthest apart.

Strength–duration (Weiss 1901; Lapicque 1907)
    V_th = Rb (1 + c / d) is linear in 1/d: V_th = Rb + (Rb c) / d, so least squares on (1, 1/d) gives the rheobase
    Rb and the chronaxie c = slope / Rb.
"""

import numbers
import warnings

import numpy as np
from scipy import signal, stats

__all__ = ["MGF_LGF_BOUNDARY_M_S", "PLAUSIBLE_VELOCITY_M_S", "MAX_FIT_RESIDUAL_MS", "MAX_TRIAL_SPREAD",
           "ImplausibleVelocityError", "ImplausibleVelocityWarning", "bandpass", "epochs", "subsample_offsets",
           "artefact_template", "subtract_artefact", "blank", "auto_artefact", "auto_blank", "noise_sigma",
           "detect_spikes", "arrival_times", "fit_velocities", "velocity_diagnostics", "conduction_velocity",
           "fibre_identity", "response_amplitude", "count_spikes", "dose_response", "fit_strength_duration"]

MGF_LGF_BOUNDARY_M_S = 17.5     # ours: between the LGF's 10–15 and the MGF's 20–30 m/s (module docstring)
PLAUSIBLE_VELOCITY_M_S = (2.0, 50.0)   # ours, around the LGF's 10–15 and MGF's 20–30 m/s (module docstring)
MAX_FIT_RESIDUAL_MS = 0.05      # ours: median per-trial rms misfit of t = a + x / v (one sample if that is longer)
MAX_TRIAL_SPREAD = 0.25         # ours: robust CV (1.4826 MAD / median) of the per-trial velocities
_MAD_TO_SIGMA = 1 / 0.6745
_AUTO = "auto"
_BASELINE_MS = -1.0             # noise is measured before this time: the band-pass spreads the artefact's onset
_ONSET_MS = (-0.5, 0.3)         # where an artefact must show to be subtracted (before any spike can arrive)
_Z_SET_ASIDE = 5.0              # leave-one-pair-out z above which a pair's sample is set aside (a spike)
_BLANK_NOISE = 2.5              # the noise band: epoch-median residue <= 2.5 σ (or the pre-stimulus maximum)
_BLANK_HOLD_MS = 0.3            # ... for this long


class ImplausibleVelocityError(ValueError):
    """:func:`conduction_velocity` cannot vouch for its velocity (out of range, a poor fit or disagreeing trials).

    ``velocity_m_s`` is the number it would have returned and ``diagnostics`` the dict behind the message
    (:func:`velocity_diagnostics` plus how the artefact was removed).
    """

    def __init__(self, message: str, velocity_m_s: float, diagnostics: dict):
        super().__init__(message)
        self.velocity_m_s = velocity_m_s
        self.diagnostics = diagnostics


class ImplausibleVelocityWarning(UserWarning):
    """What ``conduction_velocity(..., on_implausible="warn")`` issues instead of raising."""


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


def _epoch_times(func: str, times_ms, e: np.ndarray) -> np.ndarray:
    """``times_ms`` as floats, one per sample of the epochs ``e``'s window."""
    t = np.asarray(times_ms, dtype=float)
    if t.shape != (e.shape[1],):
        raise _bad(func, "times_ms", f"array of shape {t.shape}", f"shape ({e.shape[1]},)")
    return t


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


def subsample_offsets(stim_times_s, fs: float, window_ms=(-5.0, 20.0)) -> np.ndarray:
    """Where each stimulus falls after t = 0 of its epoch from :func:`epochs` (same arguments), in samples, within
    [-0.5, 0.5]: epochs start on whole samples, stimuli need not."""
    fs = _positive("subsample_offsets", "fs", fs)
    exact = (np.asarray(stim_times_s, dtype=float).ravel() + window_ms[0] / 1e3) * fs
    return exact - np.rint(exact)


def _delay(x: np.ndarray, d) -> np.ndarray:
    """x(t - d Δt) along axis 1, one delay d (samples) per row, by the Fourier shift theorem (zero-padded to twice
    the length, so nothing wraps around; exact for a band-limited x)."""
    n = x.shape[1]
    phase = np.exp(-2j * np.pi * np.fft.rfftfreq(2 * n)[None, :] * np.asarray(d, dtype=float)[:, None])
    if x.ndim == 3:
        phase = phase[:, :, None]
    return np.fft.irfft(np.fft.rfft(x, 2 * n, axis=1) * phase, 2 * n, axis=1)[:, :n]


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
    t = _epoch_times("blank", times_ms, e)
    inside = np.flatnonzero((t >= 0) & (t < blank_ms))
    if len(inside) == 0:
        return e
    a, b = inside[0] - 1, inside[-1] + 1
    if a < 0 or b >= len(t):
        raise _bad("blank", "blank_ms", blank_ms, "a blank with at least one sample on either side in the window")
    frac = ((t[inside] - t[a]) / (t[b] - t[a]))[None, :, None]
    e[:, inside] = e[:, a:a + 1] + frac * (e[:, b:b + 1] - e[:, a:a + 1])
    return e


def _baseline(func: str, t: np.ndarray) -> np.ndarray:
    base = t < _BASELINE_MS
    if base.sum() < 10:
        raise _bad(func, "times_ms", f"{base.sum()} samples before {_BASELINE_MS:g} ms",
                   f"epochs with at least 10 samples before {_BASELINE_MS:g} ms (the noise level is measured "
                   "there)")
    return base


def _pair_sigma(e: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """MAD noise level per pair of (n_trials, n_window, n_pairs) over the samples ``rows``, floored above 0."""
    sigma = noise_sigma(e[:, rows].transpose(2, 0, 1).reshape(e.shape[2], -1), axis=1)
    floor = max(1e-12 * float(np.abs(e).max()), 1e-100)
    return np.maximum(sigma, floor)


def auto_artefact(epochs_bp, times_ms, offsets=None, z: float = _Z_SET_ASIDE,
                  n_iter: int = 3) -> tuple[np.ndarray, dict]:
    """The stimulus artefact in band-passed epochs, estimated from the epochs themselves (module docstring,
    "Automatic artefact removal", steps 1–3): (artefact (n_trials, n_window, n_pairs) in µV, info).

    ``offsets``: where each stimulus falls after t = 0, in samples (:func:`subsample_offsets`; default 0). info:
    ``template`` s(t) on the aligned time base, ``scales`` a_ip, ``set_aside`` (n_window, n_pairs) where the
    pair was left out of the template (spikes), ``pairs`` where the artefact was significant and subtracted,
    ``sigma`` the noise level per pair after subtraction.
    """
    e = _epochs_array("auto_artefact", epochs_bp)
    t = _epoch_times("auto_artefact", times_ms, e)
    base = _baseline("auto_artefact", t)
    n_trials, n_window, n_pairs = e.shape
    phi = np.zeros(n_trials) if offsets is None else np.asarray(offsets, dtype=float).ravel()
    if phi.shape != (n_trials,) or not np.all(np.abs(phi) <= 0.5 + 1e-9):
        raise _bad("auto_artefact", "offsets", offsets, f"{n_trials} offsets in [-0.5, 0.5] samples, one per trial")
    y = _delay(e, -phi) if np.any(phi != 0) else e                      # aligned: the stimulus at t = 0 exactly
    sigma = _pair_sigma(y, base)
    # start: the leading singular vector of the whitened epochs after -0.5 ms gives the scales
    rows = (y / sigma).transpose(0, 2, 1).reshape(-1, n_window)[:, t >= _ONSET_MS[0]]
    u, sv, _ = np.linalg.svd(rows, full_matrices=False)
    a = (u[:, 0] * sv[0]).reshape(n_trials, n_pairs) * sigma
    s = np.zeros(n_window)
    keep = np.ones((n_window, n_pairs), bool)
    for round_ in range(n_iter):
        if round_:
            sigma = _pair_sigma(y - a[:, None, :] * s[None, :, None], base)
        energy = (a ** 2).sum(axis=0)                                   # (n_pairs,)
        usable = energy > 0
        s_pair = np.einsum("ip,itp->tp", a, y) / np.where(usable, energy, 1.0)
        w = np.broadcast_to(np.where(usable, energy / sigma ** 2, 0.0), s_pair.shape)
        keep = np.broadcast_to(usable, s_pair.shape).copy()
        for _ in range(n_pairs - 2):                                    # leave-one-pair-out, worst first
            wk = np.where(keep, w, 0.0)
            rest = wk.sum(axis=1, keepdims=True) - wk
            ok = keep & (rest > 0)
            rest_mean = ((wk * s_pair).sum(axis=1, keepdims=True) - wk * s_pair) / np.where(ok, rest, 1.0)
            zz = np.where(ok, np.abs(s_pair - rest_mean)
                          / np.sqrt(1.0 / np.where(ok, w, 1.0) + 1.0 / np.where(ok, rest, 1.0)), 0.0)
            worst = zz.argmax(axis=1)
            out = zz[np.arange(n_window), worst] > z
            keep[np.flatnonzero(out), worst[out]] = False
        wk = np.where(keep, w, 0.0)
        total = wk.sum(axis=1)
        s = np.where(total > 0, (wk * s_pair).sum(axis=1) / np.where(total > 0, total, 1.0), 0.0)
        norm = np.einsum("t,tp->p", s ** 2, keep)
        a = np.einsum("t,itp,tp->ip", s, y, keep) / np.where(norm > 0, norm, 1.0)[None, :]
    shape = _delay(np.broadcast_to(s, (n_trials, n_window)), phi) if np.any(phi != 0) \
        else np.broadcast_to(s, (n_trials, n_window))
    artefact = a[:, None, :] * shape[:, :, None]
    sigma = _pair_sigma(e - artefact, base)
    onset = (t >= _ONSET_MS[0]) & (t < _ONSET_MS[1])
    peak = np.median(np.abs(artefact[:, onset]).max(axis=1), axis=0) if onset.any() else np.zeros(n_pairs)
    pairs = peak >= 2.0 * sigma
    artefact = artefact * pairs[None, None, :]
    sigma = _pair_sigma(e - artefact, base)
    return artefact, {"template": s, "scales": a, "set_aside": ~keep, "pairs": pairs, "sigma": sigma,
                      "offsets": phi}


def auto_blank(residue_bp, times_ms, sigma=None, noise_band: float = _BLANK_NOISE,
               hold_ms: float = _BLANK_HOLD_MS) -> np.ndarray:
    """Per pair, the first time (ms) >= 0 from which the epoch-median envelope median_i |r_ip(t)| of band-passed
    epochs stays for ``hold_ms`` within the noise band max(noise_band σ_p, its maximum before -1 ms) (module
    docstring, step 4); inf where it never does. ``sigma``: the noise level per pair (default: MAD before -1 ms)."""
    e = _epochs_array("auto_blank", residue_bp)
    t = _epoch_times("auto_blank", times_ms, e)
    base = _baseline("auto_blank", t)
    sigma = _pair_sigma(e, base) if sigma is None else np.broadcast_to(np.asarray(sigma, dtype=float), (e.shape[2],))
    envelope = np.median(np.abs(e), axis=0)                             # (n_window, n_pairs)
    band = np.maximum(noise_band * sigma, envelope[base].max(axis=0))
    hold = max(1, int(round(hold_ms / (t[1] - t[0]))))
    loud = np.vstack([np.zeros((1, e.shape[2])), np.cumsum(envelope > band, axis=0)])
    n = e.shape[1] - hold + 1
    quiet = (loud[hold:hold + n] - loud[:n] == 0) & (t[:n] >= 0)[:, None]     # quiet over [j, j + hold)
    return np.where(quiet.any(axis=0), t[:n][quiet.argmax(axis=0)], np.inf)


def auto_clean(epochs_uv, times_ms, fs: float, band_hz=(200.0, 5000.0),
               offsets=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Raw epochs to artefact-free ones, automatically (module docstring, steps 1–4): band-pass, subtract
    :func:`auto_artefact`, find :func:`auto_blank`. Returns (clean band-passed epochs, noise σ per pair, blank
    start per pair in ms, the artefact info)."""
    f = bandpass(epochs_uv, fs, band_hz, axis=1)
    art, info = auto_artefact(f, times_ms, offsets)
    f = f - art
    return f, info["sigma"], auto_blank(f, times_ms, info["sigma"]), info


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
    t = _epoch_times("arrival_times", times_ms, e)
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


def velocity_diagnostics(positions_mm, arrivals_ms, *, plausible_m_s=PLAUSIBLE_VELOCITY_M_S,
                         max_residual_ms: float = MAX_FIT_RESIDUAL_MS, max_spread: float = MAX_TRIAL_SPREAD,
                         min_pairs: int = 3) -> dict:
    """The recording's velocity (median of :func:`fit_velocities`) and the numbers behind the plausibility checks
    (module docstring): per-trial velocities and rms misfits (ms) of t = a + x / v, trials fitted (>= ``min_pairs``
    arrivals) and used (positive slope), the median misfit, the robust CV and quartiles of the per-trial
    velocities, and ``problems``, the checks that failed (empty: plausible)."""
    x = np.asarray(positions_mm, dtype=float).ravel()
    a = np.atleast_2d(np.asarray(arrivals_ms, dtype=float))
    v = fit_velocities(x, a, min_pairs)
    w = np.isfinite(a)
    n = w.sum(axis=1)
    ts = np.where(w, a, 0.0)
    xm = (w * x[None]).sum(1) / np.maximum(n, 1)
    tm = ts.sum(1) / np.maximum(n, 1)
    dx = np.where(w, x[None] - xm[:, None], 0.0)
    sxx = (dx ** 2).sum(1)
    slope = (dx * (ts - tm[:, None])).sum(1) / np.where(sxx > 0, sxx, 1.0)
    misfit = np.where(w, ts - tm[:, None] - slope[:, None] * dx, 0.0)
    fitted = (n >= min_pairs) & (sxx > 0)
    residual = np.where(fitted, np.sqrt((misfit ** 2).sum(1) / np.maximum(n, 1)), np.nan)
    used = np.isfinite(v)
    lo, hi = plausible_m_s
    d = {"velocity_m_s": float(np.median(v[used])) if used.any() else float("nan"), "per_trial_m_s": v,
         "per_trial_residual_ms": residual, "pairs_per_trial": n, "n_trials": len(v), "n_fitted": int(fitted.sum()),
         "n_used": int(used.sum()), "plausible_m_s": (float(lo), float(hi)), "max_residual_ms": float(max_residual_ms),
         "max_spread": float(max_spread)}
    d["residual_ms"] = float(np.median(residual[used])) if used.any() else float("nan")
    vm = d["velocity_m_s"]
    d["spread"] = (float(1.4826 * np.median(np.abs(v[used] - vm)) / vm) if d["n_used"] >= 3 and vm > 0
                   else float("nan"))
    d["quartiles_m_s"] = tuple(float(q) for q in np.percentile(v[used], [25, 75])) if used.any() else (np.nan, np.nan)
    problems = []
    if used.any():
        if not lo <= vm <= hi:
            problems.append(f"{vm:.4g} m/s lies outside {lo:g}–{hi:g} m/s, the plausible range for earthworm giant "
                            "fibres (LGF 10–15, MGF 20–30 m/s)")
        if d["residual_ms"] > max_residual_ms:
            problems.append(f"the arrival times do not fit t = a + x / v: median rms misfit "
                            f"{d['residual_ms'] * 1e3:.0f} µs > {max_residual_ms * 1e3:.0f} µs")
        if d["spread"] > max_spread:
            problems.append(f"the trials disagree: robust CV of the per-trial velocities {d['spread']:.2f} > "
                            f"{max_spread:g}")
    if d["n_fitted"] >= 3 and d["n_used"] < 0.5 * d["n_fitted"]:
        problems.append(f"only {d['n_used']} of {d['n_fitted']} fitted trials have a positive slope (a wave "
                        "travelling away from the stimulus)")
    d["problems"] = problems
    return d


def _summary(d: dict) -> str:
    q = d["quartiles_m_s"]
    text = (f"{d['n_used']} of {d['n_trials']} trials used ({d['n_fitted']} with arrivals on >= 3 pairs), "
            f"median rms misfit {d['residual_ms'] * 1e3:.0f} µs, per-trial spread (robust CV) {d['spread']:.2f}, "
            f"per-trial velocities {q[0]:.4g}–{q[1]:.4g} m/s (quartiles)")
    if d.get("removal") == "auto":
        blank_ = ", ".join("never" if not np.isfinite(b) else f"{b:.2f}" for b in d["blank_ms"])
        text += (f"; artefact subtracted on pairs {np.flatnonzero(d['artefact_pairs']).tolist()}, arrivals searched "
                 f"after [{blank_}] ms per pair")
    else:
        text += f"; artefact {d['removal']}, blank {d['blank_ms']:g} ms"
    return text


def conduction_velocity(samples, fs, electrode_positions_mm, stim_times_s, *, artefact=_AUTO, blank_ms=_AUTO,
                        window_ms=(-5.0, 20.0), band_hz=(200.0, 5000.0), k: float = 5.0,
                        plausible_m_s=PLAUSIBLE_VELOCITY_M_S, on_implausible: str = "raise",
                        return_diagnostics: bool = False):
    """Conduction velocity (m/s) of the first spike evoked by each stimulus (median over trials).

    ``samples`` (n, n_pairs) in µV, one column per pair ordered by ``electrode_positions_mm`` (increasing);
    ``stim_times_s`` relative to row 0.

    Artefact. By default (``artefact="auto"``, ``blank_ms="auto"``) it is estimated from the epochs, subtracted,
    and what remains is blanked per pair until it falls into the noise band (module docstring, "Automatic artefact
    removal"); the window must then start well before the stimulus (the noise is measured before -1 ms). Giving
    either explicitly selects the manual removal of earlier versions, with identical results: ``artefact`` (µV,
    shape (n_window, n_pairs) or (n_trials, n_window, n_pairs), e.g. V × :func:`artefact_template`; None:
    nothing) is subtracted, the first ``blank_ms`` after each stimulus are blanked (a number >= 0), arrival times
    are searched after the blank, and whichever of the two is left at "auto" means none.

    Plausibility (module docstring): the velocity must lie within ``plausible_m_s`` and the arrivals must fit
    t = a + x / v well and agree between trials; otherwise :class:`ImplausibleVelocityError` (a ValueError) with
    the diagnostics, or with ``on_implausible="warn"`` an :class:`ImplausibleVelocityWarning` and the number.
    ValueError as well when no trial has a spike on 3 pairs. ``return_diagnostics=True`` returns
    (velocity, diagnostics dict) instead of the velocity.
    """
    pos = np.asarray(electrode_positions_mm, dtype=float).ravel()
    if len(pos) < 2 or not np.all(np.diff(pos) > 0):
        raise _bad("conduction_velocity", "electrode_positions_mm", electrode_positions_mm,
                   "at least 2 strictly increasing positions in mm, one per column of samples")
    x = _samples("conduction_velocity", samples, len(pos))
    auto_art = isinstance(artefact, str) and artefact == _AUTO
    auto_blank_ = isinstance(blank_ms, str) and blank_ms == _AUTO
    if isinstance(artefact, str) and not auto_art:
        raise _bad("conduction_velocity", "artefact", artefact, "'auto', None or an array of µV")
    automatic = auto_art and auto_blank_
    if not automatic:
        artefact = None if auto_art else artefact
        blank_ms = 0.0 if auto_blank_ else blank_ms
        if not (isinstance(blank_ms, numbers.Real) and not isinstance(blank_ms, bool) and blank_ms >= 0):
            raise _bad("conduction_velocity", "blank_ms", blank_ms, "'auto' or a number of ms >= 0")
    if on_implausible not in ("raise", "warn"):
        raise _bad("conduction_velocity", "on_implausible", on_implausible, "'raise' or 'warn'")
    lo, hi = plausible_m_s
    if not 0 < lo < hi:
        raise _bad("conduction_velocity", "plausible_m_s", plausible_m_s, "(low, high) in m/s with 0 < low < high")
    e, t = epochs(x, fs, stim_times_s, window_ms)
    if automatic:
        if np.sum(t < _BASELINE_MS) < 10:
            raise _bad("conduction_velocity", "window_ms", window_ms,
                       "a window that starts well before the stimulus, e.g. -5 ms (the automatic artefact removal "
                       "measures the noise before -1 ms), or an explicit artefact= / blank_ms=")
        f, sigma, start, info = auto_clean(e, t, fs, band_hz, subsample_offsets(stim_times_s, fs, window_ms))
        starts = np.broadcast_to(start, f[:, 0].shape)
        arrivals = arrival_times(f, t, k=k, search_ms=(starts, None), sigma=sigma)
        guard = (t[None, :, None] >= starts[:, None, :]) & (t[None, :, None] < starts[:, None, :] + _BLANK_HOLD_MS)
        early = ((np.abs(f) > k * sigma[None, None, :]) & guard).any(axis=1)
        arrivals = np.where(early, np.nan, arrivals)
        removal = {"removal": "auto", "blank_ms": start, "artefact_pairs": info["pairs"]}
    else:
        if artefact is not None:
            art = np.asarray(artefact, dtype=float)
            if art.shape not in (e.shape, e.shape[1:]):
                raise _bad("conduction_velocity", "artefact", f"array of shape {art.shape}",
                           f"shape {e.shape[1:]} or {e.shape} (the epochs of window_ms={tuple(window_ms)})")
            e = e - art
        if blank_ms > 0:
            e = blank(e, t, blank_ms)
        f = bandpass(e, fs, band_hz, axis=1)
        arrivals = arrival_times(f, t, k=k, search_ms=(blank_ms, None))
        removal = {"removal": "given" if artefact is not None else "none", "blank_ms": float(blank_ms)}
    d = velocity_diagnostics(pos, arrivals, plausible_m_s=plausible_m_s,
                             max_residual_ms=max(MAX_FIT_RESIDUAL_MS, 1e3 / float(fs)))
    d.update(removal, arrivals_ms=arrivals)
    if d["n_used"] == 0:
        raise ValueError("conduction_velocity: no trial had a spike on at least 3 pairs that travelled away from "
                         f"the stimulus ({_summary(d)}); check the stimulus times, the artefact removal "
                         "(artefact=, blank_ms=) and the threshold k")
    velocity = d["velocity_m_s"]
    if d["problems"]:
        message = (f"conduction_velocity: cannot vouch for {velocity:.4g} m/s: {'; '.join(d['problems'])}. "
                   f"Diagnostics: {_summary(d)}. Check the stimulus times, the artefact removal (artefact=, "
                   "blank_ms=) and the threshold k; velocity_diagnostics() gives the per-trial numbers")
        if on_implausible == "raise":
            raise ImplausibleVelocityError(message, velocity, d)
        warnings.warn(message, ImplausibleVelocityWarning, stacklevel=2)
    return (velocity, d) if return_diagnostics else velocity


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
