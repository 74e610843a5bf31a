"""What a notebook records about its figures and claims, from inside its kernel.

A notebook creates one :class:`Recorder` from its config, saves each figure with :meth:`Recorder.save`
and checks its paper's claims with :meth:`Recorder.check`. Everything goes to the run folder
(``paths.run_dir()``): the PNGs and ``record.json`` (config, figures, captions, key numbers, claims with
their measured values, the execution settings, thread pools, device and CPU (``labkit.execution.describe``),
package versions and the labkit folder as the kernel sees them). Under the
pipeline a Recorder refuses to start when the kernel imports another labkit than the one whose code the pipeline
hashed (``$LABKIT_HASHED``): the recorded inputs would describe code that did not run. The pipeline then
publishes the run: sidecars, ``figures/MANIFEST.json`` and the index (see ``labkit.manifest``). A failed claim
is recorded with ``passed: false`` and printed; it never disappears.
"""

import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from labkit import execution, paths, repro
from labkit.atomic import atomic_target, atomic_write_text
from labkit.config import NotebookConfig

__all__ = ["Recorder", "jsonable", "pinned_packages"]

_NAME = re.compile(r"^[0-9]{2}[a-z]?_[a-z0-9_]+$")


def jsonable(value: Any) -> Any:
    """Numbers, arrays and containers as plain JSON values (floats rounded to 10 significant digits; NaN and
    infinities become ``null``)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.10g}") if np.isfinite(value) else None  # JSON has no NaN or infinity
    return value


def pinned_packages() -> list[str]:
    """Names of the packages pinned directly (requirements.txt and requirements-nodeps.txt)."""
    lines = [ln for p in paths.REQUIREMENTS if p.suffix == ".txt" for ln in p.read_text().splitlines()]
    return [re.split(r"[=<>~!\[; ]", ln.strip())[0] for ln in lines if ln.strip() and not ln.startswith("#")]


class Recorder:
    """Collects one notebook run's figures and claims into the run folder."""

    def __init__(self, config: NotebookConfig):
        hashed = os.environ.get("LABKIT_HASHED")
        if hashed and Path(hashed) != paths.LABKIT:
            raise RuntimeError(
                f"this kernel imports labkit from {paths.LABKIT}, but the pipeline hashed {hashed}: "
                "its figures would be recorded against code that did not run; make the kernel import "
                "that checkout (check PYTHONPATH, editable installs and the kernelspec)"
            )
        self.config = config
        self.dir = paths.run_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in [*self.dir.glob("*.png"), self.dir / "record.json"]:
            stale.unlink(missing_ok=True)
        repro.setup()
        self.figures: list[dict[str, Any]] = []
        self.claims: list[dict[str, Any]] = []

    def save(self, fig, name: str, caption: str, numbers: dict[str, Any] | None = None) -> None:
        """Save ``fig`` as ``<name>.png``; ``name`` starts with the notebook's id, e.g. ``01a_grid``."""
        if not _NAME.match(name):
            raise ValueError(f"figure name {name!r} must look like '01a_some_name' (notebook id, then [a-z0-9_])")
        if any(f["name"] == name for f in self.figures):
            raise ValueError(f"figure {name!r} was already saved in this run")
        path = self.dir / f"{name}.png"
        with atomic_target(path) as tmp:
            fig.savefig(tmp, format="png", **repro.SAVEFIG_KWARGS)
        self.figures.append({"name": name, "file": path.name, "caption": caption, "numbers": jsonable(numbers or {})})
        self._write()

    def check(
        self, claim: str, passed: bool, figures: list[str] | None = None, known_failure: str = "", **measured: Any
    ) -> None:
        """Record a claim, whether it held, and the measured values behind the verdict.

        ``figures`` names the figures the claim is about (default: all figures of the notebook).
        ``known_failure`` documents a claim that is known *not* to reproduce here, and why (the notebook's prose
        says so too). It changes nothing about the verdict: a failed claim is still recorded and shown as failed,
        with the explanation next to it; a failed claim *without* one is a regression (the tests reject it).
        """
        unknown = set(figures or []) - {f["name"] for f in self.figures}
        if unknown:
            saved = [f["name"] for f in self.figures]
            raise ValueError(f"claim refers to unsaved figure(s) {sorted(unknown)}; saved: {saved}")
        entry = {"claim": claim, "passed": bool(passed), "figures": list(figures or []), **jsonable(measured)}
        if known_failure and not passed:
            entry["known_failure"] = known_failure
        self.claims.append(entry)
        values = ", ".join(f"{k}={v}" for k, v in jsonable(measured).items())
        verdict = "PASS" if passed else ("FAIL, known not to reproduce" if known_failure else "FAIL")
        print(f"[{verdict}] {claim}  ({values})")
        self._write()

    def _write(self) -> None:
        versions = {}
        for name in pinned_packages():
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
        record = {
            "config": jsonable(self.config.to_dict()),
            "figures": self.figures,
            "claims": self.claims,
            "execution": execution.describe(),
            "package_versions": versions,
            "labkit": str(paths.LABKIT),
        }
        atomic_write_text(self.dir / "record.json", json.dumps(record, indent=2, sort_keys=True))
