"""Reading a session folder back: :func:`load_session`, a complete or interrupted session into a :class:`Recording`.

The folder's files and its writer are in labkit.rig.host.recording (so are the rules each record is checked
against); its appended files are read line by line by labkit.rig.host.append_file.read_jsonl.

:func:`load_session` checks every file and raises :class:`SessionError` (a ValueError) naming the file, line and
key, and the allowed values, for a corrupt or inconsistent session. An unreadable JSON line (not UTF-8 or not
JSON: torn or garbled) is skipped and listed in ``meta["skipped_lines"]``; it is warned about unless it is the
unterminated last line of a session that did not close cleanly (a crash mid-write). A line that is JSON but not a
valid record is an error. A torn last sample row is dropped unless the session closed cleanly (closed.json without
a write error: then no row can be torn, so it is an error).
"""

import json
from pathlib import Path
from typing import Any

import numpy as np

from labkit.rig.host.append_file import read_jsonl
from labkit.rig.host.recording import (
    GAP_RULES,
    PULSE_RULES,
    Pulse,
    Recording,
    SessionError,
    check_object,
    check_session_meta,
)

__all__ = ["load_session"]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode())
    except UnicodeDecodeError as e:
        raise SessionError(f"{path}: not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise SessionError(f"{path}: not valid JSON ({e})") from None


def _read_samples(path: Path, n_channels: int, closed_cleanly: bool) -> np.ndarray:
    if not path.exists():
        raise SessionError(f"{path}: missing (a session always has one, possibly empty)")
    raw = path.read_bytes()
    row = 2 * n_channels
    torn = len(raw) % row
    if torn and closed_cleanly:
        raise SessionError(
            f"{path}: {len(raw)} bytes is not a whole number of {row}-byte rows (n_channels="
            f"{n_channels} int16 values); the session closed cleanly, so no row can be torn: "
            "'n_channels' in session.json is wrong or the file is damaged"
        )
    return np.frombuffer(raw[: len(raw) - torn], dtype="<i2").reshape(-1, n_channels)


def _pulses(path: Path, rows: list[tuple[int, Any]]) -> list[Pulse]:
    numbered = []
    for number, obj in rows:
        where = f"{path}, line {number}"
        p = Pulse(**check_object(where, obj, PULSE_RULES, optional=("waveform", "aborted")))
        if p.aborted and p.period_ms_measured > p.period_ms_requested:
            raise SessionError(
                f"{where}: 'period_ms_measured' (the duration delivered before the abort) must be "
                f"between 0 and 'period_ms_requested' = {p.period_ms_requested}, "
                f"got {p.period_ms_measured}"
            )
        if not p.aborted and p.period_ms_measured == 0:
            raise SessionError(f"{where}: 'period_ms_measured' must be > 0 for a pulse that was not aborted, got 0")
        numbered.append((number, p))
    in_time = sorted(numbered, key=lambda item: item[1].t_start_s)
    for (la, a), (lb, b) in zip(in_time, in_time[1:]):
        if b.t_start_s <= a.t_start_s + a.period_ms_measured / 1000:
            raise SessionError(
                f"{path}: pulses request_id={a.request_id} (line {la}) and request_id={b.request_id} "
                f"(line {lb}) overlap in time ({a.t_start_s} s + {a.period_ms_measured} ms > "
                f"{b.t_start_s} s); each pulse must end before the next starts"
            )
    return [p for _, p in numbered]


def _gaps(path: Path, rows: list[tuple[int, Any]], first: int, end: int) -> list[dict[str, int]]:
    gaps, previous_end = [], first
    for number, obj in rows:
        where = f"{path}, line {number}"
        gap = check_object(where, obj, GAP_RULES)
        start, stop = gap["start_index"], gap["start_index"] + gap["n"]
        if start < first or stop > end:
            raise SessionError(
                f"{where}: samples [{start}, {stop}) lie outside the recording [{first}, {end}) of samples.i16"
            )
        if start < previous_end:
            raise SessionError(
                f"{where}: samples [{start}, {stop}) overlap the previous gap or come before it; "
                "gaps must be in order and disjoint"
            )
        gaps.append(gap)
        previous_end = stop
    return gaps


def _closed_record(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    return check_object(
        str(path),
        _read_json(path),
        {
            "counters": (lambda v: isinstance(v, dict), "a JSON object"),
            "write_error": (lambda v: isinstance(v, str), "a string"),
        },
        optional=("write_error",),
    )


def load_session(folder: Path) -> tuple[Recording, dict[str, Any]]:
    """Read and check a session folder (complete or interrupted) into a :class:`Recording` plus its metadata.

    The metadata is session.json's plus ``closed_cleanly``, ``write_error`` (str or None), ``skipped_lines``
    ({file name: [line numbers]}) and ``counts`` (the raw samples). Raises :class:`SessionError` for a corrupt or
    inconsistent session (see the module docstring).
    """
    folder = Path(folder)
    meta_path = folder / "session.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{folder} is not a rig session (no session.json)")
    meta = check_session_meta(meta_path, _read_json(meta_path))
    closed = _closed_record(folder / "closed.json")
    meta["write_error"] = closed.get("write_error") if closed else None
    meta["closed_cleanly"] = closed is not None and meta["write_error"] is None
    counts = _read_samples(folder / "samples.i16", meta["n_channels"], meta["closed_cleanly"])
    first = meta["first_sample_index"]
    skipped_lines = {}
    lines = {}
    for name in ("pulses.jsonl", "gaps.jsonl"):
        lines[name], skipped = read_jsonl(folder / name, crash_possible=not meta["closed_cleanly"])
        if skipped:
            skipped_lines[name] = skipped
    meta["skipped_lines"] = skipped_lines
    rec = Recording(
        samples_uv=counts.astype(float) * meta["scale_uv_per_count"],
        sample_rate_hz=meta["sample_rate_hz"],
        first_sample_index=first,
        electrode_positions_mm=np.asarray(meta["electrode_positions_mm"], dtype=float),
        pulses=_pulses(folder / "pulses.jsonl", lines["pulses.jsonl"]),
        gaps=_gaps(folder / "gaps.jsonl", lines["gaps.jsonl"], first, first + len(counts)),
        counters=closed["counters"] if closed else {},
    )
    meta["counts"] = counts
    return rec, meta
