"""Blind validation of 05a's analysis: recordings the analysis code was not tuned on, with known answers.

05a's own session runs the simulator at its default worm, so recovering that worm's velocity checks the analysis
against the very model it was developed with. Here the same analysis meets recordings it has not seen:

- *random simulated worms* (:func:`random_worms`): every number the velocity estimate depends on is drawn at random
  from wide ranges (:data:`WORM_RANGES`: conduction velocities, spike size and width, artefact size and reach,
  noise) by a seed fixed before the reported run; each worm gets 05a's own pulse schedule, its recording is built
  directly from ``labkit.rig.simulator.worm.Earthworm`` (the link is not under test) and analysed by
  ``labkit.rig.analysis.sweep.spike_analysis``, 05a's code path;
- *recordings built without the simulator* (``labkit.rig.simulator.synthetic``: another artefact shape, random
  artefact scale and polarity per trial, other pair positions), analysed by
  ``labkit.rig.analysis.propagation.conduction_velocity`` with its default arguments (automatic artefact removal:
  these recordings have no template pulses). Drawn parameters: :data:`SYNTHETIC_RANGES`.

Seeds: everything random about case i of a check with seed s comes from the substream ``repro.rng(s, i)``: first
its parameters, then the seed of its worm or recording (:func:`case`).

An estimate is *recovered* when within ``tolerance`` (relative) of the truth, *refused* when the analysis raises
(no velocity, or an implausible one, with its diagnostics), and *wrong* otherwise: a number that is off.
"""

import numpy as np
from tqdm.auto import tqdm

from labkit import repro
from labkit.rig.analysis.propagation import conduction_velocity
from labkit.rig.analysis.sweep import spike_analysis
from labkit.rig.simulator import synthetic
from labkit.rig.simulator.worm import Earthworm

__all__ = [
    "WORM_RANGES",
    "SYNTHETIC_RANGES",
    "case",
    "random_worms",
    "simulated_recording",
    "simulator_check",
    "synthetic_check",
    "verdict",
]

#: uniform ranges of the random worms' parameters (labkit.rig.simulator.worm_params.WormParams fields), around and
#: beyond the defaults the analysis was developed on (MGF 25 m/s, LGF 12.5 m/s, 80 µV spikes 0.8 ms wide, 1 mV/V
#: artefact reaching 15 mm, 5 µV noise)
WORM_RANGES = {
    "mgf_velocity_m_s": (18.0, 32.0),
    "lgf_velocity_m_s": (9.0, 14.0),
    "mgf_spike_uv": (30.0, 120.0),
    "lgf_spike_uv": (20.0, 80.0),
    "spike_width_ms": (0.6, 1.0),
    "artefact_uv_per_v": (400.0, 2500.0),
    "artefact_length_mm": (8.0, 25.0),
    "noise_uv": (2.0, 15.0),
}
#: uniform ranges of ``labkit.rig.simulator.synthetic.record``'s arguments
SYNTHETIC_RANGES = {
    "velocity_m_s": (8.0, 32.0),
    "tau_ms": (0.3, 1.0),
    "noise_uv": (2.0, 15.0),
    "artefact_uv": (1000.0, 6000.0),
    "spike_uv": (30.0, 110.0),
    "width_ms": (0.5, 0.9),
}


def case(ranges: dict, seed: int, i: int) -> tuple[dict, int]:
    """Case ``i`` of a check with ``seed``: its parameters, uniform within ``ranges``, and its own seed (an int for a
    worm or a recording), both drawn in that order from the substream ``repro.rng(seed, i)``."""
    g = repro.rng(seed, i)
    params = {k: float(g.uniform(lo, hi)) for k, (lo, hi) in ranges.items()}
    return params, int(g.integers(2**31))


def random_worms(n: int, seed: int) -> list[dict]:
    """``n`` parameter sets of :data:`WORM_RANGES` (those of :func:`case` 0 .. n - 1)."""
    return [case(WORM_RANGES, seed, i)[0] for i in range(n)]


def simulated_recording(worm: Earthworm, plan, tail_s: float) -> dict:
    """Deliver ``plan`` ((onset µs, V_pp, period ms) as ``labkit.rig.experiments.mapping.schedule``) to ``worm`` and
    acquire every sample to the last onset + ``tail_s``: the keyword arguments of :func:`spike_analysis` but ``cfg``."""
    read_back = [worm.deliver(at_us / 1e6, vpp, period) for at_us, vpp, period in plan]
    n = int(round((plan[-1][0] / 1e6 + tail_s) * worm.fs_hz))
    return {
        "samples_uv": worm.acquire(0, n),
        "fs": worm.fs_hz,
        "positions_mm": worm.electrode_positions_mm,
        "stim_s": np.array([at_us / 1e6 for at_us, _, _ in plan]),
        "vpp": np.array([v for _, v, _ in plan]),
        "vpp_measured": np.array([r["vpp_measured"] for r in read_back]),
        "period_ms": np.array([p for _, _, p in plan]),
        "period_ms_measured": np.array([r["period_ms_measured"] for r in read_back]),
    }


def verdict(estimate: float, truth: float, tolerance: float) -> str:
    """``"recovered"``, ``"wrong"`` or, for a NaN estimate, ``"refused"``."""
    if not np.isfinite(estimate):
        return "refused"
    return "recovered" if abs(estimate - truth) <= tolerance * truth else "wrong"


def simulator_check(cfg, plan, n: int, seed: int) -> list[dict]:
    """05a's analysis (:func:`spike_analysis`, the median first-spike velocity of the sweep trials) on ``n`` random
    worms given the pulse ``plan`` (05a's: ``labkit.rig.experiments.mapping.schedule(cfg)``; ``cfg``: a
    ``MappingConfig``). One dict per worm: its parameters, the estimate, the truth (MGF velocity) and the verdict at
    ``cfg.velocity_tolerance``."""
    out = []
    for params, worm_seed in tqdm([case(WORM_RANGES, seed, i) for i in range(n)], desc="random worms"):
        worm = Earthworm(fs_hz=cfg.fs_hz, seed=worm_seed, **params)
        try:
            r = spike_analysis(**simulated_recording(worm, plan, cfg.tail_s), cfg=cfg)
            v = r["velocity_m_s"][r["sweep"]]
            estimate = float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")
        except ValueError:
            estimate = float("nan")
        truth = params["mgf_velocity_m_s"]
        out.append(
            {
                **params,
                "estimate_m_s": estimate,
                "truth_m_s": truth,
                "verdict": verdict(estimate, truth, cfg.velocity_tolerance),
            }
        )
    return out


def synthetic_check(n: int, seed: int, tolerance: float) -> list[dict]:
    """:func:`conduction_velocity` (default arguments) on ``n`` recordings of ``labkit.rig.simulator.synthetic.record``
    with parameters drawn from :data:`SYNTHETIC_RANGES`; one dict each, with the verdict at ``tolerance``."""
    out = []
    for params, record_seed in tqdm([case(SYNTHETIC_RANGES, seed, i) for i in range(n)], desc="synthetic"):
        truth = params["velocity_m_s"]
        x, stim, _ = synthetic.record(**params, seed=record_seed)
        try:
            estimate = float(conduction_velocity(x, synthetic.FS, synthetic.POS, stim))
        except ValueError:  # no velocity, or ImplausibleVelocityError
            estimate = float("nan")
        out.append(
            {**params, "estimate_m_s": estimate, "truth_m_s": truth, "verdict": verdict(estimate, truth, tolerance)}
        )
    return out
