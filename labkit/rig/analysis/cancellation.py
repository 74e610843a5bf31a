"""Is a slower fibre's spike hidden behind the first one? Cancel the first spike between two pairs and look at what
is left.

A differential pair records the same waveform at every position, only later (labkit.rig.analysis.spikes): the first
spike, the medial giant fibre's (MGF), reaches pair j a delay Δ = (x_j − x_i) / v after pair i, v its conduction
velocity. Shifting pair i's band-passed trace by Δ and subtracting it from pair j's,

    r(t) = y_j(t) − y_i(t − Δ),

cancels the first spike (and the muscle potential, which follows it with the same delay), while a slower spike —
the lateral giant fibres' (LGF), which reaches pair j later *relative* to the MGF than it reaches pair i — survives as
two copies. Δ is refined by least squares over the first spike's waveform (|t − a_j| < ``fit_ms``, within
``max_shift_ms`` of (x_j − x_i) / v), since a velocity error of a few percent would leave a residual of the first
spike. The residual's noise is σ_r(t)² = σ_j(t)² + σ_i(t − Δ)²; a slower spike is *detected* where |r| > k σ_r after
the first spike's arrival on pair i.

Ours: 05a's next-spike search (labkit.rig.analysis.sweep) finds the MGF's own later lobes on the middle pairs when the
two fibres' spikes overlap, which is most of the time at 35–65 mm; cancelling the MGF removes what it finds there.
The two farthest pairs are used, where the LGF lags most.
"""

import numpy as np

__all__ = ["cancel_first_spike", "slower_spike_detected"]


def cancel_first_spike(
    spikes_uv,
    times_ms,
    positions_mm,
    velocity_m_s,
    arrivals_ms,
    pairs=(-2, -1),
    fit_ms: float = 0.6,
    max_shift_ms: float = 0.06,
    n_shifts: int = 25,
):
    """The residual r (n_trials, n_window) of pair ``pairs[1]`` minus pair ``pairs[0]`` shifted by the first spike's
    delay, and that delay per trial (ms; NaN and r = NaN where the trial has no first-spike velocity)."""
    y = np.asarray(spikes_uv, dtype=float)
    t = np.asarray(times_ms, dtype=float)
    i, j = pairs
    pos = np.asarray(positions_mm, dtype=float)
    residual = np.full(y.shape[:2], np.nan)
    delay = np.full(len(y), np.nan)
    offsets = np.linspace(-max_shift_ms, max_shift_ms, n_shifts)
    for trial in np.flatnonzero(np.isfinite(velocity_m_s)):
        nominal = (pos[j] - pos[i]) / velocity_m_s[trial]
        a_j = arrivals_ms[trial, j] if np.isfinite(arrivals_ms[trial, j]) else arrivals_ms[trial, i] + nominal
        near = np.abs(t - a_j) < fit_ms
        shifted = np.array([np.interp(t[near] - (nominal + o), t, y[trial, :, i]) for o in offsets])
        best = nominal + offsets[np.argmin(((y[trial, near, j] - shifted) ** 2).sum(axis=1))]
        residual[trial] = y[trial, :, j] - np.interp(t - best, t, y[trial, :, i])
        delay[trial] = best
    return residual, delay


def slower_spike_detected(
    spikes_uv, times_ms, positions_mm, velocity_m_s, arrivals_ms, noise_uv, k: float, pairs=(-2, -1)
) -> np.ndarray:
    """Per trial: does a spike slower than the first one cross k σ_r in the residual of :func:`cancel_first_spike`
    after the first spike reaches pair ``pairs[0]``? ``noise_uv`` (n_trials, n_window, n_pairs) is each pair's noise
    level over the epoch. False where the trial has no first-spike velocity."""
    t = np.asarray(times_ms, dtype=float)
    residual, delay = cancel_first_spike(spikes_uv, t, positions_mm, velocity_m_s, arrivals_ms, pairs)
    noise = np.asarray(noise_uv, dtype=float)
    i, j = pairs
    found = np.zeros(len(residual), dtype=bool)
    for trial in np.flatnonzero(np.isfinite(delay)):
        sigma = np.sqrt(noise[trial, :, j] ** 2 + np.interp(t - delay[trial], t, noise[trial, :, i]) ** 2)
        after = t > max(arrivals_ms[trial, i], 0.0) if np.isfinite(arrivals_ms[trial, i]) else t > 0.0
        found[trial] = bool(np.any(np.abs(residual[trial, after]) > k * sigma[after]))
    return found
