"""A pipeline killed at any moment: ``--check`` never calls a wrong manifest up to date, and no process survives."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit import paths, pipeline
from labkit.manifest import load_manifest, publish
from tests.conftest import plotting_notebook, write_notebook

KEY_SUFFIX = "90_walk.ipynb"

# publish() in a child process that dies like kill -9 right after its k-th change to the file system
KILL_AFTER = """
import json, os, sys
from pathlib import Path
from labkit.manifest import publish

spec, k = json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2])
done = 0

def dying(op):
    def call(*args, **kwargs):
        global done
        result = op(*args, **kwargs)
        done += 1
        if done == k:
            os._exit(9)
        return result
    return call

for name in ("replace", "rename", "unlink", "remove", "rmdir", "mkdir", "link", "symlink"):
    setattr(os, name, dying(getattr(os, name)))
publish(spec["notebook"], spec["record"], Path(spec["staging"]), Path(spec["figures"]), spec["run_info"])
print(done)
"""


def _record(tag: str, names: list[str]) -> dict:
    return {
        "config": {"scale": "smoke", "seed": 0},
        "figures": [
            {"name": n, "file": f"{n}.png", "caption": f"{n} of run {tag}", "numbers": {"run": tag}} for n in names
        ],
        "claims": [{"claim": f"run {tag} holds", "passed": tag == "B", "figures": []}],
        "execution": {"scheduler": None, "workers": 1, "threads": 2, "pools": [], "device": None, "cpu": "test"},
        "package_versions": {"numpy": tag},
    }


def _stage(folder: Path, tag: str, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for n in names:
        (folder / f"{n}.png").write_bytes(f"png {n} of run {tag}".encode() * 100)
    return folder


def _state(figures: Path, key: str) -> tuple[list, dict]:
    """What a reader of ``figures`` sees of one notebook: its manifest entries and the bytes of their files."""
    entries = [e for e in load_manifest(figures)["figures"] if e["notebook"] == key]
    files = {}
    for e in entries:
        for name in (e["file"], e["sidecar"]):
            files[name] = (figures / name).read_bytes() if (figures / name).exists() else None
    return entries, files


def _up_to_date(sandbox, figures: Path) -> bool:
    lines = []
    code = pipeline.run(
        "smoke",
        check_only=True,
        notebooks_dir=sandbox.notebooks,
        figures_dir=figures,
        build_dir=sandbox.build,
        echo=lines.append,
    )
    return code == 0


@pytest.mark.parametrize(
    "before, after",
    [(["90_a", "90_b"], ["90_a", "90_b", "90_c"]), (["90_a", "90_b", "90_c"], ["90_a", "90_b"])],
    ids=["adds-a-figure", "drops-a-figure"],
)
def test_a_publish_killed_after_any_write_is_never_reported_up_to_date_with_a_wrong_manifest(
    sandbox, tmp_path, before, after
):
    nb = pipeline.Notebook(plotting_notebook(sandbox.notebooks / KEY_SUFFIX, "90_walk"))
    old_inputs = pipeline.input_components(nb, {"scale": "quick"})  # run A: made from older inputs
    new_inputs = pipeline.input_components(nb, {"scale": "smoke"})  # run B: the current inputs
    run_a = {"scale": "quick", "input_hash": pipeline.input_hash(old_inputs), "inputs": old_inputs, "run_id": "A"}
    run_b = {"scale": "smoke", "input_hash": pipeline.input_hash(new_inputs), "inputs": new_inputs, "run_id": "B"}
    published_a = tmp_path / "published-a"
    publish(nb.key, _record("A", before), _stage(tmp_path / "staging-a", "A", before), published_a, run_a)
    staging_b = _stage(tmp_path / "staging-b", "B", after)
    spec = {"notebook": nb.key, "record": _record("B", after), "staging": str(staging_b), "run_info": run_b}

    def publish_b(figures: Path, kill_after: int) -> subprocess.CompletedProcess:
        shutil.rmtree(figures, ignore_errors=True)
        shutil.copytree(published_a, figures)
        (tmp_path / "spec.json").write_text(json.dumps({**spec, "figures": str(figures)}))
        return subprocess.run(
            [sys.executable, "-c", KILL_AFTER, str(tmp_path / "spec.json"), str(kill_after)],
            cwd=paths.ROOT,
            capture_output=True,
            text=True,
        )

    complete = publish_b(tmp_path / "complete", 0)
    assert complete.returncode == 0, complete.stderr
    writes = int(complete.stdout)
    committed = _state(tmp_path / "complete", nb.key)
    assert _up_to_date(sandbox, tmp_path / "complete")
    assert not _up_to_date(sandbox, published_a)  # A was made from other inputs

    undetected = []
    for k in range(1, writes + 1):
        killed = publish_b(sandbox.figures, k)
        assert killed.returncode == 9, killed.stderr
        if _up_to_date(sandbox, sandbox.figures) and _state(sandbox.figures, nb.key) != committed:
            undetected.append(k)
    print(f"kill points: {writes}; undetected wrong manifests: {len(undetected)} {undetected}")
    assert not undetected, f"killed after write {undetected} of {writes}: --check says up to date, manifest is wrong"


# --- kill -9 of the whole pipeline ----------------------------------------------------------------------

SLEEPER = """
import concurrent.futures, json, multiprocessing, os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
worker = pool.submit(os.getpid).result()
with open({pidfile!r} + ".tmp", "w") as f:
    json.dump({{"kernel": os.getpid(), "children": [child.pid, worker]}}, f)
os.replace({pidfile!r} + ".tmp", {pidfile!r})
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has died; only its exit status is left


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                pass
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals and /proc are Linux's")
def test_kill_9_of_the_pipeline_takes_every_process_it_started_down(sandbox, tmp_path):
    tries, orphans = 3, {}
    for attempt in range(tries):
        pidfile = tmp_path / f"pids-{attempt}.json"
        write_notebook(
            sandbox.notebooks / "90_sleep.ipynb", 'scale = "quick"\nseed = 0', SLEEPER.format(pidfile=str(pidfile))
        )
        log = open(tmp_path / f"pipeline-{attempt}.log", "w")
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "labkit.pipeline",
                "--scale",
                "smoke",
                "--force",
                "--notebooks-dir",
                str(sandbox.notebooks),
                "--figures-dir",
                str(sandbox.figures),
                "--build-dir",
                str(sandbox.build),
            ],
            cwd=paths.ROOT,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 120
        while not pidfile.exists():
            assert run.poll() is None, (tmp_path / f"pipeline-{attempt}.log").read_text()
            assert time.monotonic() < deadline, "the notebook never started"
            time.sleep(0.2)
        pids = json.loads(pidfile.read_text())
        tree = _descendants(run.pid) | {pids["kernel"], *pids["children"]}
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 5
        while any(map(_alive, tree)) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = sorted(pid for pid in tree if _alive(pid))
        for pid in survivors:  # clean up after a failure: only the processes this test started
            os.kill(pid, signal.SIGKILL)
        orphans[attempt] = (len(tree), survivors)
    print(f"processes tracked and left alive 5 s after kill -9, per try: {orphans}")
    assert not any(survivors for _, survivors in orphans.values()), orphans
