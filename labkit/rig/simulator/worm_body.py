"""The simulated earthworm's body: the twitch every giant spike causes and the strain of the body zones.

The body (``body_length_mm``, ``n_zones`` equal zones of several ~1 mm segments) shortens after every giant spike:
zone j's longitudinal strain gets -ε_max D α((t - t_j) / τ), α(u) = u e^(1-u) for u > 0, with t_j = spike arrival at
the zone centre + ``twitch_delay_ms`` ("tens of ms", assumed — no sourced figure). Twitches add linearly. No
refractoriness is modelled (the rig pulses at 1 Hz).

Every number is a field of :class:`labkit.rig.simulator.worm_params.WormParams`. The spikes (start, origin, velocity,
muscle drive D) come from the giant fibres of :class:`labkit.rig.simulator.worm.Earthworm`, which holds one
:class:`Body` and answers ``segment_strain`` and the ``twitch`` events through it.
"""

from collections.abc import Callable

import numpy as np

from labkit.rig.simulator.worm_params import WormParams

__all__ = ["Body"]

_TWITCH_SUPPORT = 20.0  # twitch kernel evaluated over 0..20 τ (α < 1e-7 beyond)


class Body:
    """The ``n_zones`` body zones of a worm with ``params``; the spikes are the worm's spike events (dicts with
    ``t_s``, ``origin_mm``, ``velocity_m_s``, ``drive``)."""

    def __init__(self, params: WormParams):
        p = params
        self.params = p
        self.zone_x = (np.arange(p.n_zones) + 0.5) * p.body_length_mm / p.n_zones - p.stim_site_mm
        slowest = min(p.mgf_velocity_m_s, p.lgf_velocity_m_s)
        # longest time from a spike's start to the end of its last zone's twitch
        self.reach_s = p.body_length_mm / slowest / 1e3 + 1e-3 * (p.twitch_delay_ms + _TWITCH_SUPPORT * p.twitch_tau_ms)

    def onsets(self, spike: dict) -> np.ndarray:
        """t_j per zone: the spike's arrival at the zone centre + ``twitch_delay_ms``."""
        v_mm_s = spike["velocity_m_s"] * 1e3
        return spike["t_s"] + np.abs(self.zone_x - spike["origin_mm"]) / v_mm_s + self.params.twitch_delay_ms / 1e3

    def twitch(self, spike: dict) -> dict:
        """The ground-truth ``twitch`` event of ``spike``: ``onset_s`` per body zone, peak ``strain``."""
        onset = self.onsets(spike)
        return {
            "kind": "twitch",
            "fibre": spike["fibre"],
            "cause": spike["cause"],
            "pulse_index": spike["pulse_index"],
            "t_s": float(onset.min()),
            "strain": -self.params.twitch_strain * spike["drive"],
            "onset_s": onset.tolist(),
        }

    def strain(self, times_s, spikes_between: Callable[[float, float], list]) -> np.ndarray:
        """Longitudinal strain of each zone at ``times_s``: (len(times_s), n_zones), < 0 = shorter; the twitches of
        the spikes ``spikes_between(t_lo, t_hi)`` returns (those starting in [t_lo, t_hi])."""
        times = np.asarray(times_s, dtype=float).ravel()
        out = np.zeros((len(times), self.params.n_zones))
        if not len(times):
            return out
        order = np.argsort(times, kind="stable")
        sorted_t = times[order]
        spikes = spikes_between(sorted_t[0] - self.reach_s, sorted_t[-1])
        tau = self.params.twitch_tau_ms / 1e3
        for s in spikes:
            onset = self.onsets(s)
            a, b = np.searchsorted(sorted_t, [onset.min(), onset.max() + _TWITCH_SUPPORT * tau])
            if b <= a:
                continue
            u = np.maximum((sorted_t[a:b, None] - onset[None, :]) / tau, 0.0)
            out[order[a:b]] -= self.params.twitch_strain * s["drive"] * u * np.exp(1.0 - u)
        return out
