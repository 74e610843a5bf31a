"""One notebook on a guarded kernel: what :mod:`labkit.pipeline` runs in each worker process.

:func:`execute` runs a notebook with papermill on the project's registered kernel (explicit start and cell timeouts)
in an environment of fixed thread counts, ``PYTHONHASHSEED``, the Agg backend and the repository root first on
``PYTHONPATH`` (:func:`kernel_env`). Nothing outlives the pipeline: a worker gets SIGKILL when the pipeline dies
(:func:`die_with`, Linux's parent-death signal), and the kernel runs under :func:`guard`, which kills the kernel's
whole process group when the worker dies and stops what the kernel left running when the kernel exits
(:class:`GuardedKernelManager`, which also encrypts the kernel's sockets).
"""

import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from labkit import paths
from labkit.execution import Execution
from labkit.repro import THREAD_VARS

__all__ = ["KERNEL", "START_TIMEOUT_S", "kernel_env", "die_with", "guard", "GuardedKernelManager", "execute"]

KERNEL = "labkit"
START_TIMEOUT_S = 120


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def kernel_env(staging: Path, settings: Execution) -> dict[str, str]:
    """The variables a kernel runs under: its run folder, the execution ``settings`` and thread counts, and the
    repository root first on ``PYTHONPATH``, so that the kernel imports the labkit the pipeline hashed whichever
    labkit the venv's editable install points at (a worktree sharing another checkout's venv)."""
    pythonpath = [str(paths.ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "LABKIT_RUN_DIR": str(staging),
        "LABKIT_HASHED": str(paths.LABKIT),
        **settings.environment(),
        "LABKIT_HEADLESS": "1",  # explorers render once, statically
        **{var: str(settings.threads) for var in THREAD_VARS},
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


def die_with(parent: int) -> None:
    """Pool initializer: this worker gets SIGKILL when ``parent`` dies (Linux's parent-death signal; ``parent``
    forked it from the thread that runs the pool, which outlives the pool)."""
    if sys.platform.startswith("linux"):
        if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL):
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def guard(parent: int, kernel_cmd: list[str]) -> int:
    """Run the kernel as a child and guard its process group (a session of its own, made by jupyter_client for
    this process): kill the whole group when ``parent`` dies; when the kernel exits, stop whatever it left running.
    Returns the kernel's exit status."""
    try:
        parent_exit = os.pidfd_open(parent)  # readable once the parent has exited
    except ProcessLookupError:
        return 1
    if os.getppid() != parent:
        return 1
    kernel = subprocess.Popen(kernel_cmd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are sent to the whole group: they are the kernel's
    ready, _, _ = select.select([parent_exit, os.pidfd_open(kernel.pid)], [], [])
    if parent_exit in ready:
        os.killpg(0, signal.SIGKILL)  # this process included
    code = kernel.wait()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    return code if code >= 0 else 128 - code


class GuardedKernelManager(AsyncKernelManager):
    """Starts the kernel under :func:`guard` (on Linux), watching the process that starts it, and talks to it over
    CurveZMQ-encrypted sockets when libzmq and the kernelspec support them."""

    @default("transport_encryption")
    def _encrypted(self) -> str:
        import zmq

        return "auto" if zmq.has("curve") else "disabled"

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if not hasattr(os, "pidfd_open"):
            return cmd
        boot = (
            f"import sys; sys.path.insert(0, {str(paths.ROOT)!r}); from labkit.kernel import guard; "
            "sys.exit(guard(int(sys.argv[1]), sys.argv[2:]))"
        )
        return [sys.executable, "-I", "-c", boot, str(os.getpid()), *cmd]


def execute(
    nb_path: str, out_path: str, parameters: dict[str, Any], env: dict[str, str], cell_timeout: int | None
) -> dict[str, Any]:
    """Run one notebook with papermill (in a worker process); return success or the failing cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    os.environ.update(env)
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            nb_path,
            out_path,
            parameters=parameters,
            kernel_name=KERNEL,
            start_timeout=START_TIMEOUT_S,
            execution_timeout=cell_timeout,
            cwd=str(Path(nb_path).parent),
            progress_bar=False,
            kernel_manager_class=GuardedKernelManager,
        )
    except PapermillExecutionError as e:
        first = next((ln for ln in e.source.splitlines() if ln.strip()), "")
        return {"ok": False, "error": f"cell In [{e.exec_count}] (`{first.strip()}`) raised {e.ename}: {e.evalue}"}
    except Exception as e:  # kernel died, timed out, could not start ...
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    return {"ok": True, "wall_time_s": round(time.perf_counter() - t0, 2)}
