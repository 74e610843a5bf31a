"""Recordings of the rig: an in-memory :class:`Recording` and a crash-safe session folder on disk.

A session folder is written *while* acquiring (NWB is awkward to append live; ``labkit.rig.host.nwb`` converts a
finished or interrupted session at the end)::

    session.json    metadata, written once at start: device info, sample rate, channel count, counts→µV scale,
                    electrode positions (mm from the stimulation site, strictly increasing, one per channel),
                    first sample index, start time (UTC)
    samples.i16     int16 little-endian counts, interleaved (n_samples, n_channels), appended block by block
    pulses.jsonl    one JSON object per delivered pulse (the device's echo: the fields of :class:`Pulse`), appended;
                    ``aborted`` is true for a pulse cut short by STOP, DISARM or the watchdog, whose
                    ``period_ms_measured`` is then the duration delivered (files without the key: false)
    gaps.jsonl      one JSON object per run of samples lost in transit {"start_index", "n"}; those samples are 0
                    (the zeros reach samples.i16 before their line reaches gaps.jsonl)
    closed.json     written by close(): {"counters": the link counters} and, when an append failed (e.g. a full
                    disk), {"write_error": the error}; absent after a crash

session.json and closed.json are written atomically (``labkit.atomic``). Every append is flushed and fsynced at
least every ``flush_interval_s`` (default 0.1 s), so after a ``kill -9`` everything up to the last flush is
readable by :func:`load_session`. A write error (e.g. ENOSPC) names the file; the writer then appends nothing more,
and close() keeps what was written and never raises it again.

:func:`load_session` checks every file and raises :class:`SessionError` (a ValueError) naming the file, line and
key, and the allowed values, for a corrupt or inconsistent session. An unreadable JSON line (not UTF-8 or not
JSON: torn or garbled) is skipped and listed in ``meta["skipped_lines"]``; it is warned about unless it is the
unterminated last line of a session that did not close cleanly (a crash mid-write). A line that is JSON but not a
valid record is an error. A torn last sample row is dropped unless the session closed cleanly (closed.json without
a write error: then no row can be torn, so it is an error).
"""

import json
import math
import os
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from labkit.atomic import atomic_write_text
from labkit.rig.firmware.protocol import Waveform

__all__ = ["Pulse", "Recording", "SessionError", "SessionWriter", "load_session"]

FORMAT = "labkit-rig-session/1"
WAVEFORMS = tuple(w.name.lower() for w in Waveform)


class SessionError(ValueError):
    """A session folder that is corrupt or inconsistent; the message names the file and the problem."""


@dataclass(frozen=True)
class Pulse:
    """One delivered stimulus pulse, as the device measured it (its echo), in device time.

    ``period_ms_measured`` is what was really delivered: for a pulse cut short by STOP, DISARM or the watchdog
    (``aborted``) it is the time from its start to the abort, shorter than ``period_ms_requested``.
    """

    request_id: int
    t_start_s: float
    vpp_requested: float
    vpp_measured: float
    period_ms_requested: float
    period_ms_measured: float
    waveform: str = "bipolar_sine"
    aborted: bool = False


@dataclass
class Recording:
    """A stretch of recorded data: samples in µV, one column per differential pair, ordered by position."""

    samples_uv: np.ndarray  # (n_samples, n_channels) float
    sample_rate_hz: float
    first_sample_index: int  # device sample counter of row 0 (t = index / fs, device clock)
    electrode_positions_mm: np.ndarray  # (n_channels,) distance of each pair's centre from the stimulation site
    pulses: list[Pulse] = field(default_factory=list)
    gaps: list[dict[str, int]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def times_s(self) -> np.ndarray:
        return (self.first_sample_index + np.arange(len(self.samples_uv))) / self.sample_rate_hz

    @property
    def duration_s(self) -> float:
        return len(self.samples_uv) / self.sample_rate_hz


def _os_error(code: int | None, message: str) -> OSError:
    """An OSError with ``message`` and, when known, errno ``code`` (which picks the subclass, e.g. PermissionError)."""
    return OSError(code, message) if code is not None else OSError(message)


def _os_error_message(e: OSError) -> str:
    return e.strerror if e.errno is not None and e.strerror else str(e)


@contextmanager
def _naming(path: Path):
    """Re-raise an OSError as one that names ``path``, e.g. "[Errno 28] writing …/samples.i16: No space left…"."""
    try:
        yield
    except OSError as e:
        raise _os_error(e.errno, f"writing {path}: {_os_error_message(e)}") from e


class _AppendFile:
    """One append-only file of a session folder; its errors name it; it is fsynced only when written to."""

    def __init__(self, path: Path, mode: str):
        self.path = path
        self._f = open(path, mode)
        self._dirty = False

    def write(self, data) -> None:
        self._dirty = True
        with _naming(self.path):
            self._f.write(data)

    def sync(self) -> None:
        if self._dirty:
            with _naming(self.path):
                self._f.flush()
                os.fsync(self._f.fileno())
            self._dirty = False

    def close(self) -> None:
        """Sync and close; the file is closed even when syncing fails."""
        try:
            self.sync()
        finally:
            with _naming(self.path):
                self._f.close()


class SessionWriter:
    """Streams blocks and pulses of one acquisition into a session folder (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        *,
        sample_rate_hz: float,
        n_channels: int,
        scale_uv_per_count: float,
        electrode_positions_mm,
        first_sample_index: int,
        device_info: dict[str, Any] | None = None,
        flush_interval_s: float = 0.1,
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / "session.json"
        if meta_path.exists():
            raise FileExistsError(f"{self.folder} already holds a session; choose a new folder")
        self.n_channels = n_channels
        self.next_index = first_sample_index
        self.flush_interval_s = flush_interval_s
        meta = {
            "format": FORMAT,
            "sample_rate_hz": sample_rate_hz,
            "n_channels": n_channels,
            "scale_uv_per_count": scale_uv_per_count,
            "first_sample_index": first_sample_index,
            "electrode_positions_mm": [float(x) for x in electrode_positions_mm],
            "device_info": device_info or {},
            "start_time_utc": datetime.now(UTC).isoformat(),
        }
        _check_session_meta(meta_path, meta)  # never write a session that load_session would refuse
        with _naming(meta_path):
            atomic_write_text(meta_path, json.dumps(meta, indent=2))
        self._samples = _AppendFile(self.folder / "samples.i16", "ab")
        self._pulses = _AppendFile(self.folder / "pulses.jsonl", "a")
        self._gaps = _AppendFile(self.folder / "gaps.jsonl", "a")
        self._last_flush = time.monotonic()
        self.write_error: OSError | None = None  # the first failed write; nothing is appended after it
        self.closed = False

    def write_block(self, first_index: int, counts: np.ndarray) -> None:
        """Append a block of int16 counts (n, n_channels) starting at device sample ``first_index``.

        A jump forward in ``first_index`` (blocks lost in transit) is filled with zeros and logged in gaps.jsonl;
        a block that starts before the next expected index (a duplicate) is ignored.
        """
        counts = np.ascontiguousarray(counts, dtype="<i2")
        if counts.ndim != 2 or counts.shape[1] != self.n_channels:
            raise ValueError(f"block must have shape (n, {self.n_channels}), got {counts.shape}")
        if first_index < self.next_index:
            return
        with self._appending():
            if first_index > self.next_index:
                missing = first_index - self.next_index
                self._samples.write(np.zeros((missing, self.n_channels), "<i2").tobytes())
                self._samples.sync()  # the zeros are on disk before the line that describes them
                self._gaps.write(json.dumps({"start_index": self.next_index, "n": missing}) + "\n")
            self._samples.write(counts.tobytes())
            self.next_index = first_index + len(counts)
            self._maybe_flush()

    def write_pulse(self, pulse: Pulse) -> None:
        with self._appending():
            self._pulses.write(json.dumps(asdict(pulse)) + "\n")
            self._maybe_flush()

    def flush(self) -> None:
        with self._appending():
            self._maybe_flush(force=True)

    def close(self, counters: dict[str, int] | None = None) -> None:
        """Flush and close the files, then write closed.json (with the write error, if any).

        An error first met here is raised (naming its file) after everything is closed; one already raised by an
        append is not raised again.
        """
        if self.closed:
            return
        self.closed = True
        already_raised = self.write_error
        for f in (self._samples, self._pulses, self._gaps):
            try:
                f.close()
            except OSError as e:
                self.write_error = self.write_error or e
        record = {"counters": counters or {}}
        if self.write_error is not None:
            record["write_error"] = str(self.write_error)
        closed_path = self.folder / "closed.json"
        try:
            with _naming(closed_path):
                atomic_write_text(closed_path, json.dumps(record, indent=2))
        except OSError as e:  # the folder then reads as an interrupted session
            self.write_error = self.write_error or e
        if self.write_error is not already_raised:
            raise self.write_error

    @contextmanager
    def _appending(self):
        """Refuse to append after a failed write; remember a failure."""
        if self.write_error is not None:
            err = self.write_error
            raise _os_error(err.errno, f"{_os_error_message(err)}; the session writer stopped there")
        try:
            yield
        except OSError as e:
            self.write_error = e
            raise

    def _maybe_flush(self, force: bool = False) -> None:
        if force or time.monotonic() - self._last_flush >= self.flush_interval_s:
            for f in (self._samples, self._pulses, self._gaps):
                f.sync()
            self._last_flush = time.monotonic()


# --- reading and checking ------------------------------------------------------------------------------------

Rule = tuple[Callable[[Any], bool], str]  # a test of a value, and the allowed values in words


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_iso_time(v: Any) -> bool:
    try:
        datetime.fromisoformat(v)
    except (TypeError, ValueError):
        return False
    return True


POSITIVE: Rule = (lambda v: _is_number(v) and v > 0, "a finite number > 0")
NON_NEGATIVE: Rule = (lambda v: _is_number(v) and v >= 0, "a finite number >= 0")
COUNT: Rule = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
INDEX: Rule = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")

SESSION_RULES: dict[str, Rule] = {
    "sample_rate_hz": POSITIVE,
    "n_channels": COUNT,
    "scale_uv_per_count": POSITIVE,
    "first_sample_index": INDEX,
    "electrode_positions_mm": (
        lambda v: isinstance(v, list) and all(map(_is_number, v)),
        "a list of finite numbers (mm)",
    ),
    "start_time_utc": (_is_iso_time, "an ISO 8601 date-time string"),
    "device_info": (lambda v: isinstance(v, dict), "a JSON object"),
}
PULSE_RULES: dict[str, Rule] = {
    "request_id": INDEX,
    "t_start_s": NON_NEGATIVE,
    "vpp_requested": NON_NEGATIVE,
    "vpp_measured": NON_NEGATIVE,
    "period_ms_requested": POSITIVE,
    "period_ms_measured": NON_NEGATIVE,
    "waveform": (lambda v: v in WAVEFORMS, f"one of {WAVEFORMS}"),
    "aborted": (lambda v: isinstance(v, bool), "true or false"),
}
GAP_RULES: dict[str, Rule] = {"start_index": INDEX, "n": COUNT}


def _check_object(where: str, obj: Any, rules: dict[str, Rule], *, optional=(), other_keys: bool = False) -> dict:
    """``obj`` if it is a JSON object with every key of ``rules`` (but ``optional``), each value valid."""
    if not isinstance(obj, dict):
        raise SessionError(f"{where}: expected a JSON object, got {json.dumps(obj)[:60]}")
    missing = set(rules) - set(optional) - set(obj)
    if missing:
        raise SessionError(f"{where}: missing key(s) {sorted(missing)}")
    unknown = set(obj) - set(rules)
    if unknown and not other_keys:
        raise SessionError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {list(rules)}")
    for key, (valid, allowed) in rules.items():
        if key in obj and not valid(obj[key]):
            raise SessionError(f"{where}: {key!r} must be {allowed}, got {obj[key]!r}")
    return obj


def _check_session_meta(path: Path, meta: Any) -> dict[str, Any]:
    if isinstance(meta, dict) and meta.get("format") != FORMAT:
        raise SessionError(f"{path}: unknown format {meta.get('format')!r}; expected {FORMAT!r}")
    _check_object(str(path), meta, SESSION_RULES, optional=("device_info",), other_keys=True)
    positions, n_channels = meta["electrode_positions_mm"], meta["n_channels"]
    if len(positions) != n_channels:
        raise SessionError(
            f"{path}: 'electrode_positions_mm' has {len(positions)} positions but 'n_channels' is "
            f"{n_channels}; it needs one position per channel"
        )
    if any(b <= a for a, b in zip(positions, positions[1:])):
        raise SessionError(
            f"{path}: 'electrode_positions_mm' must be strictly increasing (channels ordered by "
            f"position), got {positions}"
        )
    return meta


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode())
    except UnicodeDecodeError as e:
        raise SessionError(f"{path}: not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise SessionError(f"{path}: not valid JSON ({e})") from None


def _read_jsonl(path: Path, crash_possible: bool) -> tuple[list[tuple[int, Any]], list[int]]:
    """(line number, value) of each readable line of ``path``, and the numbers of the unreadable lines skipped.

    ``crash_possible``: the session did not close cleanly, so an unterminated last line may be torn by the crash;
    it is skipped silently. Every other unreadable line is skipped with a warning.
    """
    if not path.exists():
        return [], []
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1] == b"":  # after the last newline, or an empty file
        lines.pop()
    rows, skipped = [], []
    for number, line in enumerate(lines, 1):
        try:
            rows.append((number, json.loads(line.decode())))
            continue
        except UnicodeDecodeError as e:
            reason = f"not UTF-8: {e}"
        except json.JSONDecodeError as e:
            reason = f"not valid JSON: {e}"
        skipped.append(number)
        torn_by_crash = crash_possible and number == len(lines) and not data.endswith(b"\n")
        if not torn_by_crash:
            warnings.warn(f"{path}, line {number}: unreadable ({reason}); skipped", stacklevel=3)
    return rows, skipped


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
        p = Pulse(**_check_object(where, obj, PULSE_RULES, optional=("waveform", "aborted")))
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
        gap = _check_object(where, obj, GAP_RULES)
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
    return _check_object(
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
    meta = _check_session_meta(meta_path, _read_json(meta_path))
    closed = _closed_record(folder / "closed.json")
    meta["write_error"] = closed.get("write_error") if closed else None
    meta["closed_cleanly"] = closed is not None and meta["write_error"] is None
    counts = _read_samples(folder / "samples.i16", meta["n_channels"], meta["closed_cleanly"])
    first = meta["first_sample_index"]
    skipped_lines = {}
    lines = {}
    for name in ("pulses.jsonl", "gaps.jsonl"):
        lines[name], skipped = _read_jsonl(folder / name, crash_possible=not meta["closed_cleanly"])
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
