"""Recordings of the rig: an in-memory :class:`Recording` and a crash-safe session folder on disk.

A session folder is written *while* acquiring (NWB is awkward to append live; ``labkit.rig.nwb`` converts a
finished or interrupted session at the end)::

    session.json    metadata, written once at start: device info, sample rate, channel count, counts→µV scale,
                    electrode positions (mm from the stimulation site), first sample index, start time (UTC)
    samples.i16     int16 little-endian counts, interleaved (n_samples, n_channels), appended block by block
    pulses.jsonl    one JSON object per delivered pulse (the device's echo), appended
    gaps.jsonl      one JSON object per run of samples lost in transit {"start_index", "n"}; those samples are 0
    closed.json     written by a clean close: counters (frames, bad frames, lost frames); absent after a crash

Every append is flushed at least every ``flush_interval_s`` (default 0.1 s), so after a ``kill -9`` everything
up to the last flush is readable by :func:`load_session` (a torn last sample row or JSON line is dropped).
"""

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from labkit.atomic import atomic_write_text

__all__ = ["Pulse", "Recording", "SessionWriter", "load_session"]

FORMAT = "labkit-rig-session/1"


@dataclass(frozen=True)
class Pulse:
    """One delivered stimulus pulse, as the device measured it (its echo), in device time."""

    request_id: int
    t_start_s: float
    vpp_requested: float
    vpp_measured: float
    period_ms_requested: float
    period_ms_measured: float
    waveform: str = "bipolar_sine"


@dataclass
class Recording:
    """A stretch of recorded data: samples in µV, one column per differential pair, ordered by position."""

    samples_uv: np.ndarray                 # (n_samples, n_channels) float
    sample_rate_hz: float
    first_sample_index: int                # device sample counter of row 0 (t = index / fs, device clock)
    electrode_positions_mm: np.ndarray     # (n_channels,) distance of each pair's centre from the stimulation site
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

    def __init__(self, folder: Path, *, sample_rate_hz: float, n_channels: int, scale_uv_per_count: float,
                 electrode_positions_mm, first_sample_index: int, device_info: dict[str, Any] | None = None,
                 flush_interval_s: float = 0.1):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / "session.json").exists():
            raise FileExistsError(f"{self.folder} already holds a session; choose a new folder")
        self.n_channels = n_channels
        self.next_index = first_sample_index
        self.flush_interval_s = flush_interval_s
        meta = {"format": FORMAT, "sample_rate_hz": sample_rate_hz, "n_channels": n_channels,
                "scale_uv_per_count": scale_uv_per_count, "first_sample_index": first_sample_index,
                "electrode_positions_mm": [float(x) for x in electrode_positions_mm],
                "device_info": device_info or {}, "start_time_utc": datetime.now(timezone.utc).isoformat()}
        atomic_write_text(self.folder / "session.json", json.dumps(meta, indent=2))
        self._samples = open(self.folder / "samples.i16", "ab")
        self._pulses = open(self.folder / "pulses.jsonl", "a")
        self._gaps = open(self.folder / "gaps.jsonl", "a")
        self._last_flush = time.monotonic()
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
        if first_index > self.next_index:
            missing = first_index - self.next_index
            self._gaps.write(json.dumps({"start_index": self.next_index, "n": missing}) + "\n")
            self._samples.write(np.zeros((missing, self.n_channels), "<i2").tobytes())
        self._samples.write(counts.tobytes())
        self.next_index = first_index + len(counts)
        self._maybe_flush()

    def write_pulse(self, pulse: Pulse) -> None:
        self._pulses.write(json.dumps(asdict(pulse)) + "\n")
        self._maybe_flush()

    def _maybe_flush(self, force: bool = False) -> None:
        if force or time.monotonic() - self._last_flush >= self.flush_interval_s:
            for f in (self._samples, self._pulses, self._gaps):
                f.flush()
                os.fsync(f.fileno())
            self._last_flush = time.monotonic()

    def flush(self) -> None:
        self._maybe_flush(force=True)

    def close(self, counters: dict[str, int] | None = None) -> None:
        if self.closed:
            return
        self._maybe_flush(force=True)
        for f in (self._samples, self._pulses, self._gaps):
            f.close()
        atomic_write_text(self.folder / "closed.json", json.dumps({"counters": counters or {}}, indent=2))
        self.closed = True


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a crash: only the last one can be
            break
    return rows


def load_session(folder: Path) -> tuple[Recording, dict[str, Any]]:
    """Read a session folder (complete or interrupted) into a :class:`Recording` plus its metadata."""
    folder = Path(folder)
    meta_path = folder / "session.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{folder} is not a rig session (no session.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: unknown format {meta.get('format')!r}; expected {FORMAT!r}")
    n_ch = meta["n_channels"]
    raw = (folder / "samples.i16").read_bytes()
    raw = raw[: len(raw) - len(raw) % (2 * n_ch)]            # drop a torn last row
    counts = np.frombuffer(raw, dtype="<i2").reshape(-1, n_ch)
    closed = folder / "closed.json"
    meta["closed_cleanly"] = closed.exists()
    counters = json.loads(closed.read_text())["counters"] if closed.exists() else {}
    rec = Recording(
        samples_uv=counts.astype(float) * meta["scale_uv_per_count"],
        sample_rate_hz=meta["sample_rate_hz"],
        first_sample_index=meta["first_sample_index"],
        electrode_positions_mm=np.asarray(meta["electrode_positions_mm"], dtype=float),
        pulses=[Pulse(**p) for p in _jsonl(folder / "pulses.jsonl")],
        gaps=_jsonl(folder / "gaps.jsonl"),
        counters=counters,
    )
    meta["counts"] = counts
    return rec, meta
