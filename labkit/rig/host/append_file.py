"""Crash-safe append-only files: how a session folder's appended files are written, and read back after a crash.

The session folder of labkit.rig.host.recording (samples.i16, pulses.jsonl, gaps.jsonl) and the search log of
labkit.rig.host.search_log (search_trials.jsonl) grow while acquiring. :class:`AppendFile` writes one of them: its
errors name the file (``[Errno 28] writing …/samples.i16: No space left on device``, errno kept, see :func:`naming`)
and it is fsynced only when written to, so whoever syncs it decides what survives a ``kill -9``.

:func:`read_jsonl` reads a JSON-lines file back, one JSON value per line: a line that is not UTF-8 or not JSON (torn
or garbled) is skipped and its number returned; it is warned about unless it is the unterminated last line of a file
whose writer may have crashed mid-write (``crash_possible``). What a line must hold is checked by the caller
(labkit.rig.host.session_reader, labkit.rig.host.search_log).
"""

import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["AppendFile", "read_jsonl", "naming", "os_error", "os_error_message"]


def os_error(code: int | None, message: str) -> OSError:
    """An OSError with ``message`` and, when known, errno ``code`` (which picks the subclass, e.g. PermissionError)."""
    return OSError(code, message) if code is not None else OSError(message)


def os_error_message(e: OSError) -> str:
    return e.strerror if e.errno is not None and e.strerror else str(e)


@contextmanager
def naming(path: Path):
    """Re-raise an OSError as one that names ``path``, e.g. "[Errno 28] writing …/samples.i16: No space left…"."""
    try:
        yield
    except OSError as e:
        raise os_error(e.errno, f"writing {path}: {os_error_message(e)}") from e


class AppendFile:
    """One append-only file of a session folder; its errors name it; it is fsynced only when written to."""

    def __init__(self, path: Path, mode: str):
        self.path = path
        self._f = open(path, mode)
        self._dirty = False

    def write(self, data) -> None:
        self._dirty = True
        with naming(self.path):
            self._f.write(data)

    def sync(self) -> None:
        if self._dirty:
            with naming(self.path):
                self._f.flush()
                os.fsync(self._f.fileno())
            self._dirty = False

    def close(self) -> None:
        """Sync and close; the file is closed even when syncing fails."""
        try:
            self.sync()
        finally:
            with naming(self.path):
                self._f.close()


def read_jsonl(path: Path, crash_possible: bool) -> tuple[list[tuple[int, Any]], list[int]]:
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
