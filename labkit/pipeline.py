"""The headless notebook runner behind ``make figures``.

For every numbered notebook (``notebooks/NN*.ipynb``) the pipeline

1. computes the notebook's inputs (:mod:`labkit.inputs`): its code cells, the parameters passed to it, the source of
   every labkit module it imports (transitively, by static analysis of ``import`` statements), the pinned
   requirements and the repository's ``matplotlibrc``; their hash is the notebook's *input hash*;
2. skips the notebook when its published figures were made from the same inputs (and are the files the
   manifest committed), and otherwise says why it runs (``--force`` re-runs everything);
3. executes it with papermill on the project's registered kernel (explicit start and cell timeouts), with
   fixed thread counts and ``PYTHONHASHSEED``, writing the figures and the executed copy to a staging folder of
   its own (``build/staging/<run id>/<notebook>/``; the executed copy then moves to ``build/executed/<scale>/``);
4. on success publishes the figures with their sidecars (``labkit.manifest``); on failure names the
   notebook and the failing cell, and leaves every published figure and manifest entry untouched.

One pipeline per figures folder: a run holds the folder's lock (``labkit.manifest.exclusive``) from its first look
at the published figures to its last publish, and a second run on the same folder is refused at once, naming the
pid of the first (``--check`` takes no lock). Nothing outlives the pipeline: its worker processes get SIGKILL when
it dies (Linux's parent-death signal), and each kernel runs under a guard process that kills the kernel's whole
process group (the kernel and everything it started) when the worker dies, and what the kernel left running when
the kernel exits. The kernel imports the labkit it was hashed from (the repository root leads its
``PYTHONPATH``); a kernel that imports another labkit all the same is refused.

Where the work runs is not what it computes: the execution settings (:mod:`labkit.execution`: a Dask
``--scheduler`` for the generation loops of 01b–01d, else a local pool of ``--workers``; ``$LABKIT_THREADS``) reach
each kernel as environment variables, never as notebook parameters, so they are outside the input hash (moving a run
to a cluster leaves its figures up to date) and each sidecar records them in its ``execution`` section.

Usage: ``python -m labkit.pipeline [--scale full] [--force] [--jobs 1] [--check] [-p key=value]
[--scheduler tcp://host:8786] [--workers 2] [NOTEBOOK ...]``.
"""

import argparse
import ast
import concurrent.futures
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import kernel, paths
from labkit.config import SCALES
from labkit.execution import Execution, current
from labkit.inputs import Notebook, _rel, declared_parameters, discover, input_components, input_hash, stale_reasons
from labkit.manifest import Busy, NotPublished, exclusive, publish, recorded_inputs

__all__ = ["KERNEL", "BUSY", "run"]

KERNEL = kernel.KERNEL
CELL_TIMEOUT_S = {"smoke": 600, "quick": 3600, "full": 3 * 3600, "paper": None}
MAX_JOBS = 4  # kernels collide on ports beyond a few parallel workers
BUSY = os.EX_TEMPFAIL  # 75, sysexits.h: another pipeline is publishing to the same figures folder; try again later


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain"))}
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"git_commit": None, "git_dirty": None}


def _run_record(staging: Path) -> dict[str, Any]:
    """The kernel's ``record.json``; raises ValueError when another labkit than the hashed one wrote it."""
    path = staging / "record.json"
    if not path.exists():
        return {"figures": [], "claims": []}
    record = json.loads(path.read_text())
    if record.get("labkit") != str(paths.LABKIT):
        raise ValueError(
            f"its run record was made by {record.get('labkit') or 'an unknown labkit'}, but the "
            f"pipeline hashed {paths.LABKIT}: its figures would describe code that did not run"
        )
    return record


@dataclass
class _Job:
    notebook: Notebook
    components: dict[str, Any]
    reasons: list[str] = field(default_factory=list)


def _stale(jobs: list[_Job], figures_dir: Path, force: bool, check_only: bool, echo) -> list[_Job]:
    """The jobs that must run, each with its reasons (said through ``echo``)."""
    todo = []
    for job in jobs:
        try:
            job.reasons = (
                ["forced (FORCE=1)"]
                if force
                else stale_reasons(job.components, recorded_inputs(job.notebook.key, figures_dir))
            )
        except NotPublished as e:
            job.reasons = [str(e)]
        if job.reasons:
            echo(f"{'stale' if check_only else 'run '}  {job.notebook.name}: " + "; ".join(job.reasons))
            todo.append(job)
        else:
            echo(
                f"skip  {job.notebook.name}: up to date "
                f"(inputs {input_hash(job.components)} unchanged since its figures were made)"
            )
    return todo


def run(
    scale: str = "full",
    *,
    force: bool = False,
    jobs: int = 1,
    patterns: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
    execution: Execution | None = None,
    check_only: bool = False,
    notebooks_dir: Path = paths.NOTEBOOKS,
    figures_dir: Path | None = None,
    build_dir: Path = paths.BUILD,
    echo=print,
) -> int:
    """Bring the figures of the selected notebooks up to date; returns the process exit status.

    ``parameters`` override the notebooks' parameters cells (and enter the input hash); ``execution`` says where the
    kernels run their work (default: :func:`labkit.execution.current`) and does not.

    With ``check_only`` nothing runs: the status is 1 when any notebook is stale. Otherwise the run holds
    ``figures_dir``'s lock throughout; when another pipeline holds it, nothing runs, the refusal goes to stderr and
    the status is :data:`BUSY` (so a script can tell "try again later" from a failed notebook, status 1).
    """
    if scale not in SCALES:
        raise SystemExit(f"unknown scale {scale!r}; allowed: {', '.join(SCALES)}")
    if "scale" in (parameters or {}):
        raise SystemExit(
            f"-p scale={parameters['scale']}: set the scale with --scale (it also sets the cell "
            "timeout, where the executed copy goes and the scale the sidecars record)"
        )
    figures_dir = Path(figures_dir or paths.figures_dir())
    notebooks = discover(notebooks_dir, patterns)
    if not notebooks:
        raise SystemExit(f"no numbered notebook in {notebooks_dir} matches {patterns or '*'}")

    selected = []
    for nb in notebooks:
        declared = declared_parameters(nb.path)
        params = {"scale": scale, **(parameters or {})}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            options = [f"--{name}" for name in unknown if name in ("scheduler", "workers")]
            hint = f" (use {', '.join(options)}: where the work runs is not a parameter)" if options else ""
            raise SystemExit(f"{nb.name}: unknown parameter(s) {unknown}; allowed: {', '.join(declared)}{hint}")
        selected.append(_Job(nb, input_components(nb, params)))
    if check_only:
        return int(bool(_stale(selected, figures_dir, force, check_only, echo)))
    try:
        with exclusive(figures_dir):
            todo = _stale(selected, figures_dir, force, check_only, echo)
            return _run_jobs(todo, scale, jobs, execution or current(), figures_dir, build_dir, echo) if todo else 0
    except Busy as e:
        print(e, file=sys.stderr)
        return BUSY


def _run_jobs(
    todo: list[_Job], scale: str, jobs: int, execution: Execution, figures_dir: Path, build_dir: Path, echo
) -> int:
    """Execute the notebooks, each in a staging folder of this run, and publish each success; 1 if any failed."""
    (build_dir / "staging").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%dT%H%M%S-"), dir=build_dir / "staging"))
    run_info = {"run_id": run_dir.name, "scale": scale, **_git()}
    workers = max(1, min(jobs, MAX_JOBS, len(todo)))
    try:
        with concurrent.futures.ProcessPoolExecutor(
            workers, multiprocessing.get_context("fork"), initializer=kernel.die_with, initargs=(os.getpid(),)
        ) as pool:
            futures = {}
            for job in todo:
                staging = run_dir / job.notebook.name
                staging.mkdir()
                futures[
                    pool.submit(
                        kernel.execute,
                        str(job.notebook.path),
                        str(staging / job.notebook.path.name),
                        job.components["parameters"],
                        kernel.kernel_env(staging, execution),
                        CELL_TIMEOUT_S[scale],
                    )
                ] = (job, staging)
            done = [
                _finish(*futures[future], future.result(), run_info, figures_dir, build_dir, echo)
                for future in concurrent.futures.as_completed(futures)
            ]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if all(done) else 1


def _finish(
    job: _Job, staging: Path, result: dict[str, Any], run_info: dict[str, Any], figures_dir: Path, build_dir: Path, echo
) -> bool:
    """Keep the executed copy, then publish a successful run or say why not; False when the notebook failed."""
    out = build_dir / "executed" / run_info["scale"] / job.notebook.path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    if (staging / out.name).exists():
        os.replace(staging / out.name, out)
    if not result["ok"]:
        echo(
            f"FAILED {job.notebook.key}: {result['error']}\n       executed copy: {_rel(out)}; "
            "its published figures are left as they were"
        )
        return False
    run_info = {
        **run_info,
        "input_hash": input_hash(job.components),
        "inputs": job.components,
        "wall_time_s": result["wall_time_s"],
        "executed_notebook": _rel(out),
    }
    try:
        record = _run_record(staging)
        entries = publish(job.notebook.key, record, staging, figures_dir, run_info)
    except ValueError as e:
        echo(f"FAILED {job.notebook.key}: {e}")
        return False
    claims = record["claims"]
    failed = [c["claim"] for c in claims if not c["passed"]]
    echo(
        f"done  {job.notebook.name}: {len(entries)} figure(s) in {result['wall_time_s']:.1f} s; "
        f"claims {len(claims) - len(failed)}/{len(claims)} passed"
    )
    for c in claims:
        if not c["passed"]:
            known = f" (known not to reproduce: {c['known_failure']})" if "known_failure" in c else ""
            echo(f"      CLAIM FAILED: {c['claim']}{known}")
    return True


def _parse_parameter(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"parameter {text!r} must look like key=value")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook stems or globs (default: all numbered notebooks)")
    parser.add_argument("--scale", default="full", choices=SCALES)
    parser.add_argument("--force", action="store_true", help="re-run even when up to date")
    parser.add_argument("--jobs", type=int, default=1, help=f"parallel notebooks (at most {MAX_JOBS})")
    parser.add_argument("--check", action="store_true", help="only report stale notebooks; exit 1 if any")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        type=_parse_parameter,
        default=[],
        help="notebook parameter override, key=python-literal",
    )
    parser.add_argument(
        "--scheduler",
        help="a Dask scheduler address (tcp://host:8786) for the generation loops of "
        "01b-01d (default: $LABKIT_SCHEDULER, else a local process pool); not hashed",
    )
    parser.add_argument(
        "--workers", type=int, help="processes of the local pool (default: $LABKIT_WORKERS, else 2); not hashed"
    )
    parser.add_argument("--notebooks-dir", type=Path, default=paths.NOTEBOOKS, help="where the notebooks are")
    parser.add_argument(
        "--figures-dir",
        type=Path,
        default=None,
        help="where figures are published (default: $LABKIT_FIGURES_DIR or figures/)",
    )
    parser.add_argument("--build-dir", type=Path, default=paths.BUILD, help="executed copies and staging")
    args = parser.parse_args(argv)
    given = {"scheduler": args.scheduler, "workers": args.workers}
    try:
        execution = current().replace(**{name: value for name, value in given.items() if value is not None})
    except ValueError as e:
        parser.error(str(e))
    return run(
        args.scale,
        force=args.force,
        jobs=args.jobs,
        patterns=args.notebooks or None,
        parameters=dict(args.param),
        execution=execution,
        check_only=args.check,
        notebooks_dir=args.notebooks_dir,
        figures_dir=args.figures_dir,
        build_dir=args.build_dir,
    )


if __name__ == "__main__":
    sys.exit(main())
