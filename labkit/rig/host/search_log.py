"""The closed-loop search's trials in a session folder: ``search_trials.jsonl``, beside the pulses of
labkit.rig.host.recording.

Auto-map (labkit.rig.ui.automap) runs the search of labkit.rig.experiments.search while the rig records a session
folder; :class:`SearchTrialWriter` appends one JSON object per classified trial and fsyncs it at once (a trial comes
at most every 0.25 s), so after a crash every trial up to the last is readable. :func:`load_search_trials` reads and
checks the file like load_session does the others (SessionError naming the file, line and key; unreadable lines
skipped and listed), and labkit.rig.host.nwb turns it into the NWB file's trials table: one row per trial,
start = the pulse onset, stop = the end of the response window classified (device clock), id = ``trial``, the
columns of :data:`TRIAL_COLUMNS`.

A line holds what the search knew right after its trial: the stimulus it chose (requested) and the device's echo,
whether it was a template pulse (sub-threshold, for the artefact template; not fitted), whether the MGF and the LGF
fired as classified then (the analysis re-runs on all epochs after each trial, so a later verdict on the same pulse
may differ), and each fibre's strength–duration estimate after it — rheobase Rb, chronaxie c and their standard
errors (labkit.rig.experiments.strength_duration), null while undefined (NaN in NWB). A pulse delivered but not
classified (the search was stopped during its analysis) is in pulses.jsonl only.
"""

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from labkit.rig.host.append_file import AppendFile, read_jsonl
from labkit.rig.host.recording import INDEX, NON_NEGATIVE, POSITIVE, Rule, SessionError, check_object, is_number

__all__ = ["FILE_NAME", "FIBRES", "TRIAL_COLUMNS", "SearchTrialWriter", "load_search_trials"]

FILE_NAME = "search_trials.jsonl"
FIBRES = {"mgf": "medial giant fibre (MGF)", "lgf": "lateral giant fibres (LGF)"}

_FLAG: Rule = (lambda v: isinstance(v, bool), "true or false")
_ESTIMATE: Rule = (lambda v: v is None or is_number(v), "a finite number, or null while undefined")
_ESTIMATES = {
    "rheobase_v": "rheobase Rb, V",
    "rheobase_se_v": "standard error of Rb, V",
    "chronaxie_ms": "chronaxie c, ms",
    "chronaxie_se_ms": "standard error of c, ms",
}

#: column -> (rule of its JSON value, NWB dtype, description); the trial's number and times are not columns
TRIAL_COLUMNS: dict[str, tuple[Rule, type, str]] = {
    "vpp_requested": (POSITIVE, np.float64, "peak-to-peak voltage the search chose (requested), V"),
    "period_ms_requested": (POSITIVE, np.float64, "sine period the search chose (requested), ms"),
    "vpp_measured": (
        NON_NEGATIVE,
        np.float64,
        "peak-to-peak voltage the device measured it delivered (what the model is fitted on), V",
    ),
    "period_ms_measured": (NON_NEGATIVE, np.float64, "sine period the device measured it delivered, ms"),
    "template": (_FLAG, bool, "True for a template pulse: sub-threshold, for the artefact template, not fitted"),
    **{
        f"{fibre}_fired": (_FLAG, bool, f"the {name} fired, as classified right after this trial")
        for fibre, name in FIBRES.items()
    },
    **{
        f"{fibre}_{key}": (
            _ESTIMATE,
            np.float64,
            f"the {name}'s {what} after this trial (strength-duration model "
            "fitted on the trials so far; NaN while undefined)",
        )
        for fibre, name in FIBRES.items()
        for key, what in _ESTIMATES.items()
    },
}
_RULES: dict[str, Rule] = {
    "trial": INDEX,
    "t_start_s": NON_NEGATIVE,
    "t_stop_s": NON_NEGATIVE,
    **{name: rule for name, (rule, _, _) in TRIAL_COLUMNS.items()},
}


class SearchTrialWriter:
    """Appends trials to ``folder``/search_trials.jsonl (created here: an existing file is refused), each line
    checked first (nothing is written that :func:`load_search_trials` would refuse) and fsynced at once."""

    def __init__(self, folder):
        self.path = Path(folder) / FILE_NAME
        try:
            self._file = AppendFile(self.path, "x")
        except FileExistsError:
            raise FileExistsError(f"{self.path} already exists: one search per session folder") from None

    def write(self, trial: dict[str, Any]) -> None:
        """Append ``trial`` (the keys of the module docstring's line; NaN estimates are written as null)."""
        record = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in trial.items()}
        check_object(f"{self.path} (a trial to append)", record, _RULES)
        self._file.write(json.dumps(record) + "\n")
        self._file.sync()

    def close(self) -> None:
        self._file.close()


def load_search_trials(folder, crash_possible: bool) -> tuple[list[dict[str, Any]], list[int]]:
    """The checked trials of ``folder``/search_trials.jsonl in file order, and the line numbers of the unreadable lines
    skipped (``crash_possible``: the session did not close cleanly, so a torn last line is skipped silently); ([], [])
    when the folder has no such file. Trial numbers must increase and each trial must end after it starts."""
    path = Path(folder) / FILE_NAME
    rows, skipped = read_jsonl(path, crash_possible)
    trials, previous = [], -1
    for number, obj in rows:
        where = f"{path}, line {number}"
        trial = check_object(where, obj, _RULES)
        if trial["trial"] <= previous:
            raise SessionError(
                f"{where}: 'trial' must increase from line to line, got {trial['trial']} after {previous}"
            )
        if trial["t_stop_s"] <= trial["t_start_s"]:
            raise SessionError(
                f"{where}: 't_stop_s' must be after 't_start_s' = {trial['t_start_s']}, got {trial['t_stop_s']}"
            )
        trials.append(trial)
        previous = trial["trial"]
    return trials, skipped
