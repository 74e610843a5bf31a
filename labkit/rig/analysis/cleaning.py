"""Stimulus-artefact removal: a template from sub-threshold trials, blanking, or the automatic estimate from the
epochs themselves (what labkit.rig.analysis.propagation.conduction_velocity does by default).

Stimulus artefact (blank it, or subtract a template from sub-threshold trials; the far pairs are cleaner)
    The artefact grows linearly with the stimulus voltage V (assumed here), so a template per volt is the mean of
    e / V over trials that evoked no spike; subtracting V·template from a trial removes it, spikes and all later
    responses untouched. Blanking instead replaces [0, blank_ms) after the stimulus by the straight line joining its
    ends (nothing recorded there survives: use it when the artefact is brief).

Automatic artefact removal
    Assumed here, and checked afterwards rather than trusted: in every trial i and on every pair p the artefact is
    one shape s(t), time-locked to the stimulus, times a scale a_ip (size and sign may vary between pairs and
    trials), while a spike reaches different pairs at different times (later at
    farther pairs). One stimulus waveform per call: trials with different periods have different shapes. All
    steps work on the band-passed epochs y_ip(t); the filter is linear and time-invariant, so the model keeps its
    form, y_ip(t) = a_ip s_f(t) + spikes + noise.

    1. Alignment. Epochs start on whole samples, so stimulus i falls φ_i ∈ [-½, ½] sample after the epoch's t = 0
       (labkit.rig.analysis.epochs.subsample_offsets, from ``stim_times_s``). Each epoch is advanced by φ_i with
       the Fourier shift theorem, Y(f) -> Y(f) exp(2πi f φ_i Δt) (exact for the band-limited band-passed signal),
       so the artefact is a_ip s_f(t) in every aligned epoch; the fitted artefact is delayed back by φ_i before it
       is subtracted.
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
"""

import numpy as np

from labkit.rig._checks import bad_value
from labkit.rig.analysis._inputs import epoch_times, epochs_3d
from labkit.rig.analysis.epochs import BAND_HZ, bandpass
from labkit.rig.analysis.spikes import pair_noise

__all__ = [
    "BASELINE_MS",
    "BLANK_HOLD_MS",
    "artefact_template",
    "subtract_artefact",
    "blank",
    "auto_artefact",
    "auto_blank",
    "auto_clean",
]

BASELINE_MS = -1.0  # noise is measured before this time: the band-pass spreads the artefact's onset
_ONSET_MS = (-0.5, 0.3)  # where an artefact must show to be subtracted (before any spike can arrive)
_Z_SET_ASIDE = 5.0  # leave-one-pair-out z above which a pair's sample is set aside (a spike)
_BLANK_NOISE = 2.5  # the noise band: epoch-median residue <= 2.5 σ (or the pre-stimulus maximum)
BLANK_HOLD_MS = 0.3  # ... for this long


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
    e = epochs_3d("artefact_template", epochs_uv)
    v = np.asarray(vpp, dtype=float).ravel()
    q = np.asarray(quiet, dtype=bool).ravel()
    if v.shape != (len(e),) or not np.all(v > 0):
        raise bad_value("artefact_template", "vpp", vpp, f"{len(e)} stimulus voltages > 0, one per trial")
    if q.shape != (len(e),) or not q.any():
        raise bad_value("artefact_template", "quiet", quiet, f"{len(e)} booleans, one per trial, at least one True")
    template = (e[q] / v[q, None, None]).mean(axis=0)
    if duration_ms is not None:
        t = np.asarray(times_ms, dtype=float)
        if t.shape != (e.shape[1],) or not duration_ms > 0:
            raise bad_value(
                "artefact_template",
                "duration_ms",
                duration_ms,
                f"a duration > 0 ms together with times_ms of shape ({e.shape[1]},)",
            )
        template[(t < 0) | (t >= duration_ms)] = 0.0
    return template


def subtract_artefact(epochs_uv, template, vpp) -> np.ndarray:
    """``epochs_uv`` minus V × ``template`` per trial (template from :func:`artefact_template`)."""
    e = epochs_3d("subtract_artefact", epochs_uv)
    v = np.asarray(vpp, dtype=float).ravel()
    tpl = np.asarray(template, dtype=float)
    if tpl.shape != e.shape[1:]:
        raise bad_value("subtract_artefact", "template", f"array of shape {tpl.shape}", f"shape {e.shape[1:]}")
    if v.shape != (len(e),):
        raise bad_value("subtract_artefact", "vpp", vpp, f"{len(e)} stimulus voltages, one per trial")
    return e - v[:, None, None] * tpl[None]


def blank(epochs_uv, times_ms, blank_ms: float) -> np.ndarray:
    """Replace [0, blank_ms) after the stimulus by the straight line joining the samples on either side."""
    e = epochs_3d("blank", epochs_uv).copy()
    t = epoch_times("blank", times_ms, e)
    inside = np.flatnonzero((t >= 0) & (t < blank_ms))
    if len(inside) == 0:
        return e
    a, b = inside[0] - 1, inside[-1] + 1
    if a < 0 or b >= len(t):
        raise bad_value("blank", "blank_ms", blank_ms, "a blank with at least one sample on either side in the window")
    frac = ((t[inside] - t[a]) / (t[b] - t[a]))[None, :, None]
    e[:, inside] = e[:, a : a + 1] + frac * (e[:, b : b + 1] - e[:, a : a + 1])
    return e


def _baseline(func: str, t: np.ndarray) -> np.ndarray:
    base = t < BASELINE_MS
    if base.sum() < 10:
        raise bad_value(
            func,
            "times_ms",
            f"{base.sum()} samples before {BASELINE_MS:g} ms",
            f"epochs with at least 10 samples before {BASELINE_MS:g} ms (the noise level is measured there)",
        )
    return base


def _pair_sigma(e: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """MAD noise level per pair of (n_trials, n_window, n_pairs) over the samples ``rows``, floored above 0."""
    sigma = pair_noise(e[:, rows])
    floor = max(1e-12 * float(np.abs(e).max()), 1e-100)
    return np.maximum(sigma, floor)


def auto_artefact(
    epochs_bp, times_ms, offsets=None, z: float = _Z_SET_ASIDE, n_iter: int = 3
) -> tuple[np.ndarray, dict]:
    """The stimulus artefact in band-passed epochs, estimated from the epochs themselves (module docstring,
    "Automatic artefact removal", steps 1–3): (artefact (n_trials, n_window, n_pairs) in µV, info).

    ``offsets``: where each stimulus falls after t = 0, in samples (labkit.rig.analysis.epochs.subsample_offsets;
    default 0). info: ``template`` s(t) on the aligned time base, ``scales`` a_ip, ``set_aside`` (n_window, n_pairs)
    where the pair was left out of the template (spikes), ``pairs`` where the artefact was significant and
    subtracted, ``sigma`` the noise level per pair after subtraction.
    """
    e = epochs_3d("auto_artefact", epochs_bp)
    t = epoch_times("auto_artefact", times_ms, e)
    base = _baseline("auto_artefact", t)
    n_trials, n_window, n_pairs = e.shape
    phi = np.zeros(n_trials) if offsets is None else np.asarray(offsets, dtype=float).ravel()
    if phi.shape != (n_trials,) or not np.all(np.abs(phi) <= 0.5 + 1e-9):
        raise bad_value(
            "auto_artefact", "offsets", offsets, f"{n_trials} offsets in [-0.5, 0.5] samples, one per trial"
        )
    y = _delay(e, -phi) if np.any(phi != 0) else e  # aligned: the stimulus at t = 0 exactly
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
        energy = (a**2).sum(axis=0)  # (n_pairs,)
        usable = energy > 0
        s_pair = np.einsum("ip,itp->tp", a, y) / np.where(usable, energy, 1.0)
        w = np.broadcast_to(np.where(usable, energy / sigma**2, 0.0), s_pair.shape)
        keep = np.broadcast_to(usable, s_pair.shape).copy()
        for _ in range(n_pairs - 2):  # leave-one-pair-out, worst first
            wk = np.where(keep, w, 0.0)
            rest = wk.sum(axis=1, keepdims=True) - wk
            ok = keep & (rest > 0)
            rest_mean = ((wk * s_pair).sum(axis=1, keepdims=True) - wk * s_pair) / np.where(ok, rest, 1.0)
            zz = np.where(
                ok,
                np.abs(s_pair - rest_mean) / np.sqrt(1.0 / np.where(ok, w, 1.0) + 1.0 / np.where(ok, rest, 1.0)),
                0.0,
            )
            worst = zz.argmax(axis=1)
            out = zz[np.arange(n_window), worst] > z
            keep[np.flatnonzero(out), worst[out]] = False
        wk = np.where(keep, w, 0.0)
        total = wk.sum(axis=1)
        s = np.where(total > 0, (wk * s_pair).sum(axis=1) / np.where(total > 0, total, 1.0), 0.0)
        norm = np.einsum("t,tp->p", s**2, keep)
        a = np.einsum("t,itp,tp->ip", s, y, keep) / np.where(norm > 0, norm, 1.0)[None, :]
    shape = (
        _delay(np.broadcast_to(s, (n_trials, n_window)), phi)
        if np.any(phi != 0)
        else np.broadcast_to(s, (n_trials, n_window))
    )
    artefact = a[:, None, :] * shape[:, :, None]
    sigma = _pair_sigma(e - artefact, base)
    onset = (t >= _ONSET_MS[0]) & (t < _ONSET_MS[1])
    peak = np.median(np.abs(artefact[:, onset]).max(axis=1), axis=0) if onset.any() else np.zeros(n_pairs)
    pairs = peak >= 2.0 * sigma
    artefact = artefact * pairs[None, None, :]
    sigma = _pair_sigma(e - artefact, base)
    return artefact, {"template": s, "scales": a, "set_aside": ~keep, "pairs": pairs, "sigma": sigma, "offsets": phi}


def auto_blank(
    residue_bp, times_ms, sigma=None, noise_band: float = _BLANK_NOISE, hold_ms: float = BLANK_HOLD_MS
) -> np.ndarray:
    """Per pair, the first time (ms) >= 0 from which the epoch-median envelope median_i |r_ip(t)| of band-passed
    epochs stays for ``hold_ms`` within the noise band max(noise_band σ_p, its maximum before -1 ms) (module
    docstring, step 4); inf where it never does. ``sigma``: the noise level per pair (default: MAD before -1 ms)."""
    e = epochs_3d("auto_blank", residue_bp)
    t = epoch_times("auto_blank", times_ms, e)
    base = _baseline("auto_blank", t)
    sigma = _pair_sigma(e, base) if sigma is None else np.broadcast_to(np.asarray(sigma, dtype=float), (e.shape[2],))
    envelope = np.median(np.abs(e), axis=0)  # (n_window, n_pairs)
    band = np.maximum(noise_band * sigma, envelope[base].max(axis=0))
    hold = max(1, int(round(hold_ms / (t[1] - t[0]))))
    loud = np.vstack([np.zeros((1, e.shape[2])), np.cumsum(envelope > band, axis=0)])
    n = e.shape[1] - hold + 1
    quiet = (loud[hold : hold + n] - loud[:n] == 0) & (t[:n] >= 0)[:, None]  # quiet over [j, j + hold)
    return np.where(quiet.any(axis=0), t[:n][quiet.argmax(axis=0)], np.inf)


def auto_clean(
    epochs_uv, times_ms, fs: float, band_hz=BAND_HZ, offsets=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Raw epochs to artefact-free ones, automatically (module docstring, steps 1–4): band-pass, subtract
    :func:`auto_artefact`, find :func:`auto_blank`. Returns (clean band-passed epochs, noise σ per pair, blank
    start per pair in ms, the artefact info)."""
    f = bandpass(epochs_uv, fs, band_hz, axis=1)
    art, info = auto_artefact(f, times_ms, offsets)
    f = f - art
    return f, info["sigma"], auto_blank(f, times_ms, info["sigma"]), info
