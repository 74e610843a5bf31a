"""Convert a rig session folder (see :mod:`labkit.rig.host.recording`) into one NWB file, and validate NWB files.

NWB is awkward to append to live, so the rig streams a crash-safe session folder and this module converts it at the
end, whether the session closed cleanly or was interrupted. What goes where in the NWB file::

    acquisition/recording        ElectricalSeries: the raw int16 counts exactly as stored in samples.i16 (no float
                                 conversion), conversion = µV per count × 1e-6 → volts, rate = sample rate,
                                 starting_time = first_sample_index / rate
    general/extracellular_ephys  device "raceway", electrode group "recording_pairs" and the electrodes table: one row
                                 per differential pair, ordered by position (columns: position_mm from the stimulation
                                 site, x = the same in µm as the NWB schema asks (+x posterior), location, pair name,
                                 reference = the pair's other electrode)
    intervals/delivered_pulses   TimeIntervals, one row per pulse of pulses.jsonl (the device's echo of what it
                                 delivered): start = t_start_s, stop = t_start_s + the duration delivered
                                 (period_ms_measured / 1000: the measured period, or for an aborted pulse the time up
                                 to the abort), every echo field as a column (boolean `aborted`: cut short by STOP,
                                 DISARM or the watchdog), and `timeseries` pointing at the pulse's samples in
                                 stimulus_voltage
    stimulus/stimulus_voltage    TimeSeries reconstructing the delivered voltage from the echo (measured Vpp and
                                 period; one cycle of (Vpp / 2)·sin(2π(t − t_start)/T), positive phase first),
                                 sampled only during pulses: STIM_SAMPLES_PER_CYCLE + 1 samples per pulse with explicit
                                 timestamps, both ends at 0 V. An aborted pulse shows only what was delivered: the
                                 same samples spread over the delivered duration d, of the sine with the requested
                                 period T (the measured one is unknown), then 0 V at t_start + d (the drop to 0 V
                                 spans the last sample interval, d / STIM_SAMPLES_PER_CYCLE); a pulse aborted at its
                                 start (d = 0) is one 0 V sample. The stimulator holds 0 V between pulses, so linear
                                 interpolation between samples is exact there. It is a reconstruction, not a recording.
    intervals/trials             (search_trials.jsonl present: an Auto-map session, labkit.rig.host.search_log) one
                                 row per trial of the closed-loop search: id = its number, start = the pulse onset,
                                 stop = the end of the response window classified, and as columns the stimulus chosen
                                 and delivered, whether it was a template pulse, whether the MGF / LGF fired and each
                                 fibre's Rb, c and their standard errors after the trial (NaN while undefined)
    intervals/invalid_times      one row per gap of gaps.jsonl (samples lost in transit, stored as 0 in the recording)
    notes                        whether the session closed cleanly (closed.json present, no write error), its
                                 counters, the device info and, when any, the write error that stopped it and the
                                 unreadable lines skipped (file → line numbers), as readable text followed by JSON
    processing/behavior          (motion given) BehavioralTimeSeries/segment_motion: values (n_frames, n_zones) with
                                 explicit frame timestamps, plus the table segment_motion_zones (position_mm per column)
    acquisition/video            (video given) ImageSeries of an external file, path relative to the NWB file's folder
    general/subject              Lumbricus terrestris by default; "simulated" when the device says so

Times: every time in the file is on the device clock (device sample counter / sample rate), so the recording,
pulses and gaps line up exactly; motion and video frame times must be given on that clock too. The file's
session_start_time is the host's UTC time when the session folder was created; the device clock's zero is the
device counter's reset, not that instant.

The NWB file is written to a temporary file in the target folder and moved into place at the end, so a failure
never leaves a half-written NWB file; an existing file is never overwritten. A corrupt or inconsistent session
raises :class:`labkit.rig.host.recording.SessionError` naming the file and the problem (checked by ``load_session``).
"""

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pynwb
from hdmf.backends.hdf5 import H5DataIO
from hdmf.common import DynamicTable, VectorData
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.base import TimeSeriesReference
from pynwb.behavior import BehavioralTimeSeries
from pynwb.ecephys import ElectricalSeries
from pynwb.epoch import TimeIntervals
from pynwb.file import Subject
from pynwb.image import ImageSeries

from labkit.rig.host.recording import Pulse, SessionError
from labkit.rig.host.search_log import FILE_NAME as SEARCH_FILE
from labkit.rig.host.search_log import TRIAL_COLUMNS, load_search_trials
from labkit.rig.host.session_reader import load_session

__all__ = ["STIM_SAMPLES_PER_CYCLE", "session_to_nwb", "validate_nwb"]

STIM_SAMPLES_PER_CYCLE = 64  # samples of the reconstructed stimulus per sine cycle (plus the closing 0 V sample)

PULSE_COLUMNS = {  # field of the pulse echo → (dtype, column description)
    "request_id": (np.int64, "the host's request id this pulse answers"),
    "t_start_s": (np.float64, "pulse onset on the device clock, s (same as start_time)"),
    "vpp_requested": (np.float64, "peak-to-peak voltage requested by the host, V"),
    "vpp_measured": (np.float64, "peak-to-peak voltage the device measured on its output, V"),
    "period_ms_requested": (np.float64, "sine period requested by the host, ms"),
    "period_ms_measured": (
        np.float64,
        "sine period the device measured, ms; for an aborted pulse the duration "
        "delivered before the abort (stop_time - start_time)",
    ),
    "waveform": (str, "waveform name; 'bipolar_sine' = one sine cycle, charge-balanced by construction"),
    "aborted": (
        bool,
        "True when the pulse was cut short by STOP, DISARM or the watchdog: only the part up to the "
        "abort was delivered (then not charge-balanced)",
    ),
}


def session_to_nwb(
    session_dir: Path,
    nwb_path: Path,
    *,
    motion: dict[str, Any] | None = None,
    video: dict[str, Any] | None = None,
    subject: dict[str, Any] | None = None,
    session_description: str | None = None,
) -> Path:
    """Write the session in ``session_dir`` to a new NWB file at ``nwb_path`` and return that path.

    ``motion``: dict(frame_times_s=(n_frames,), values=(n_frames, n_zones), zone_positions_mm=(n_zones,),
    description=str, optional unit=str (default "a.u.")). ``video``: dict(file=path, frame_times_s=(n_frames,)).
    ``subject``: keyword arguments of :class:`pynwb.file.Subject` overriding the defaults. A corrupt or
    inconsistent session raises :class:`~labkit.rig.host.recording.SessionError` naming the file and the problem.
    """
    nwb_path = Path(nwb_path)
    if nwb_path.exists():
        raise FileExistsError(f"{nwb_path} already exists; refusing to overwrite it (choose a new name or delete it)")
    rec, meta = load_session(session_dir)
    device_info = meta.get("device_info") or {}
    simulated = bool(device_info.get("simulated"))
    pulses = sorted(rec.pulses, key=lambda p: p.t_start_s)
    _check_waveforms(Path(session_dir) / "pulses.jsonl", pulses)
    trials, skipped = load_search_trials(session_dir, crash_possible=not meta["closed_cleanly"])
    if skipped:
        meta["skipped_lines"][SEARCH_FILE] = skipped
    motion_parts = _motion_arrays(motion) if motion is not None else None
    video_parts = _video_parts(video, nwb_path.parent) if video is not None else None

    nwbfile = NWBFile(
        session_description=session_description or _default_description(len(rec.electrode_positions_mm), simulated),
        identifier=str(uuid.uuid4()),
        session_start_time=datetime.fromisoformat(meta["start_time_utc"]),
        session_id=Path(session_dir).name,
        notes=_notes(meta, rec.counters, device_info),
        subject=Subject(
            **(
                {
                    "species": "Lumbricus terrestris",
                    "subject_id": "worm-1",
                    "sex": "O",
                    "description": "simulated" if simulated else "earthworm (hermaphrodite)",
                }
                | (subject or {})
            )
        ),
    )
    _add_recording(nwbfile, meta, rec.electrode_positions_mm, device_info)
    _add_stimulus(nwbfile, pulses)
    _add_gaps(nwbfile, rec.gaps, rec.sample_rate_hz)
    if trials:
        _add_search_trials(nwbfile, trials)
    if motion_parts is not None:
        _add_motion(nwbfile, *motion_parts)
    if video_parts is not None:
        rel_file, frame_times = video_parts
        nwbfile.add_acquisition(
            ImageSeries(
                name="video",
                external_file=[rel_file],
                format="external",
                starting_frame=[0],
                timestamps=frame_times,
                description="video of the raceway; frame times on the device clock; file path relative to this file",
            )
        )

    nwb_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = nwb_path.parent / f".{nwb_path.stem}.{uuid.uuid4().hex}.partial.nwb"  # hidden; pynwb wants .nwb
    try:
        with NWBHDF5IO(str(tmp), mode="w-") as io:
            io.write(nwbfile)
        if nwb_path.exists():
            raise FileExistsError(f"{nwb_path} appeared while converting; refusing to overwrite it")
        os.replace(tmp, nwb_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return nwb_path


def validate_nwb(nwb_path: Path) -> list[str]:
    """pynwb's schema validation of ``nwb_path`` as a list of error strings; an empty list means valid."""
    nwb_path = Path(nwb_path)
    if not nwb_path.is_file():
        raise FileNotFoundError(f"{nwb_path}: no such NWB file")
    return [str(e) for e in pynwb.validate(path=str(nwb_path))]


def _default_description(n_pairs: int, simulated: bool) -> str:
    return (
        f"{'Simulated e' if simulated else 'E'}arthworm on a raceway: {n_pairs} differential recording pairs along "
        "the body, bipolar sine stimulus pulses through 2 electrodes under the head."
    )


def _notes(meta: dict[str, Any], counters: dict[str, int], device_info: dict[str, Any]) -> str:
    if meta["closed_cleanly"]:
        state = "closed cleanly (closed.json present)"
    elif meta["write_error"]:
        state = f"stopped by a write error ({meta['write_error']}); data up to the last successful write"
    else:
        state = "interrupted: no closed.json, so no counters; data up to the last flush"
    summary = {
        "closed_cleanly": meta["closed_cleanly"],
        "counters": counters,
        "device_info": device_info,
        "session_format": meta["format"],
    }
    if meta["write_error"]:
        summary["write_error"] = meta["write_error"]
    skipped = "".join(
        f" Skipped unreadable {name} line {', '.join(map(str, numbers))}."
        for name, numbers in meta["skipped_lines"].items()
    )
    if skipped:
        summary["skipped_lines"] = meta["skipped_lines"]
    return f"Rig session {state}.{skipped} Converted by labkit.rig.host.nwb.\n{json.dumps(summary, sort_keys=True)}"


def _add_recording(
    nwbfile: NWBFile, meta: dict[str, Any], positions_mm: np.ndarray, device_info: dict[str, Any]
) -> None:
    device = nwbfile.create_device(
        name="raceway",
        description="earthworm raceway: differential recording pairs along the body, 2 stimulating "
        f"electrodes under the head; device info {json.dumps(device_info, sort_keys=True)}",
    )
    group = nwbfile.create_electrode_group(
        name="recording_pairs",
        device=device,
        location="skin over the ventral nerve cord, along the body",
        description="one virtual electrode per differential pair; position = the pair's centre, mm from the "
        "stimulation site (posterior)",
    )
    nwbfile.add_electrode_column(name="position_mm", description="centre of the pair, mm from the stimulation site")
    nwbfile.add_electrode_column(name="pair", description="name of the differential pair (P1 nearest the head)")
    for i, pos in enumerate(positions_mm):
        name = f"P{i + 1}"
        nwbfile.add_electrode(
            group=group,
            location=f"skin over the ventral nerve cord, {pos:g} mm from the stimulation site",
            x=float(pos) * 1000.0,
            position_mm=float(pos),
            pair=name,
            reference=f"{name}-: the pair's other electrode (differential recording)",
        )
    counts = meta["counts"]
    rate = float(meta["sample_rate_hz"])
    nwbfile.add_acquisition(
        ElectricalSeries(
            name="recording",
            data=H5DataIO(counts, compression="gzip", shuffle=True) if len(counts) else counts,
            electrodes=nwbfile.create_electrode_table_region(list(range(len(positions_mm))), "all differential pairs"),
            conversion=float(meta["scale_uv_per_count"]) * 1e-6,
            rate=rate,
            starting_time=meta["first_sample_index"] / rate,
            description="raw int16 ADC counts of each differential pair (multiply by conversion for volts); times on "
            "the device clock: t = device sample index / rate; samples lost in transit are 0 and listed "
            "in invalid_times",
        )
    )


def _check_waveforms(path: Path, pulses: list[Pulse]) -> None:
    for p in pulses:
        if p.waveform != "bipolar_sine":
            raise SessionError(
                f"{path}: pulse request_id={p.request_id} has waveform {p.waveform!r}; only "
                "'bipolar_sine' can be reconstructed in NWB"
            )


def _pulse_samples(p: Pulse) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and volts reconstructing one delivered pulse (see the module docstring)."""
    if p.period_ms_measured == 0:  # aborted at its start: nothing delivered
        return np.array([p.t_start_s]), np.zeros(1)
    phase = np.arange(STIM_SAMPLES_PER_CYCLE + 1) / STIM_SAMPLES_PER_CYCLE
    cycles = p.period_ms_measured / p.period_ms_requested if p.aborted else 1.0  # of the sine delivered
    volts = p.vpp_measured / 2 * np.sin(2 * np.pi * phase * cycles)
    volts[-1] = 0.0  # sin(2π) is not exactly 0 in floating point; abort: 0 V
    return p.t_start_s + phase * p.period_ms_measured / 1000, volts


def _add_stimulus(nwbfile: NWBFile, pulses: list[Pulse]) -> None:
    samples = [_pulse_samples(p) for p in pulses]
    times = np.concatenate([t for t, _ in samples]) if pulses else np.zeros(0)
    volts = np.concatenate([v for _, v in samples]) if pulses else np.zeros(0)
    per_pulse = STIM_SAMPLES_PER_CYCLE + 1
    stim = TimeSeries(
        name="stimulus_voltage",
        data=volts.astype(np.float32),
        timestamps=times,
        unit="volts",
        description=f"delivered stimulus voltage reconstructed from the device's echo (measured Vpp and period): one "
        f"cycle of (Vpp/2)*sin(2*pi*(t - t_start)/T) per pulse, positive phase first, sampled only during "
        f"pulses ({per_pulse} samples per pulse, both ends 0 V); 0 V between pulses; device clock. An "
        f"aborted pulse (delivered_pulses.aborted) shows only what was delivered: its {per_pulse} samples "
        f"span the delivered duration d (period_ms_measured) of the sine with the requested period "
        f"(period_ms_requested), then 0 V at t_start + d (the drop spans the last sample interval); "
        f"a pulse aborted at its start is one 0 V sample",
    )
    nwbfile.add_stimulus(stim)
    table = TimeIntervals(
        name="delivered_pulses",
        description="stimulus pulses as the device delivered and measured "
        "them (pulses.jsonl); stop = start + the duration "
        "delivered (period_ms_measured); aborted = cut short",
    )
    idx_start = 0
    for p, (t, _) in zip(pulses, samples):
        table.add_row(
            start_time=p.t_start_s,
            stop_time=p.t_start_s + p.period_ms_measured / 1000,
            timeseries=[TimeSeriesReference(idx_start, len(t), stim)],
        )
        idx_start += len(t)
    for name, (dtype, doc) in PULSE_COLUMNS.items():  # typed arrays: a table with no pulses still gets its columns
        table.add_column(name=name, description=doc, data=np.array([getattr(p, name) for p in pulses], dtype=dtype))
    nwbfile.add_time_intervals(table)


def _add_search_trials(nwbfile: NWBFile, trials: list[dict[str, Any]]) -> None:
    table = TimeIntervals(
        name="trials",
        description="the closed-loop search's trials (Auto-map, search_trials."
        "jsonl): start = pulse onset, stop = end of the response window "
        "classified; the state of the search right after each trial",
    )
    for t in trials:
        table.add_row(start_time=t["t_start_s"], stop_time=t["t_stop_s"], id=t["trial"])
    for name, (_, dtype, doc) in TRIAL_COLUMNS.items():
        table.add_column(
            name=name,
            description=doc,
            data=np.array([np.nan if t[name] is None else t[name] for t in trials], dtype=dtype),
        )
    nwbfile.trials = table


def _add_gaps(nwbfile: NWBFile, gaps: list[dict[str, int]], rate: float) -> None:
    if not gaps:
        return
    nwbfile.add_invalid_times_column(name="start_index", description="device sample index of the first lost sample")
    nwbfile.add_invalid_times_column(name="n_samples", description="samples lost in transit (stored as 0)")
    for g in gaps:
        start, n = g["start_index"], g["n"]
        nwbfile.add_invalid_time_interval(
            start_time=start / rate,
            stop_time=(start + n) / rate,
            tags=["lost_in_transit"],
            start_index=start,
            n_samples=n,
        )


def _motion_arrays(motion: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, str]:
    missing = {"frame_times_s", "values", "zone_positions_mm", "description"} - set(motion)
    if missing:
        raise ValueError(f"motion is missing {sorted(missing)}")
    times = np.asarray(motion["frame_times_s"], dtype=float)
    values = np.asarray(motion["values"])
    zones = np.asarray(motion["zone_positions_mm"], dtype=float)
    if times.ndim != 1 or np.any(np.diff(times) <= 0):
        raise ValueError("motion frame_times_s must be a 1-D strictly increasing array")
    if values.ndim != 2 or values.shape != (len(times), len(zones)):
        raise ValueError(
            f"motion values must have shape (n_frames, n_zones) = ({len(times)}, {len(zones)}), got {values.shape}"
        )
    return times, values, zones, str(motion["description"]), str(motion.get("unit", "a.u."))


def _add_motion(
    nwbfile: NWBFile, times: np.ndarray, values: np.ndarray, zones: np.ndarray, description: str, unit: str
) -> None:
    module = nwbfile.create_processing_module(name="behavior", description="segment motion measured from video")
    module.add(
        BehavioralTimeSeries(
            time_series=TimeSeries(
                name="segment_motion",
                data=values,
                timestamps=times,
                unit=unit,
                description=f"{description} (column j = zone j of segment_motion_zones; frame times on the device "
                "clock)",
            )
        )
    )
    module.add(
        DynamicTable(
            name="segment_motion_zones",
            description="zones of segment_motion, one row per column",
            columns=[
                VectorData(name="position_mm", data=zones, description="zone centre, mm from the stimulation site")
            ],
        )
    )


def _video_parts(video: dict[str, Any], nwb_dir: Path) -> tuple[str, np.ndarray]:
    missing = {"file", "frame_times_s"} - set(video)
    if missing:
        raise ValueError(f"video is missing {sorted(missing)}")
    file = Path(video["file"])
    if not file.is_file():
        raise FileNotFoundError(f"video file {file} does not exist")
    times = np.asarray(video["frame_times_s"], dtype=float)
    if times.ndim != 1 or np.any(np.diff(times) <= 0):
        raise ValueError("video frame_times_s must be a 1-D strictly increasing array")
    return os.path.relpath(file.resolve(), nwb_dir.resolve()), times
