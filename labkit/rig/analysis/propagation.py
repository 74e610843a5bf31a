"""Conduction velocity: per-trial fits of arrival time on pair position, fibre identity by speed, and the
plausibility checks behind :func:`conduction_velocity`, which removes the artefact automatically by default
(labkit.rig.analysis.cleaning) and raises :class:`ImplausibleVelocityError` rather than return an implausible number.

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
"""

import warnings

import numpy as np

from labkit.rig._checks import bad_value, is_real
from labkit.rig.analysis._inputs import samples_2d
from labkit.rig.analysis.cleaning import BASELINE_MS, BLANK_HOLD_MS, auto_clean, blank
from labkit.rig.analysis.epochs import BAND_HZ, WINDOW_MS, bandpass, epochs, subsample_offsets
from labkit.rig.analysis.spikes import THRESHOLD_K, arrival_times

__all__ = [
    "MGF_LGF_BOUNDARY_M_S",
    "PLAUSIBLE_VELOCITY_M_S",
    "MAX_FIT_RESIDUAL_MS",
    "MAX_TRIAL_SPREAD",
    "ImplausibleVelocityError",
    "ImplausibleVelocityWarning",
    "fit_velocities",
    "velocity_diagnostics",
    "conduction_velocity",
    "fibre_identity",
]

MGF_LGF_BOUNDARY_M_S = 17.5  # ours: between the LGF's 10–15 and the MGF's 20–30 m/s (module docstring)
PLAUSIBLE_VELOCITY_M_S = (2.0, 50.0)  # ours, around the LGF's 10–15 and MGF's 20–30 m/s (module docstring)
MAX_FIT_RESIDUAL_MS = 0.05  # ours: median per-trial rms misfit of t = a + x / v (one sample if that is longer)
MAX_TRIAL_SPREAD = 0.25  # ours: robust CV (1.4826 MAD / median) of the per-trial velocities
_AUTO = "auto"


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


def fit_velocities(positions_mm, arrivals_ms, min_pairs: int = 3) -> np.ndarray:
    """Per-trial velocity (m/s) from the least-squares slope of arrival time on position; NaN where fewer than
    ``min_pairs`` arrivals or the slope is not positive."""
    x = np.asarray(positions_mm, dtype=float).ravel()
    a = np.atleast_2d(np.asarray(arrivals_ms, dtype=float))
    if a.shape[1] != len(x) or len(x) < 2:
        raise bad_value(
            "fit_velocities", "arrivals_ms", f"array of shape {a.shape}", f"(n_trials, {len(x)}), >= 2 pairs"
        )
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


def velocity_diagnostics(
    positions_mm,
    arrivals_ms,
    *,
    plausible_m_s=PLAUSIBLE_VELOCITY_M_S,
    max_residual_ms: float = MAX_FIT_RESIDUAL_MS,
    max_spread: float = MAX_TRIAL_SPREAD,
    min_pairs: int = 3,
) -> dict:
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
    sxx = (dx**2).sum(1)
    slope = (dx * (ts - tm[:, None])).sum(1) / np.where(sxx > 0, sxx, 1.0)
    misfit = np.where(w, ts - tm[:, None] - slope[:, None] * dx, 0.0)
    fitted = (n >= min_pairs) & (sxx > 0)
    residual = np.where(fitted, np.sqrt((misfit**2).sum(1) / np.maximum(n, 1)), np.nan)
    used = np.isfinite(v)
    lo, hi = plausible_m_s
    d = {
        "velocity_m_s": float(np.median(v[used])) if used.any() else float("nan"),
        "per_trial_m_s": v,
        "per_trial_residual_ms": residual,
        "pairs_per_trial": n,
        "n_trials": len(v),
        "n_fitted": int(fitted.sum()),
        "n_used": int(used.sum()),
        "plausible_m_s": (float(lo), float(hi)),
        "max_residual_ms": float(max_residual_ms),
        "max_spread": float(max_spread),
    }
    d["residual_ms"] = float(np.median(residual[used])) if used.any() else float("nan")
    vm = d["velocity_m_s"]
    d["spread"] = float(1.4826 * np.median(np.abs(v[used] - vm)) / vm) if d["n_used"] >= 3 and vm > 0 else float("nan")
    d["quartiles_m_s"] = tuple(float(q) for q in np.percentile(v[used], [25, 75])) if used.any() else (np.nan, np.nan)
    problems = []
    if used.any():
        if not lo <= vm <= hi:
            problems.append(
                f"{vm:.4g} m/s lies outside {lo:g}–{hi:g} m/s, the plausible range for earthworm giant "
                "fibres (LGF 10–15, MGF 20–30 m/s)"
            )
        if d["residual_ms"] > max_residual_ms:
            problems.append(
                f"the arrival times do not fit t = a + x / v: median rms misfit "
                f"{d['residual_ms'] * 1e3:.0f} µs > {max_residual_ms * 1e3:.0f} µs"
            )
        if d["spread"] > max_spread:
            problems.append(
                f"the trials disagree: robust CV of the per-trial velocities {d['spread']:.2f} > {max_spread:g}"
            )
    if d["n_fitted"] >= 3 and d["n_used"] < 0.5 * d["n_fitted"]:
        problems.append(
            f"only {d['n_used']} of {d['n_fitted']} fitted trials have a positive slope (a wave "
            "travelling away from the stimulus)"
        )
    d["problems"] = problems
    return d


def _summary(d: dict) -> str:
    q = d["quartiles_m_s"]
    text = (
        f"{d['n_used']} of {d['n_trials']} trials used ({d['n_fitted']} with arrivals on >= 3 pairs), "
        f"median rms misfit {d['residual_ms'] * 1e3:.0f} µs, per-trial spread (robust CV) {d['spread']:.2f}, "
        f"per-trial velocities {q[0]:.4g}–{q[1]:.4g} m/s (quartiles)"
    )
    if d.get("removal") == "auto":
        blank_ = ", ".join("never" if not np.isfinite(b) else f"{b:.2f}" for b in d["blank_ms"])
        text += (
            f"; artefact subtracted on pairs {np.flatnonzero(d['artefact_pairs']).tolist()}, arrivals searched "
            f"after [{blank_}] ms per pair"
        )
    else:
        text += f"; artefact {d['removal']}, blank {d['blank_ms']:g} ms"
    return text


def conduction_velocity(
    samples,
    fs,
    electrode_positions_mm,
    stim_times_s,
    *,
    artefact=_AUTO,
    blank_ms=_AUTO,
    window_ms=WINDOW_MS,
    band_hz=BAND_HZ,
    k: float = THRESHOLD_K,
    plausible_m_s=PLAUSIBLE_VELOCITY_M_S,
    on_implausible: str = "raise",
    return_diagnostics: bool = False,
):
    """Conduction velocity (m/s) of the first spike evoked by each stimulus (median over trials).

    ``samples`` (n, n_pairs) in µV, one column per pair ordered by ``electrode_positions_mm`` (increasing);
    ``stim_times_s`` relative to row 0.

    Artefact. By default (``artefact="auto"``, ``blank_ms="auto"``) it is estimated from the epochs, subtracted,
    and what remains is blanked per pair until it falls into the noise band (labkit.rig.analysis.cleaning,
    "Automatic artefact removal"); the window must then start well before the stimulus (the noise is measured before
    -1 ms). Giving either explicitly selects the manual removal of earlier versions, with identical results:
    ``artefact`` (µV, shape (n_window, n_pairs) or (n_trials, n_window, n_pairs), e.g. V ×
    labkit.rig.analysis.cleaning.artefact_template; None:
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
        raise bad_value(
            "conduction_velocity",
            "electrode_positions_mm",
            electrode_positions_mm,
            "at least 2 strictly increasing positions in mm, one per column of samples",
        )
    x = samples_2d("conduction_velocity", samples, len(pos))
    auto_art = isinstance(artefact, str) and artefact == _AUTO
    auto_blank_ = isinstance(blank_ms, str) and blank_ms == _AUTO
    if isinstance(artefact, str) and not auto_art:
        raise bad_value("conduction_velocity", "artefact", artefact, "'auto', None or an array of µV")
    automatic = auto_art and auto_blank_
    if not automatic:
        artefact = None if auto_art else artefact
        blank_ms = 0.0 if auto_blank_ else blank_ms
        if not (is_real(blank_ms) and blank_ms >= 0):
            raise bad_value("conduction_velocity", "blank_ms", blank_ms, "'auto' or a number of ms >= 0")
    if on_implausible not in ("raise", "warn"):
        raise bad_value("conduction_velocity", "on_implausible", on_implausible, "'raise' or 'warn'")
    lo, hi = plausible_m_s
    if not 0 < lo < hi:
        raise bad_value("conduction_velocity", "plausible_m_s", plausible_m_s, "(low, high) in m/s with 0 < low < high")
    e, t = epochs(x, fs, stim_times_s, window_ms)
    if automatic:
        if np.sum(t < BASELINE_MS) < 10:
            raise bad_value(
                "conduction_velocity",
                "window_ms",
                window_ms,
                "a window that starts well before the stimulus, e.g. -5 ms (the automatic artefact removal "
                "measures the noise before -1 ms), or an explicit artefact= / blank_ms=",
            )
        f, sigma, start, info = auto_clean(e, t, fs, band_hz, subsample_offsets(stim_times_s, fs, window_ms))
        starts = np.broadcast_to(start, f[:, 0].shape)
        arrivals = arrival_times(f, t, k=k, search_ms=(starts, None), sigma=sigma)
        guard = (t[None, :, None] >= starts[:, None, :]) & (t[None, :, None] < starts[:, None, :] + BLANK_HOLD_MS)
        early = ((np.abs(f) > k * sigma[None, None, :]) & guard).any(axis=1)
        arrivals = np.where(early, np.nan, arrivals)
        removal = {"removal": "auto", "blank_ms": start, "artefact_pairs": info["pairs"]}
    else:
        if artefact is not None:
            art = np.asarray(artefact, dtype=float)
            if art.shape not in (e.shape, e.shape[1:]):
                raise bad_value(
                    "conduction_velocity",
                    "artefact",
                    f"array of shape {art.shape}",
                    f"shape {e.shape[1:]} or {e.shape} (the epochs of window_ms={tuple(window_ms)})",
                )
            e = e - art
        if blank_ms > 0:
            e = blank(e, t, blank_ms)
        f = bandpass(e, fs, band_hz, axis=1)
        arrivals = arrival_times(f, t, k=k, search_ms=(blank_ms, None))
        removal = {"removal": "given" if artefact is not None else "none", "blank_ms": float(blank_ms)}
    d = velocity_diagnostics(
        pos, arrivals, plausible_m_s=plausible_m_s, max_residual_ms=max(MAX_FIT_RESIDUAL_MS, 1e3 / float(fs))
    )
    d.update(removal, arrivals_ms=arrivals)
    if d["n_used"] == 0:
        raise ValueError(
            "conduction_velocity: no trial had a spike on at least 3 pairs that travelled away from "
            f"the stimulus ({_summary(d)}); check the stimulus times, the artefact removal "
            "(artefact=, blank_ms=) and the threshold k"
        )
    velocity = d["velocity_m_s"]
    if d["problems"]:
        message = (
            f"conduction_velocity: cannot vouch for {velocity:.4g} m/s: {'; '.join(d['problems'])}. "
            f"Diagnostics: {_summary(d)}. Check the stimulus times, the artefact removal (artefact=, "
            "blank_ms=) and the threshold k; velocity_diagnostics() gives the per-trial numbers"
        )
        if on_implausible == "raise":
            raise ImplausibleVelocityError(message, velocity, d)
        warnings.warn(message, ImplausibleVelocityWarning, stacklevel=2)
    return (velocity, d) if return_diagnostics else velocity


def fibre_identity(velocity_m_s) -> np.ndarray:
    """'MGF' where the velocity is >= MGF_LGF_BOUNDARY_M_S, 'LGF' below it, '' where NaN."""
    v = np.asarray(velocity_m_s, dtype=float)
    return np.where(np.isnan(v), "", np.where(v >= MGF_LGF_BOUNDARY_M_S, "MGF", "LGF"))
