"""A session recorded from the live panel: the folder the Rig writes while the controller runs (``session-<UTC time>``
under its ``record_dir``), the motion tracked meanwhile, and, once stopped, the NWB file next to the folder (same stem)
with what the NWB validator said.

labkit.rig.ui.controller.RigController opens a :class:`SessionRecording` at ``start(record=True)`` and finishes it in
its big stop (``stop``); it keeps a :class:`SessionResult` of each session. The folder is written by the Rig itself
(its reader thread, labkit.rig.host.recording), independently of the display.
"""

from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from labkit.rig.host.nwb import session_to_nwb, validate_nwb
from labkit.rig.host.recording import SessionError

__all__ = ["SessionResult", "SessionRecording"]


@dataclass
class SessionResult:
    """A stopped recording: its folder, its NWB file and what the NWB validator said (empty = valid)."""

    session_dir: Path
    nwb_path: Path | None = None
    nwb_errors: list = field(default_factory=list)
    pulses: list = field(default_factory=list)
    counters: dict = field(default_factory=dict)


class SessionRecording:
    """``rig`` recording a new session folder under ``record_dir`` (closed by :meth:`close`); ``first_pulse``: the
    controller's index of the session's first pulse; ``motion``: the (time, zone strains) frames tracked meanwhile."""

    def __init__(self, rig, record_dir: Path):
        record_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        folder = record_dir / f"session-{stamp}"
        self._stack = ExitStack()
        self._stack.enter_context(rig.record(folder))
        self.result = SessionResult(folder)
        self.first_pulse = 0
        self.motion: list[tuple[float, np.ndarray]] = []

    def close(self) -> None:
        """Stop recording the folder."""
        self._stack.close()

    def motion_for_nwb(self, camera) -> dict | None:
        """The motion frames tracked while recording, as session_to_nwb wants them (the caller holds the controller's
        lock); ``camera``: the simulator's camera they came from."""
        if not self.motion:
            return None
        return {
            "frame_times_s": np.array([t for t, _ in self.motion]),
            "values": np.stack([v for _, v in self.motion]),
            "zone_positions_mm": camera.worm.zone_centres_mm,
            "unit": "1 (L / L_rest - 1)",
            "description": "longitudinal strain per body zone, tracked live from the simulated camera "
            "(labkit.rig.analysis.tracking.SegmentTracker; NaN in frames it could not use)",
        }

    def write_nwb(self, motion: dict | None) -> str:
        """Convert the closed folder to NWB (with ``motion``) and validate the file, into :attr:`result`; returns the
        status line for the panel."""
        session = self.result
        try:
            session.nwb_path = session_to_nwb(
                session.session_dir, session.session_dir.with_suffix(".nwb"), motion=motion
            )
        except SessionError as err:  # the folder stays as it is, for load_session and a later retry
            session.nwb_errors = [str(err)]
            return f"stopped; {session.session_dir.name} not converted to NWB: {err}"
        session.nwb_errors = [str(e) for e in validate_nwb(session.nwb_path)]
        return f"stopped; saved {session.nwb_path.name} " + (
            "(valid NWB)" if not session.nwb_errors else f"({len(session.nwb_errors)} NWB errors)"
        )
