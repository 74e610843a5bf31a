"""Recordings of the rig: an in-memory :class:`Recording`, and the crash-safe session folder on disk that
:class:`SessionWriter` writes (labkit.rig.host.session_reader.load_session reads it back).

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

session.json and closed.json are written atomically (``labkit.atomic``). Every append (labkit.rig.host.append_file)
is flushed and fsynced at least every ``flush_interval_s`` (default 0.1 s), so after a ``kill -9`` everything up to
the last flush is readable by ``load_session``. A write error (e.g. ENOSPC) names the file; the writer then appends
nothing more, and close() keeps what was written and never raises it again.

What each file's records must hold is below (``SESSION_RULES``, ``PULSE_RULES``, ``GAP_RULES``: a rule per key):
the writer checks session.json with it (it never writes one that load_session would refuse), the reader checks every
file, labkit.rig.host.search_log its own; :func:`check_object` raises :class:`SessionError` (a ValueError) naming
the file, line and key, and the allowed values.
"""

import json
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from labkit.atomic import atomic_write_text
from labkit.rig.firmware.protocol import Waveform
from labkit.rig.host.append_file import AppendFile, naming, os_error, os_error_message

__all__ = [
    "Pulse",
    "Recording",
    "SessionError",
    "SessionWriter",
    "Rule",
    "POSITIVE",
    "NON_NEGATIVE",
    "COUNT",
    "INDEX",
    "SESSION_RULES",
    "PULSE_RULES",
    "GAP_RULES",
    "check_object",
    "check_session_meta",
    "is_number",
]

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
        check_session_meta(meta_path, meta)  # never write a session that load_session would refuse
        with naming(meta_path):
            atomic_write_text(meta_path, json.dumps(meta, indent=2))
        self._samples = AppendFile(self.folder / "samples.i16", "ab")
        self._pulses = AppendFile(self.folder / "pulses.jsonl", "a")
        self._gaps = AppendFile(self.folder / "gaps.jsonl", "a")
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
            with naming(closed_path):
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
            raise os_error(err.errno, f"{os_error_message(err)}; the session writer stopped there")
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


# --- what each record must hold: checked by SessionWriter and by session_reader.load_session -----------------

Rule = tuple[Callable[[Any], bool], str]  # a test of a value, and the allowed values in words


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_iso_time(v: Any) -> bool:
    try:
        datetime.fromisoformat(v)
    except (TypeError, ValueError):
        return False
    return True


POSITIVE: Rule = (lambda v: is_number(v) and v > 0, "a finite number > 0")
NON_NEGATIVE: Rule = (lambda v: is_number(v) and v >= 0, "a finite number >= 0")
COUNT: Rule = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
INDEX: Rule = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")

SESSION_RULES: dict[str, Rule] = {
    "sample_rate_hz": POSITIVE,
    "n_channels": COUNT,
    "scale_uv_per_count": POSITIVE,
    "first_sample_index": INDEX,
    "electrode_positions_mm": (
        lambda v: isinstance(v, list) and all(map(is_number, v)),
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


def check_object(where: str, obj: Any, rules: dict[str, Rule], *, optional=(), other_keys: bool = False) -> dict:
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


def check_session_meta(path: Path, meta: Any) -> dict[str, Any]:
    if isinstance(meta, dict) and meta.get("format") != FORMAT:
        raise SessionError(f"{path}: unknown format {meta.get('format')!r}; expected {FORMAT!r}")
    check_object(str(path), meta, SESSION_RULES, optional=("device_info",), other_keys=True)
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
