"""The mapping session of notebook 05a: a voltage × pulse-period sweep through the real driver, written to NWB,
then analysed from that file alone.

Session (:func:`run_session`)
    ``Rig("rigsim://?seed=…")`` — the host driver, the COBS/CRC link, the device firmware logic and the simulated
    worm, all real — configures 4 pairs at ``fs_hz``, records a session folder, arms, and delivers every pulse of
    :func:`schedule`: each (V_pp, period) of the sweep ``repeats`` times plus sub-threshold *template* pulses at
    ``template_vpp`` (ours: for the artefact template, labkit.rig.analysis.sweep), in a seeded random order, about
    ``rate_hz`` pulses per second with intervals jittered by ± ``interval_jitter`` (ours: irregular intervals make
    the LED sync unambiguous). The simulated camera films the session (``SimulatedRig.render_video``, LED lit at
    each pulse); the video is tracked (labkit.rig.analysis.tracking, frames timed by the LED) and the session
    folder, the tracked strain and the video go into one NWB file, which is validated.

Determinism
    A real-time session is not sample-exact (onsets move by ~1 ms from run to run), while everything else about the
    simulated worm is a function of (seed, absolute sample index, pulse onset, pulse number). So the session gives
    the simulator a labkit.rig.simulator.holding_clock.HoldingClock, which holds device time at every scheduled
    onset until the device has taken that pulse: every pulse starts exactly at its scheduled device time (on the
    sample grid), whatever the load. The analysis uses only epochs around pulses (absolute sample indices) and the
    video (whose frame times are fixed), never the recording's first sample, so figures and claims depend on the
    seed only. ``speed`` (device time per real time) > 1 is faster than real time.

Analysis (:func:`analyse`) reads the NWB file and runs labkit.rig.analysis.sweep on it: stimulus-locked epochs,
artefact template per period from the template pulses (scaled by the measured V_pp), band-pass, first-spike arrival
times and per-trial velocities,
fibre identity (also of the next spike after the first, on the 3 far pairs: the LGF when recruited),
recruitment (spikes on the farthest pair), compound response amplitude (peak-to-peak of the
artefact-free 20–5000 Hz signal over 0–20 ms, mean over pairs — ours: it contains the giant spikes and the
muscle potentials, both of which grow with voltage: the abstract, Pai (mentor Ludwig), arXiv 2112.01650, reports it
for the action potentials, and labkit.rig.simulator.worm assumes it for the muscle potentials), the tracked strain
around every
pulse and the shortening per trial (−min of the mean strain 0–0.5 s after the pulse, minus its pre-pulse mean).

:class:`MappingConfig` (end of the module) holds every number of the notebook.
"""

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pynwb import NWBHDF5IO
from scipy import stats
from tqdm.auto import tqdm

from labkit import repro
from labkit.config import Check, ConfigError, NotebookConfig, fraction, param, positive_float, positive_int, tuple_of
from labkit.rig.analysis.epochs import BAND_HZ, WINDOW_MS
from labkit.rig.analysis.response import dose_response
from labkit.rig.analysis.spikes import DEAD_MS, THRESHOLD_K
from labkit.rig.analysis.sweep import spike_analysis
from labkit.rig.analysis.tracking import SegmentTracker, read_frames, track_video
from labkit.rig.firmware.limits import SafetyLimits
from labkit.rig.host.driver import Rig
from labkit.rig.host.nwb import session_to_nwb, validate_nwb
from labkit.rig.simulator.holding_clock import HoldingClock
from labkit.rig.simulator.worm_params import WormParams

__all__ = [
    "schedule",
    "run_session",
    "load_nwb",
    "analyse",
    "summarise",
    "example_trial",
    "kymograph",
    "MappingConfig",
]


def schedule(cfg: "MappingConfig") -> list[tuple[int, float, float]]:
    """(onset µs on the device clock, V_pp, period ms) of every pulse, in delivery order (seeded)."""
    trials = [(v, p) for _ in range(cfg.repeats) for v in cfg.vpp_values for p in cfg.period_values_ms]
    trials += [(cfg.template_vpp, p) for _ in range(cfg.template_repeats) for p in cfg.period_values_ms]
    g = repro.rng(cfg.seed, 1)
    order = g.permutation(len(trials))
    gaps = (1 + cfg.interval_jitter * g.uniform(-1, 1, len(trials))) / cfg.rate_hz
    block_us = 10_000  # onsets on a 10 ms grid: whole samples at any listed fs
    onsets = cfg.first_pulse_s + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    return [
        (int(round(t * 1e6 / block_us)) * block_us, float(trials[i][0]), float(trials[i][1]))
        for t, i in zip(onsets, order)
    ]


def run_session(cfg: "MappingConfig", folder) -> dict:
    """Run the mapping session into ``folder`` (replaced): session/, video.avi, session.nwb. Returns their paths,
    the NWB validation errors (empty = valid), the link counters and the wall time."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    plan = schedule(cfg)
    url = (
        f"rigsim://?seed={cfg.seed}&fs={cfg.fs_hz:g}&mgf_velocity_m_s={cfg.mgf_velocity_m_s}"
        f"&lgf_velocity_m_s={cfg.lgf_velocity_m_s}"
    )
    t_stop_s = plan[-1][0] / 1e6 + cfg.tail_s
    wall = time.perf_counter()
    with Rig(url, session_root=folder) as rig:
        sim = rig.serial.sim
        clock = HoldingClock(sim, cfg.speed)
        sim.set_clock(clock)
        rig.configure(sample_rate=cfg.fs_hz, channels=4)
        with rig.record(folder / "session"):
            for k, (at_us, _, _) in enumerate(plan):
                clock.hold(at_us, k + 1)
            clock.hold(int(t_stop_s * 1e6), len(plan) + 1)  # never released: the recording ends there
            rig.arm()
            for k, (_, vpp, period) in enumerate(tqdm(plan, desc="pulses", mininterval=5)):
                clock.wait(k + 1, timeout_s=60.0)
                rig.stimulate(vpp=vpp, period_ms=period)
            clock.wait(len(plan) + 1, timeout_s=60.0)
            rig.disarm()
        counters = rig.counters
        video = sim.render_video(folder / "video.avi", cfg.first_pulse_s - 0.5, t_stop_s, fps=cfg.fps, seed=cfg.seed)
    tracking = track_video(video["file"], pulse_times_s=[t / 1e6 for t, _, _ in plan])
    rest = np.nanmedian(tracking.lengths_px, axis=0)
    mm_per_px = cfg.body_length_mm / rest.sum()  # ours: the body length measured with a ruler
    zone_mm = (np.cumsum(rest) - rest / 2) * mm_per_px - cfg.stim_site_mm
    nwb = session_to_nwb(
        folder / "session",
        folder / "session.nwb",
        video={"file": video["file"], "frame_times_s": tracking.frame_times_s},
        motion={
            "frame_times_s": tracking.frame_times_s,
            "values": tracking.strain,
            "zone_positions_mm": zone_mm,
            "unit": "strain",
            "description": "longitudinal strain L/L_rest - 1 of each body zone, tracked from the video "
            "(labkit.rig.analysis.tracking); NaN where a frame was not usable",
        },
    )
    return {
        "folder": folder,
        "nwb": nwb,
        "video": Path(video["file"]),
        "errors": validate_nwb(nwb),
        "counters": counters,
        "n_pulses": len(plan),
        "device_s": t_stop_s,
        "wall_s": time.perf_counter() - wall,
        "sync_residual_s": tracking.sync_residual_s,
    }


def load_nwb(path) -> dict:
    """The parts of a rig NWB file the analysis needs, as arrays (µV, s on the device clock)."""
    with NWBHDF5IO(str(path), "r") as io:
        f = io.read()
        es = f.acquisition["recording"]
        pulses = f.intervals["delivered_pulses"].to_dataframe()
        motion = f.processing["behavior"]["BehavioralTimeSeries"]["segment_motion"]
        return {
            "samples_uv": es.data[:].astype(float) * es.conversion * 1e6,
            "fs": float(es.rate),
            "t0_s": float(es.starting_time),
            "positions_mm": np.asarray(f.electrodes["position_mm"].data[:], dtype=float),
            "pulse_t_s": pulses["t_start_s"].to_numpy(),
            "vpp": pulses["vpp_requested"].to_numpy(),
            "vpp_measured": pulses["vpp_measured"].to_numpy(),
            "period_ms": pulses["period_ms_requested"].to_numpy(),
            "period_ms_measured": pulses["period_ms_measured"].to_numpy(),
            "motion_t_s": np.asarray(motion.timestamps[:]),
            "strain": np.asarray(motion.data[:], dtype=float),
            "zone_mm": np.asarray(f.processing["behavior"]["segment_motion_zones"]["position_mm"].data[:]),
            "video": Path(path).parent / f.acquisition["video"].external_file[0],
            "gaps": f.invalid_times.to_dataframe() if f.invalid_times is not None else None,
        }


def _strain_epochs(t_s, strain, onsets_s, lags_s) -> np.ndarray:
    """Strain (n_trials, n_lags, n_zones) at onset + lag, linear interpolation between frames (NaN frames skipped)."""
    out = np.empty((len(onsets_s), len(lags_s), strain.shape[1]))
    for z in range(strain.shape[1]):
        ok = np.isfinite(strain[:, z])
        out[:, :, z] = np.interp(onsets_s[:, None] + lags_s[None, :], t_s[ok], strain[ok, z])
    return out


def analyse(nwb_path, cfg: "MappingConfig") -> dict:
    """Everything 05a's figures and claims show, computed from the NWB file (see the module docstring):
    :func:`spike_analysis` of its recording and pulses, and the tracked strain around every pulse."""
    d = load_nwb(nwb_path)
    if d["gaps"] is not None and len(d["gaps"]):
        raise ValueError(f"{nwb_path}: {len(d['gaps'])} gaps (samples lost in transit); the analysis needs them all")
    r = spike_analysis(
        d["samples_uv"],
        d["fs"],
        d["positions_mm"],
        d["pulse_t_s"] - d["t0_s"],
        d["vpp"],
        d["vpp_measured"],
        d["period_ms"],
        d["period_ms_measured"],
        cfg,
    )
    lags = np.arange(-0.2, 0.8, 1 / cfg.fps / 2)
    strain = _strain_epochs(d["motion_t_s"], d["strain"], d["pulse_t_s"], lags)
    mean_strain = strain.mean(axis=2)
    baseline = mean_strain[:, lags < 0].mean(axis=1)
    response = (lags >= 0) & (lags <= 0.5)
    shortening = -(mean_strain[:, response].min(axis=1) - baseline)
    return {
        **r,
        "pulse_t_s": d["pulse_t_s"],
        "lags_s": lags,
        "strain_epochs": strain,
        "shortening": shortening,
        "zone_mm": d["zone_mm"],
        "motion_t_s": d["motion_t_s"],
        "video": d["video"],
    }


def summarise(r: dict, cfg: "MappingConfig") -> dict:
    """The numbers behind the claims: velocity vs ground truth, dose–response, AP–displacement correlation over the
    sweep and within the trials that fired a spike (``corr_spiking``: does the AP amplitude still predict the
    shortening once spike vs no spike is taken out?)."""
    s = r["sweep"]
    spiking = s & (r["spike_count"] > 0)
    velocity = float(np.nanmedian(r["velocity_m_s"][s]))
    fibres = r["fibre"][s]
    return {
        "velocity_m_s": velocity,
        "truth_m_s": cfg.mgf_velocity_m_s,
        "velocity_error": abs(velocity - cfg.mgf_velocity_m_s) / cfg.mgf_velocity_m_s,
        "trials": int(s.sum()),
        "trials_with_velocity": int(np.isfinite(r["velocity_m_s"][s]).sum()),
        "first_spike_mgf": int((fibres == "MGF").sum()),
        "first_spike_lgf": int((fibres == "LGF").sum()),
        "second_velocity_m_s": float(np.nanmedian(r["second_velocity_m_s"][s]))
        if np.isfinite(r["second_velocity_m_s"][s]).any()
        else float("nan"),
        "second_spike_lgf": int((r["second_fibre"][s] == "LGF").sum()),
        "lgf_truth_m_s": cfg.lgf_velocity_m_s,
        "dose": dose_response(r["vpp"][s], r["amplitude_uv"][s]),
        "corr": _pearson(r["amplitude_uv"][s], r["shortening"][s]),
        "corr_spiking": _pearson(r["amplitude_uv"][spiking], r["shortening"][spiking]),
    }


def _pearson(x, y) -> dict:
    """Pearson r, its p-value and n; NaN with fewer than 3 pairs."""
    if len(x) < 3:
        return {"r": float("nan"), "p": float("nan"), "n": int(len(x))}
    result = stats.pearsonr(x, y)
    return {"r": float(result.statistic), "p": float(result.pvalue), "n": int(len(x))}


def example_trial(r: dict) -> int:
    """A representative trial for the AP-wave figure: at the highest voltage, the velocity nearest the median."""
    s = r["sweep"] & (r["vpp"] == r["vpp"][r["sweep"]].max()) & np.isfinite(r["velocity_m_s"])
    rows = np.flatnonzero(s)
    if not len(rows):
        raise ValueError("example_trial: no trial at the highest voltage has a velocity")
    v = r["velocity_m_s"][rows]
    return int(rows[np.argmin(np.abs(v - np.median(v)))])


def kymograph(video_path, frame_times_s, t_start_s: float, t_stop_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Midline intensity (n_frames, width) of the frames in [t_start_s, t_stop_s) and their device times."""
    times = np.asarray(frame_times_s)
    keep = (times >= t_start_s) & (times < t_stop_s)
    tracker = SegmentTracker()
    rows = [tracker.update(f).midline for f, k in zip(read_frames(video_path), keep) if k]
    return np.array(rows), times[keep]


_LIMITS = SafetyLimits()  # the rig's hard limits
_vpp = Check(
    lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= _LIMITS.max_vpp,
    f"a voltage in (0, {_LIMITS.max_vpp:g}]",
)
_period = Check(
    lambda v: (
        isinstance(v, (int, float)) and not isinstance(v, bool) and _LIMITS.min_period_ms <= v <= _LIMITS.max_period_ms
    ),
    f"a period in [{_LIMITS.min_period_ms:g}, {_LIMITS.max_period_ms:g}] ms (the rig's hard limits)",
)
_window = Check(lambda v: isinstance(v, (tuple, list)) and len(v) == 2 and v[0] < 0 < v[1], "(start < 0, stop > 0) ms")
_band = Check(lambda v: isinstance(v, (tuple, list)) and len(v) == 2 and 0 < v[0] < v[1], "(low, high) Hz, low < high")
_speed = Check(
    lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0.1 <= v <= 4,
    "a number in [0.1, 4] (device time per real time)",
)


@dataclass(frozen=True)
class MappingConfig(NotebookConfig):
    """Notebook 05a. The sweep follows the abstract (2–6 V_pp, periods 2–6.7 ms, 1 pulse/s); the template pulses,
    the jitter, the analysis windows and bands are ours. Claim thresholds are fixed here, before any result; the
    blind checks (``labkit.rig.analysis.validation``: ``n_blind`` random worms and as many recordings built without the
    simulator, drawn from ``blind_seed``) must recover the velocity within ``velocity_tolerance`` in at least
    ``blind_min_recovered`` of the cases and never return a wrong number."""

    vpp_values: tuple = param((2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0), tuple_of(_vpp))
    period_values_ms: tuple = param((2.0, 3.0, 4.0, 5.0, 6.7), tuple_of(_period))
    repeats: int = param(2, positive_int)
    template_vpp: float = param(1.8, _vpp)  # below every fibre's threshold (>= 2.03 V_pp at 2-6.7 ms)
    template_repeats: int = param(4, positive_int)
    rate_hz: float = param(1.0, positive_float)
    interval_jitter: float = param(0.2, fraction)
    first_pulse_s: float = param(1.0, positive_float)
    tail_s: float = param(1.0, positive_float)
    speed: float = param(3.0, _speed)
    fs_hz: float = param(30000.0, positive_float)
    fps: float = param(30.0, positive_float)
    mgf_velocity_m_s: float = param(25.0, positive_float)  # the simulator's ground truth (WormParams default)
    lgf_velocity_m_s: float = param(12.5, positive_float)
    body_length_mm: float = param(WormParams.body_length_mm, positive_float)  # camera calibration: the simulated
    stim_site_mm: float = param(WormParams.stim_site_mm, positive_float)  # worm's body and stimulation site
    window_ms: tuple = param(WINDOW_MS, _window)
    band_hz: tuple = param(BAND_HZ, _band)
    amplitude_band_hz: tuple = param((20.0, 5000.0), _band)
    threshold_k: float = param(THRESHOLD_K, positive_float)
    dead_ms: float = param(DEAD_MS, positive_float)  # one spike's waveform: crossings within it are the same spike
    velocity_tolerance: float = param(0.10, fraction)
    alpha: float = param(0.01, fraction)
    n_blind: int = param(12, positive_int)  # random worms, and recordings built without the simulator
    blind_seed: int = param(2026, positive_int)  # fixed before the reported run; never used in development
    blind_min_recovered: float = param(0.8, fraction)

    SCALES = {
        "smoke": dict(
            vpp_values=(2.0, 4.0, 6.0),
            period_values_ms=(2.0, 6.7),
            repeats=1,
            template_repeats=2,
            rate_hz=2.0,
            speed=4.0,
            n_blind=3,
        ),
        "quick": {},
        "paper": dict(repeats=10, template_repeats=5, speed=1.0),
    }

    def validate(self) -> None:
        if self.template_vpp >= min(self.vpp_values):
            raise ConfigError(
                f"MappingConfig: bad value for 'template_vpp': {self.template_vpp!r}; allowed: below "
                f"the sweep's lowest voltage {min(self.vpp_values)} (template pulses must be "
                "sub-threshold)"
            )
        if self.rate_hz > 2.0:
            raise ConfigError(
                f"MappingConfig: bad value for 'rate_hz': {self.rate_hz!r}; allowed: <= 2 pulses/s "
                "(each response and twitch needs ~0.5 s)"
            )
        if self.first_pulse_s < 0.8:
            raise ConfigError("MappingConfig: 'first_pulse_s' must leave >= 0.8 s for the link to start")
