"""Where and how a notebook's computation runs, kept apart from what it computes.

The execution settings are the Dask ``scheduler`` the generation loops of 01b–01d send their runs to (none: a local
process pool of ``workers``) and the kernel's BLAS/OpenMP/torch ``threads``; torch's ``device`` is the GPU when torch
sees one (:func:`device`). They decide where the work runs and how fast, not what it
computes, so they are not notebook parameters and never enter the pipeline's input hash: moving a run to a cluster
or a GPU leaves its figures up to date. Threads and devices may still change the last bits of a trained model
(README, "Reproducibility"), so each sidecar records what was used in its ``execution`` section
(:func:`describe`).

They travel as environment variables (:data:`VARIABLES`): the pipeline sets them for each kernel from its
``--scheduler`` and ``--workers`` options and ``$LABKIT_THREADS``; in ``make lab`` export them before starting.
"""

import dataclasses
import os
import platform
import re
import sys
from dataclasses import dataclass
from typing import Any

from labkit.config import Check, Params, param, positive_int

__all__ = ["VARIABLES", "scheduler_address", "Execution", "current", "device", "cpu", "describe"]

#: the environment variable that carries each setting into a kernel
VARIABLES = {"scheduler": "LABKIT_SCHEDULER", "workers": "LABKIT_WORKERS", "threads": "LABKIT_THREADS"}

scheduler_address = Check(
    lambda v: isinstance(v, str) and (v == "" or re.fullmatch(r"[a-z]+://\S+", v) is not None),
    "empty (a local process pool) or a Dask scheduler address such as 'tcp://host:8786'",
)


@dataclass(frozen=True)
class Execution(Params):
    """The execution settings (see the module docstring)."""

    scheduler: str = param("", scheduler_address)  # a Dask scheduler address; empty: a local process pool
    workers: int = param(2, positive_int)  # processes of the local pool (with no scheduler)
    threads: int = param(2, positive_int)  # BLAS/OpenMP/torch threads of the kernel, shared by its workers

    def environment(self) -> dict[str, str]:
        """The variables that carry these settings into a kernel."""
        return {VARIABLES[name]: str(value) for name, value in self.to_dict().items()}


def current() -> Execution:
    """The settings in force in this process, from :data:`VARIABLES` (an unset variable keeps the default); a bad
    value raises :class:`labkit.config.ConfigError` naming the variable and what it allows."""
    values = {}
    for f in dataclasses.fields(Execution):
        raw = os.environ.get(VARIABLES[f.name])
        if raw is not None:
            value = int(raw) if f.type is int and raw.strip().isdigit() else raw
            values[f.name] = f.metadata["check"].check(VARIABLES[f.name], value, "environment")
    return Execution(**values)


def device():
    """torch's device for new models and tensors: the GPU when torch sees one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu() -> dict[str, str]:
    """The machine and its widest vector instruction set: torch's and MKL's kernels choose their code path by it,
    so it sets the last bits of every trained model (README, "Reproducibility")."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line for line in f if line.startswith("flags")), ":").split(":", 1)[1].split())
    except OSError:
        pass
    isa = next((name for name in ("avx512f", "avx2", "avx", "sse4_2") if name in flags), "unknown")
    return {"machine": platform.machine(), "vector_isa": isa}


def describe() -> dict[str, Any]:
    """A sidecar's ``execution`` section, as this process sees it: the settings, the thread pools in force, torch's
    device (``None`` when torch is not loaded) and the CPU."""
    from threadpoolctl import threadpool_info

    return {
        **current().to_dict(),
        "pools": sorted({(p["internal_api"], p["num_threads"]) for p in threadpool_info()}),
        "device": str(device()) if "torch" in sys.modules else None,
        "cpu": cpu(),
    }
