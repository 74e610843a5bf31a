"""Every number of the simulated earthworm preparation (:class:`WormParams`), next to its source.

The model that uses them is labkit.rig.simulator.worm (its docstring gives the equations). Sources: the abstract
(Pai (mentor Ludwig), arXiv 2112.01650) for the raceway, electrodes and stimulus, and the papers cited next to each
number; *unsourced* marks a physiology figure from the literature whose primary source is not recorded here (check
before quoting); anything marked *assumed* has no sourced figure and was chosen to look like a teaching-lab recording.
Every field is checked when a WormParams is made (ValueError naming the field and what it allows).
"""

import dataclasses
from dataclasses import dataclass

from labkit.config import Check, param, positive_float, positive_int
from labkit.rig._checks import bad_value, is_real

__all__ = ["WormParams"]

_non_negative = Check(lambda v: is_real(v) and v >= 0, "a number >= 0")
_fraction = Check(lambda v: is_real(v) and 0 <= v < 1, "a number in [0, 1)")
_positive_floats = Check(
    lambda v: isinstance(v, (tuple, list)) and len(v) >= 1 and all(positive_float.test(x) for x in v),
    "a non-empty list of numbers > 0",
)


@dataclass(frozen=True)
class WormParams:
    """Every number of the simulated preparation. Sources in the comments ("unsourced", "assumed": module docstring)."""

    # conduction velocities: MGF 20-30 m/s (intact awake worms, mean 30.2 m/s, Bähring & Bauer 2014), LGF 10-15 m/s
    # (unsourced; class data 14.96 ± 0.70 m/s, dissected cord); defaults are the ranges' midpoints
    mgf_velocity_m_s: float = param(25.0, positive_float)
    lgf_velocity_m_s: float = param(12.5, positive_float)
    # strength-duration thresholds (phase-peak volts, ms), unsourced: intact worm MGF Rb ≈ 1.0 V, c ≈ 0.06 ms;
    # dissected cord MGF Rb 0.41-0.55 V, c 0.27-0.45 ms, LGF Rb 0.54-0.70 V, c 0.39-0.50 ms. Intact LGF values
    # assumed: intact MGF × the dissected LGF/MGF ratio of midpoints (Rb 0.62/0.48 ≈ 1.3, c 0.445/0.36 ≈ 1.25)
    mgf_rheobase_v: float = param(1.0, positive_float)
    mgf_chronaxie_ms: float = param(0.06, positive_float)
    lgf_rheobase_v: float = param(1.3, positive_float)
    lgf_chronaxie_ms: float = param(0.075, positive_float)
    threshold_jitter_cv: float = param(0.02, _fraction)  # assumed: small trial-to-trial jitter
    # extracellular spikes, unsourced: tens to ~100 µV through the skin, 0.5-1 ms wide (width = 6 σ here);
    # the MGF, the thicker fibre, is given the larger spike (assumed)
    mgf_spike_uv: float = param(80.0, _non_negative)
    lgf_spike_uv: float = param(50.0, _non_negative)
    spike_width_ms: float = param(0.8, positive_float)
    # geometry (mm): L. terrestris 110-200 mm, 120-170 segments of ~1 mm (unsourced; a zone = ~5 segments);
    # 4 recording pairs (the abstract); 10 mm electrode spacing (0.33 ms at 30 m/s), stimulation site and pair
    # positions assumed
    body_length_mm: float = param(150.0, positive_float)
    n_zones: int = param(30, positive_int)
    stim_site_mm: float = param(10.0, positive_float)  # stimulating pair under the head, from the tip
    pair_positions_mm: tuple = param((20.0, 35.0, 50.0, 65.0), _positive_floats)
    pair_spacing_mm: float = param(10.0, positive_float)
    # stimulus artefact: linear in voltage, overlaps early arrivals, far pairs cleaner (unsourced); numbers assumed
    artefact_uv_per_v: float = param(1000.0, _non_negative)  # µV per V_pp at x = 0
    artefact_length_mm: float = param(15.0, positive_float)
    # muscle potentials: grow gradually with voltage (unsourced); shape and numbers assumed
    muscle_max_uv: float = param(40.0, _non_negative)
    muscle_half_vpp: float = param(4.0, positive_float)
    muscle_slope_vpp: float = param(0.8, positive_float)
    muscle_delay_ms: float = param(2.0, _non_negative)  # onset after the giant spike passes the pair
    muscle_width_ms: float = param(8.0, positive_float)
    # noise (assumed): rms white noise and residual mains hum per pair; 50 Hz mains (60 Hz in the Americas)
    noise_uv: float = param(5.0, _non_negative)
    mains_hz: float = param(50.0, positive_float)
    mains_uv: float = param(10.0, _non_negative)
    spontaneous_rate_hz: float = param(0.02, _non_negative)  # assumed: low Poisson rate, per fibre
    # twitches, all assumed: spike -> visible shortening "tens of ms" (no sourced figure)
    twitch_delay_ms: float = param(30.0, _non_negative)
    twitch_tau_ms: float = param(40.0, positive_float)  # time to peak shortening
    twitch_strain: float = param(0.1, _fraction)  # peak shortening per spike at full drive
    # stimulator read-back by an onboard ADC (as in Stimjim, Cermak et al. 2019): gain error fixed per worm (one for
    # V_pp, one for T) plus noise per pulse; numbers assumed
    readback_gain_sd: float = param(0.005, _fraction)
    readback_vpp_noise_v: float = param(0.01, _non_negative)
    readback_period_noise_ms: float = param(0.002, _non_negative)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            if not f.metadata["check"].test(value):
                raise bad_value("WormParams", f.name, value, f.metadata["check"].allowed)
        pos = self.pair_positions_mm
        if any(b <= a for a, b in zip(pos, pos[1:])):
            raise bad_value("WormParams", "pair_positions_mm", pos, "strictly increasing positions")
        if pos[0] - self.pair_spacing_mm / 2 <= 0:
            raise bad_value(
                "WormParams",
                "pair_positions_mm",
                pos,
                "first pair's front electrode behind the "
                f"stimulation site (> pair_spacing_mm / 2 = {self.pair_spacing_mm / 2} mm)",
            )
        room = self.body_length_mm - self.stim_site_mm
        if pos[-1] + self.pair_spacing_mm / 2 > room:
            raise bad_value(
                "WormParams",
                "pair_positions_mm",
                pos,
                "electrodes on the body (<= body_length_mm - "
                f"stim_site_mm - pair_spacing_mm / 2 = {room - self.pair_spacing_mm / 2} mm)",
            )
