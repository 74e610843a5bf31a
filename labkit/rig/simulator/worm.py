"""The simulated earthworm preparation: giant fibres, muscles and skin electrodes behind the rig's ADC.

One worm (*Lumbricus terrestris*) lies straight on a raceway: two stimulating electrodes under the head (the
*stimulation site*, x = 0) and 4 differential recording pairs behind it at x_k mm. Every number is a field of
:class:`labkit.rig.simulator.worm_params.WormParams`, next to its source (and what *unsourced* and *assumed* mean).
The body's twitches (:meth:`Earthworm.segment_strain`, the ``twitch`` events) are in labkit.rig.simulator.worm_body.

Stimulus and recruitment
    One bipolar sine cycle of peak-to-peak voltage V_pp and period T starting at t_s (charge-balanced by
    construction). Each phase lasts d = T / 2 and peaks at V_pp / 2. Convention used throughout: a fibre fires
    when the *phase peak* reaches its strength–duration threshold (the Weiss–Lapicque hyperbola)

        V_th = Rb (1 + c / d),       i.e. in the rig's units   V_th,pp = 2 Rb (1 + c / d),

    with a trial-to-trial jitter V_th -> V_th (1 + cv z), z ~ N(0, 1) per fibre and pulse (assumed). With the
    intact-worm MGF values (Rb 1.0 V, c 0.06 ms) the MGF threshold is ≈ 2.1 V_pp for T = 2–6.7 ms and the
    LGF's ≈ 2.7 V_pp, so within 2–6 V_pp the response steps none -> MGF -> MGF + LGF (derived here).
    The fibre fires when the first phase reaches threshold, at t_s + (T / 2π) asin(V_th / V_peak) (assumed).
    The two lateral fibres fire together and are modelled as one unit, "LGF".

    A pulse cut off at t_a < t_s + T (STOP, DISARM or the device's watchdog; :meth:`Earthworm.abort`) delivered
    only the sine up to t_a: the artefact ends at t_a and a fibre fires only if the delivered part reached its
    threshold, i.e. if it fired before t_a (its firing depends only on the stimulus up to then).

Recording (µV, one column per pair)
    A spike starting at x_0 at time t_0 reaches x at t_0 + |x - x_0| / v. Each electrode sees a biphasic spike
    w(u) = -u exp((1 - u²) / 2), u = (t - t_arrival) / σ, σ = width / 6 (peaks ±1 at u = ∓1); a pair with
    electrodes at x_k ∓ s/2 records the difference of the two delayed copies:

        y_k(t) = A_f [w((t - t_0 - |x_k - s/2 - x_0| / v) / σ) - w((t - t_0 - |x_k + s/2 - x_0| / v) / σ)].

    Muscle potentials: after the first giant spike passes pair k, a slower biphasic wave (same shape, width
    ``muscle_width_ms``) starting ``muscle_delay_ms`` later, of amplitude M_max D with the graded drive
    D(V_pp) = 1 / (1 + exp(-(V_pp - V_half) / slope)), so they grow gradually with voltage (unsourced; shape and
    numbers assumed). Spontaneous spikes have D = 1.

    Stimulus artefact, linear in voltage and attenuating with distance (unsourced; scale and length assumed):

        a_k(t) = G V_pp exp(-x_k / λ) sin(2π (t - t_s) / T)   for t_s <= t < t_s + T.

    Plus white noise (σ_n) and mains hum (f_mains, one phase per pair). Spontaneous giant spikes: Poisson,
    ``spontaneous_rate_hz`` per fibre (assumed); the MGF's start at the head tip and travel tailwards, the
    LGF's start at the tail tip and travel headwards (sensory fields: MGF anterior, LGF posterior; Drewes,
    Landa & McFall 1978, J Exp Biol 72:217 — check before quoting).

Determinism
    Everything random comes from :func:`labkit.repro.rng` keyed by (seed, stream, index): noise and spontaneous
    spikes per fixed block of ``BLOCK`` sample indices, pulse jitter and read-back noise per pulse number, so
    :meth:`Earthworm.acquire` returns the same numbers however a sample range is split into calls, as long as
    every :meth:`Earthworm.deliver` comes before the samples it affects (it raises otherwise). A pulse changes
    only samples with t >= t_s.
"""

import bisect
import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from labkit import repro
from labkit.config import positive_float
from labkit.rig._checks import bad_value, is_integer, is_real
from labkit.rig.simulator.worm_body import Body
from labkit.rig.simulator.worm_params import WormParams

__all__ = ["FIBRES", "BLOCK", "FS_HZ", "Earthworm", "strength_duration_threshold"]

FIBRES = ("MGF", "LGF")
BLOCK = 32768  # samples per noise / spontaneous-spike block (~1.1 s at 30 kS/s)
FS_HZ = 30000.0  # the simulated ADC's sample rate unless another is asked for

_NOISE, _SPONT, _PULSE, _HUM, _ADC = 1, 2, 3, 4, 5  # repro.rng sub-streams
_SPIKE_SUPPORT = 5.0  # waveforms are evaluated over ±5 σ (|w| < 4e-5 beyond)
_TOL = 1e-6  # samples: t_s = i / fs computed by the caller maps back to sample i


def strength_duration_threshold(rheobase_v: float, chronaxie_ms: float, phase_ms: float) -> float:
    """The Weiss–Lapicque strength–duration threshold V_th = Rb (1 + c / d) for a phase of duration d."""
    if not phase_ms > 0:
        raise ValueError(f"bad phase_ms: {phase_ms!r}; allowed: a number > 0")
    return rheobase_v * (1.0 + chronaxie_ms / phase_ms)


def _biphasic(u: np.ndarray) -> np.ndarray:
    """w(u) = -u exp((1 - u²) / 2): +1 at u = -1, -1 at u = +1."""
    return -u * np.exp(0.5 * (1.0 - u * u))


@dataclass
class _Rows:
    """Waveform terms A w((t - c) / σ) on one pair each, over sample indices [lo, hi)."""

    pair: np.ndarray
    centre_s: np.ndarray
    sigma_s: np.ndarray
    amp_uv: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @staticmethod
    def concat(parts: list["_Rows"]) -> "_Rows":
        if not parts:
            return _Rows(np.zeros(0, int), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, int), np.zeros(0, int))
        return _Rows(*(np.concatenate([getattr(r, f.name) for r in parts]) for f in dataclasses.fields(_Rows)))


@dataclass
class _Pulse:
    t_s: float
    vpp: float
    period_ms: float
    first: int  # first sample index with t >= t_s
    rows: _Rows  # spikes and muscle potentials
    end: int  # one past the last sample index this pulse touches
    artefact_end: int  # one past the last sample of the stimulus artefact (earlier if aborted)
    event: dict
    spikes: list  # spike event dicts (also the twitch sources)


class Earthworm:
    """The simulated preparation behind a device sampling the 4 pairs at ``fs_hz`` (see the module docstring).

    ``Earthworm(fs_hz=30000.0, seed=1, mgf_velocity_m_s=25.0)``: any :class:`WormParams` field may be given as
    a keyword. Device time t = sample index / fs_hz.
    """

    def __init__(self, fs_hz: float = FS_HZ, seed: int = 0, **params: Any):
        names = [f.name for f in dataclasses.fields(WormParams)]
        for key in params:
            if key not in names:
                hint = difflib.get_close_matches(key, names, n=1)
                raise ValueError(
                    f"Earthworm: unknown parameter {key!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f"; allowed: fs_hz, seed, {', '.join(names)}"
                )
        if not positive_float.test(fs_hz):
            raise bad_value("Earthworm", "fs_hz", fs_hz, "a number > 0")
        if not (is_integer(seed) and seed >= 0):
            raise bad_value("Earthworm", "seed", seed, "an integer >= 0")
        p = WormParams(**params)
        if p.mains_hz >= fs_hz / 2:
            raise bad_value(
                "WormParams", "mains_hz", p.mains_hz, f"below the Nyquist frequency fs_hz / 2 = {fs_hz / 2}"
            )
        self.params, self.fs_hz, self.seed = p, float(fs_hz), int(seed)
        pos = np.asarray(p.pair_positions_mm, dtype=float)
        self._pos = pos
        self._electrodes = np.stack([pos - p.pair_spacing_mm / 2, pos + p.pair_spacing_mm / 2], axis=1)
        self._velocity = {"MGF": p.mgf_velocity_m_s, "LGF": p.lgf_velocity_m_s}
        self._spike_uv = {"MGF": p.mgf_spike_uv, "LGF": p.lgf_spike_uv}
        self._spont_origin = {"MGF": -p.stim_site_mm, "LGF": p.body_length_mm - p.stim_site_mm}
        self._body = Body(p)
        self._artefact_gain = p.artefact_uv_per_v * np.exp(-pos / p.artefact_length_mm)
        hum_phase = repro.rng(self.seed, _HUM).uniform(0, 2 * np.pi, len(pos))
        self._hum_sin_cos = p.mains_uv * np.stack([np.cos(hum_phase), np.sin(hum_phase)])
        self._adc_gain = 1.0 + p.readback_gain_sd * repro.rng(self.seed, _ADC).standard_normal(2)
        # longest time from a spike's start to the end of its last waveform term (any origin, any pair)
        slowest = min(self._velocity.values())
        self._spike_reach_s = (
            p.body_length_mm / slowest / 1e3
            + 1e-3 * p.muscle_delay_ms
            + 1e-3 * (3 + _SPIKE_SUPPORT) / 6 * max(p.muscle_width_ms, p.spike_width_ms)
        )
        # a spike's first waveform term can start up to 5 σ before the spike itself (electrode at its origin)
        self._spike_lead_s = 1e-3 * _SPIKE_SUPPORT / 6 * p.spike_width_ms
        self._pulses: list[_Pulse] = []
        self._pulse_starts: list[tuple[int, int]] = []  # (first sample, pulse number), sorted
        self._pulse_span = 0  # longest pulse effect, samples
        self._noise_cache: dict[int, np.ndarray] = {}
        self._spont_cache: dict[int, tuple[list, _Rows]] = {}
        self._acquired_end = 0

    # ---- geometry and thresholds -------------------------------------------------------------------

    @property
    def electrode_positions_mm(self) -> np.ndarray:
        """Centre of each differential pair, mm from the stimulation site (increasing)."""
        return self._pos.copy()

    @property
    def zone_centres_mm(self) -> np.ndarray:
        """Centre of each body zone, mm from the stimulation site (negative = towards the head)."""
        return self._body.zone_x.copy()

    def threshold_vpp(self, fibre: str, period_ms: float) -> float:
        """Nominal (jitter-free) threshold of ``fibre`` in stimulus V_pp: 2 Rb (1 + c / (T / 2))."""
        p = self.params
        if fibre == "MGF":
            rb, c = p.mgf_rheobase_v, p.mgf_chronaxie_ms
        elif fibre == "LGF":
            rb, c = p.lgf_rheobase_v, p.lgf_chronaxie_ms
        else:
            raise ValueError(f"bad fibre {fibre!r}; allowed: {', '.join(FIBRES)}")
        return 2.0 * strength_duration_threshold(rb, c, period_ms / 2.0)

    def muscle_drive(self, vpp: float) -> float:
        """Graded muscle drive D(V_pp) in (0, 1): logistic around ``muscle_half_vpp``."""
        p = self.params
        return float(1.0 / (1.0 + np.exp(-(vpp - p.muscle_half_vpp) / p.muscle_slope_vpp)))

    # ---- stimulation -------------------------------------------------------------------------------

    def deliver(self, t_s: float, vpp: float, period_ms: float) -> dict:
        """One bipolar sine cycle starting at device time ``t_s``; returns the read-back and the fibres fired."""
        for name, value, ok, allowed in (
            ("t_s", t_s, is_real(t_s) and t_s >= 0, "a number >= 0"),
            ("vpp", vpp, is_real(vpp) and vpp >= 0, "a number >= 0"),
            ("period_ms", period_ms, positive_float.test(period_ms), "a number > 0"),
        ):
            if not (ok and math.isfinite(value)):
                raise bad_value("deliver", name, value, f"{allowed} (finite)")
        first = math.ceil(t_s * self.fs_hz - _TOL)
        if first < self._acquired_end:
            raise ValueError(
                f"deliver: t_s={t_s!r} s (sample {first}) is before the end of the samples already "
                f"acquired (index {self._acquired_end}); deliver() must come before the samples "
                "it affects"
            )
        p, index = self.params, len(self._pulses)
        g = repro.rng(self.seed, _PULSE, index)
        z = g.standard_normal(len(FIBRES))
        noise_v, noise_t = g.standard_normal(2)
        thresholds = {
            f: self.threshold_vpp(f, period_ms) * (1.0 + p.threshold_jitter_cv * z[i]) for i, f in enumerate(FIBRES)
        }
        fired = tuple(f for f in FIBRES if vpp > 0 and vpp >= thresholds[f])
        drive = self.muscle_drive(vpp) if fired else 0.0
        period_s = period_ms / 1e3
        spikes = []
        for f in fired:
            t0 = t_s + period_s / (2 * np.pi) * math.asin(thresholds[f] / vpp)
            spikes.append(self._spike_event(f, t0, 0.0, "evoked", index, drive))
        rows = self._spike_rows(spikes, first)
        artefact_end = math.ceil((t_s + period_s) * self.fs_hz - _TOL)
        end = max(artefact_end, int(rows.hi.max())) if len(rows.hi) else artefact_end
        measured = {
            "vpp_measured": max(0.0, float(vpp * self._adc_gain[0] + p.readback_vpp_noise_v * noise_v)),
            "period_ms_measured": float(period_ms * self._adc_gain[1] + p.readback_period_noise_ms * noise_t),
            "fibres": fired,
        }
        event = {
            "kind": "pulse",
            "pulse_index": index,
            "t_s": float(t_s),
            "vpp": float(vpp),
            "period_ms": float(period_ms),
            **measured,
            "thresholds_vpp": {f: float(v) for f, v in thresholds.items()},
            "muscle_drive": drive,
        }
        self._pulses.append(
            _Pulse(float(t_s), float(vpp), float(period_ms), first, rows, end, artefact_end, event, spikes)
        )
        bisect.insort(self._pulse_starts, (first, index))
        self._pulse_span = max(self._pulse_span, end - first)
        return dict(measured)

    def abort(self, t_s: float) -> None:
        """Cut the pulse in progress off at device time ``t_s`` (see the module docstring): the artefact ends there
        and the fibres that had not fired yet do not fire. Like :meth:`deliver`, it must come before the samples
        it affects."""
        pulse = self._pulses[-1] if self._pulses else None
        if pulse is None or not (math.isfinite(t_s) and pulse.t_s <= t_s < pulse.t_s + pulse.period_ms / 1e3):
            raise bad_value("abort", "t_s", t_s, "a time during the last pulse delivered")
        cut = math.ceil(t_s * self.fs_hz - _TOL)
        if cut < self._acquired_end:
            raise ValueError(
                f"abort: t_s={t_s!r} s (sample {cut}) is before the end of the samples already acquired "
                f"(index {self._acquired_end})"
            )
        pulse.spikes = [s for s in pulse.spikes if s["t_s"] < t_s]
        pulse.rows = self._spike_rows(pulse.spikes, pulse.first)
        pulse.artefact_end = min(pulse.artefact_end, cut)
        fired = tuple(s["fibre"] for s in pulse.spikes)
        pulse.event.update(
            fibres=fired,
            delivered_ms=(t_s - pulse.t_s) * 1e3,
            muscle_drive=pulse.event["muscle_drive"] if fired else 0.0,
        )

    def _spike_event(self, fibre: str, t0: float, origin_mm: float, cause: str, pulse_index, drive: float) -> dict:
        v_mm_s = self._velocity[fibre] * 1e3
        return {
            "kind": "spike",
            "fibre": fibre,
            "cause": cause,
            "pulse_index": pulse_index,
            "t_s": float(t0),
            "origin_mm": float(origin_mm),
            "velocity_m_s": self._velocity[fibre],
            "amplitude_uv": self._spike_uv[fibre],
            "drive": float(drive),
            "arrival_s": [float(t0 + abs(x - origin_mm) / v_mm_s) for x in self._pos],
        }

    def _spike_rows(self, spikes: list[dict], first: int) -> _Rows:
        """Waveform terms of ``spikes`` (two electrode copies per pair, then one muscle potential per pair)."""
        p, fs, n = self.params, self.fs_hz, len(self._pos)
        pair, centre, sigma, amp = [], [], [], []
        sig_spike, sig_muscle = p.spike_width_ms / 6e3, p.muscle_width_ms / 6e3
        for s in spikes:
            v_mm_s = self._velocity[s["fibre"]] * 1e3
            arrive = s["t_s"] + np.abs(self._electrodes - s["origin_mm"]) / v_mm_s  # (n, 2)
            pair += [np.arange(n), np.arange(n)]
            centre += [arrive[:, 0], arrive[:, 1]]
            sigma.append(np.full(2 * n, sig_spike))
            amp += [np.full(n, s["amplitude_uv"]), np.full(n, -s["amplitude_uv"])]
        if spikes and p.muscle_max_uv > 0:
            first_arrival = np.min([s["arrival_s"] for s in spikes], axis=0)
            pair.append(np.arange(n))
            centre.append(first_arrival + 1e-3 * p.muscle_delay_ms + 3 * sig_muscle)
            sigma.append(np.full(n, sig_muscle))
            amp.append(np.full(n, p.muscle_max_uv * spikes[0]["drive"]))
        if not pair:
            return _Rows.concat([])
        centre_a, sigma_a = np.concatenate(centre), np.concatenate(sigma)
        lo = np.maximum(np.ceil((centre_a - _SPIKE_SUPPORT * sigma_a) * fs).astype(int), first)
        hi = np.floor((centre_a + _SPIKE_SUPPORT * sigma_a) * fs).astype(int) + 1
        return _Rows(np.concatenate(pair), centre_a, sigma_a, np.concatenate(amp), lo, hi)

    # ---- spontaneous spikes ------------------------------------------------------------------------

    def _spontaneous(self, block: int) -> tuple[list, _Rows]:
        """Spontaneous spikes starting in sample block ``block`` and their waveform terms (cached)."""
        if block not in self._spont_cache:
            p = self.params
            g = repro.rng(self.seed, _SPONT, block)
            duration = BLOCK / self.fs_hz
            spikes = []
            for f in FIBRES:
                k = g.poisson(p.spontaneous_rate_hz * duration)
                for t0 in np.sort(block * duration + g.uniform(0, duration, k)):
                    spikes.append(self._spike_event(f, float(t0), self._spont_origin[f], "spontaneous", None, 1.0))
            spikes.sort(key=lambda s: s["t_s"])
            # one call per spike: each spontaneous spike has its own muscle potential
            self._spont_cache[block] = (spikes, _Rows.concat([self._spike_rows([s], 0) for s in spikes]))
        return self._spont_cache[block]

    def _spontaneous_blocks(self, t_lo: float, t_hi: float) -> range:
        """Blocks whose spontaneous spikes start in [t_lo, t_hi)."""
        duration = BLOCK / self.fs_hz
        return range(max(0, math.floor(t_lo / duration)), max(0, math.floor(t_hi / duration)) + 1)

    # ---- recording ---------------------------------------------------------------------------------

    def _noise(self, block: int) -> np.ndarray:
        if block not in self._noise_cache:
            if len(self._noise_cache) >= 4:
                self._noise_cache.pop(next(iter(self._noise_cache)))
            g = repro.rng(self.seed, _NOISE, block)
            self._noise_cache[block] = self.params.noise_uv * g.standard_normal((BLOCK, len(self._pos)))
        return self._noise_cache[block]

    def acquire(self, start_index: int, n: int) -> np.ndarray:
        """The 4 pairs in µV for device samples ``start_index`` .. ``start_index + n - 1``: float64 (n, 4)."""
        for name, value in (("start_index", start_index), ("n", n)):
            if not (is_integer(value) and value >= 0):
                raise bad_value("acquire", name, value, "an integer >= 0")
        i0, i1 = int(start_index), int(start_index) + int(n)
        out = np.empty((n, len(self._pos)))
        if n == 0:
            return out
        for b in range(i0 // BLOCK, -(-i1 // BLOCK)):
            lo, hi = max(i0, b * BLOCK), min(i1, (b + 1) * BLOCK)
            out[lo - i0 : hi - i0] = self._noise(b)[lo - b * BLOCK : hi - b * BLOCK]
        idx = np.arange(i0, i1, dtype=float)
        phase = 2 * np.pi * np.mod(idx * (self.params.mains_hz / self.fs_hz), 1.0)
        out += np.outer(np.sin(phase), self._hum_sin_cos[0]) + np.outer(np.cos(phase), self._hum_sin_cos[1])
        t0, t1 = i0 / self.fs_hz, i1 / self.fs_hz
        for b in self._spontaneous_blocks(t0 - self._spike_reach_s, t1 + self._spike_lead_s):
            self._add_rows(out, i0, i1, self._spontaneous(b)[1])
        lo = bisect.bisect_left(self._pulse_starts, (i0 - self._pulse_span, -1))
        hi = bisect.bisect_left(self._pulse_starts, (i1, -1))
        for index in sorted(k for _, k in self._pulse_starts[lo:hi]):  # same summation order for any chunking
            pulse = self._pulses[index]
            if pulse.end > i0:
                self._add_artefact(out, i0, i1, pulse)
                self._add_rows(out, i0, i1, pulse.rows)
        self._acquired_end = max(self._acquired_end, i1)
        return out

    def _add_rows(self, out: np.ndarray, i0: int, i1: int, rows: _Rows) -> None:
        lo, hi = np.maximum(rows.lo, i0), np.minimum(rows.hi, i1)
        for r in np.flatnonzero(hi > lo):
            u = (np.arange(lo[r], hi[r]) / self.fs_hz - rows.centre_s[r]) / rows.sigma_s[r]
            out[lo[r] - i0 : hi[r] - i0, rows.pair[r]] += rows.amp_uv[r] * _biphasic(u)

    def _add_artefact(self, out: np.ndarray, i0: int, i1: int, pulse: _Pulse) -> None:
        lo, hi = max(i0, pulse.first), min(i1, pulse.artefact_end)
        if hi > lo:
            shape = np.sin(2 * np.pi * (np.arange(lo, hi) / self.fs_hz - pulse.t_s) / (pulse.period_ms / 1e3))
            out[lo - i0 : hi - i0] += np.outer(shape, self._artefact_gain * pulse.vpp)

    # ---- ground truth ------------------------------------------------------------------------------

    def events(self, t_stop_s: float | None = None) -> list[dict]:
        """Ground truth sorted by time: every delivered pulse with its evoked spikes, and the spontaneous spikes
        starting before ``t_stop_s`` (default: the end of the samples acquired so far); one twitch per spike.

        Kinds: ``pulse`` (request, read-back, jittered thresholds, fibres, muscle drive), ``spike`` (fibre,
        cause evoked/spontaneous, start time and origin, ``arrival_s`` at each pair centre) and ``twitch``
        (``onset_s`` per body zone, peak ``strain``).
        """
        if t_stop_s is None:
            t_stop_s = self._acquired_end / self.fs_hz
        out = []
        for pulse in self._pulses:
            out.append(dict(pulse.event, thresholds_vpp=dict(pulse.event["thresholds_vpp"])))
            out += [dict(s, arrival_s=list(s["arrival_s"])) for s in pulse.spikes]
        for b in self._spontaneous_blocks(0.0, t_stop_s):
            out += [dict(s, arrival_s=list(s["arrival_s"])) for s in self._spontaneous(b)[0] if s["t_s"] < t_stop_s]
        out += [self._body.twitch(s) for s in out if s["kind"] == "spike"]
        out.sort(key=lambda e: e["t_s"])
        return out

    def segment_strain(self, times_s) -> np.ndarray:
        """Ground-truth longitudinal strain of each body zone at ``times_s``: (len(times_s), n_zones), < 0 = shorter."""
        return self._body.strain(times_s, self._spikes_between)

    def _spikes_between(self, t_lo: float, t_hi: float) -> list[dict]:
        """Every spike starting in [t_lo, t_hi]: the evoked ones by pulse, then the spontaneous ones by block."""
        spikes = [s for pulse in self._pulses for s in pulse.spikes if t_lo <= s["t_s"] <= t_hi]
        for b in self._spontaneous_blocks(t_lo, t_hi):
            spikes += [s for s in self._spontaneous(b)[0] if t_lo <= s["t_s"] <= t_hi]
        return spikes
