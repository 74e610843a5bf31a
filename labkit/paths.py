"""Every path of the project, resolved from the repository root (never from the working directory).

Two run-time overrides exist, both set by the pipeline for the kernels it starts:
``LABKIT_RUN_DIR`` (where a running notebook stages its figures and run record; one fresh folder per run) and
``LABKIT_FIGURES_DIR`` (the published figures folder; tests point it at a temporary folder).
"""

import os
from pathlib import Path

__all__ = [
    "ROOT",
    "LABKIT",
    "NOTEBOOKS",
    "BUILD",
    "FIGURES",
    "MATPLOTLIBRC",
    "REQUIREMENTS",
    "figures_dir",
    "run_dir",
]

ROOT = Path(__file__).resolve().parent.parent
LABKIT = ROOT / "labkit"
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build"
FIGURES = ROOT / "figures"
MATPLOTLIBRC = ROOT / "matplotlibrc"
REQUIREMENTS = (ROOT / "requirements.txt", ROOT / "requirements.lock", ROOT / "requirements-nodeps.txt")


def figures_dir() -> Path:
    """The published figures folder: ``$LABKIT_FIGURES_DIR`` or ``figures/``."""
    return Path(os.environ.get("LABKIT_FIGURES_DIR", FIGURES))


def run_dir() -> Path:
    """Where a notebook stages its outputs: ``$LABKIT_RUN_DIR`` under the pipeline, else ``build/interactive``."""
    return Path(os.environ.get("LABKIT_RUN_DIR", BUILD / "interactive"))
