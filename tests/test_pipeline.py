"""The figure pipeline: input hashing, skip/rerun reasons, parameters, failure handling, determinism."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import paths, pipeline
from labkit.execution import Execution
from labkit.manifest import load_manifest
from tests.conftest import FIXTURE_HEADER, plotting_notebook, write_notebook

# --- runs ----------------------------------------------------------------------------------------------


def test_run_skip_and_rerun_with_reasons(sandbox):
    plotting_notebook(sandbox.notebooks / "90_walk.ipynb", "90_walk")
    assert sandbox.run() == 0
    assert "run   90_walk: no published figures" in sandbox.output
    assert "done  90_walk: 1 figure(s)" in sandbox.output and "claims 1/1 passed" in sandbox.output
    (entry,) = load_manifest(sandbox.figures)["figures"]
    assert entry["file"] == "90_walk.png" and entry["sidecar"] == "90_walk.json"
    assert entry["claims"][0]["passed"] is True
    sidecar = json.loads((sandbox.figures / "90_walk.json").read_text())
    for key in (
        "notebook",
        "parameters",
        "seed",
        "input_hash",
        "git_commit",
        "package_versions",
        "execution",
        "wall_time_s",
        "claims",
        "numbers",
    ):
        assert key in sidecar, key
    assert sidecar["execution"]["threads"] == 2 and sidecar["execution"]["scheduler"] == ""
    assert sidecar["package_versions"]["numpy"]
    assert "90_walk.png" in (sandbox.figures / "index.html").read_text()

    assert sandbox.run() == 0
    assert "skip  90_walk: up to date" in sandbox.output and "done" not in sandbox.output
    cluster = Execution(scheduler="tcp://cluster:8786", workers=3)
    assert sandbox.run(execution=cluster) == 0 and "skip  90_walk: up to date" in sandbox.output  # not hashed
    assert sandbox.run(force=True, execution=cluster) == 0 and "forced" in sandbox.output
    sidecar = json.loads((sandbox.figures / "90_walk.json").read_text())
    assert (sidecar["execution"]["scheduler"], sidecar["execution"]["workers"]) == ("tcp://cluster:8786", 3)
    assert sandbox.run(scale="quick") == 0 and "parameters changed" in sandbox.output
    assert sandbox.run(scale="quick", check_only=True) == 0
    (sandbox.figures / "90_walk.png").unlink()
    assert sandbox.run(scale="quick", check_only=True) == 1 and "stale" in sandbox.output


def test_unknown_parameter_fails_before_any_computation(sandbox):
    plotting_notebook(sandbox.notebooks / "90_walk.ipynb", "90_walk")
    with pytest.raises(SystemExit, match=r"unknown parameter\(s\) \['n_seed'\]; allowed: scale, seed"):
        sandbox.run(parameters={"n_seed": 3})
    with pytest.raises(SystemExit, match=r"\['scheduler'\]; allowed: scale, seed \(use --scheduler: where the work"):
        sandbox.run(parameters={"scheduler": "tcp://host:8786"})
    assert not sandbox.figures.exists() and not sandbox.build.exists()


def test_scale_is_set_with_the_scale_option_only(sandbox):
    plotting_notebook(sandbox.notebooks / "90_walk.ipynb", "90_walk")
    with pytest.raises(SystemExit, match=r"-p scale=quick: set the scale with --scale"):
        sandbox.run(parameters={"scale": "quick"})
    assert not sandbox.figures.exists() and not sandbox.build.exists()


def test_a_kernel_that_imports_another_labkit_is_refused(sandbox, tmp_path):
    other = tmp_path / "other-checkout"
    shutil.copytree(paths.LABKIT, other / "labkit", ignore=shutil.ignore_patterns("__pycache__"))
    for file in (paths.MATPLOTLIBRC, *paths.REQUIREMENTS):
        shutil.copy(file, other)
    # the notebook imports the copy; the pipeline hashed this checkout
    write_notebook(
        sandbox.notebooks / "90_walk.ipynb",
        "scale = 'quick'\nseed = 0",
        f"import sys\nsys.path.insert(0, {str(other)!r})",
        FIXTURE_HEADER,
    )
    assert sandbox.run() == 1
    assert "FAILED" in sandbox.output and f"imports labkit from {other / 'labkit'}" in sandbox.output
    assert f"hashed {paths.LABKIT}" in sandbox.output
    assert not (sandbox.figures / "90_walk.png").exists()


@pytest.mark.parametrize(
    "edit, said",
    [
        ("record['labkit'] = '/elsewhere/labkit'", "made by /elsewhere/labkit"),
        ("del record['labkit']", "made by an unknown labkit"),
    ],
)
def test_a_run_record_of_another_labkit_is_not_published(sandbox, edit, said):
    forged = f"""
record = json.loads((rec.dir / "record.json").read_text())
{edit}
(rec.dir / "record.json").write_text(json.dumps(record))
"""
    plotting_notebook(sandbox.notebooks / "90_walk.ipynb", "90_walk", extra="import json\n" + forged)
    assert sandbox.run() == 1
    assert said in sandbox.output and f"hashed {paths.LABKIT}" in sandbox.output
    assert not (sandbox.figures / "90_walk.png").exists()


def test_bad_parameter_value_fails_in_the_config_cell(sandbox):
    plotting_notebook(sandbox.notebooks / "90_walk.ipynb", "90_walk")
    assert sandbox.run(parameters={"seed": -1}) == 1
    assert "FAILED" in sandbox.output and "ConfigError" in sandbox.output
    assert "allowed: an integer >= 0" in sandbox.output
    assert "cell In [" in sandbox.output


def test_a_failing_notebook_is_named_and_leaves_other_figures_intact(sandbox):
    plotting_notebook(sandbox.notebooks / "90_walk.ipynb", "90_walk")
    failing = sandbox.notebooks / "91_fails.ipynb"
    plotting_notebook(failing, "91_walk")
    assert sandbox.run() == 0
    before = {p.name: p.read_bytes() for p in sandbox.figures.iterdir()}

    plotting_notebook(failing, "91_walk", extra="raise RuntimeError('deliberate failure')")
    assert sandbox.run() == 1
    assert "skip  90_walk" in sandbox.output
    assert "FAILED" in sandbox.output and "91_fails.ipynb" in sandbox.output
    assert "RuntimeError: deliberate failure" in sandbox.output and "cell In [" in sandbox.output
    after = {p.name: p.read_bytes() for p in sandbox.figures.iterdir()}
    assert after == before  # its own old figure, the other notebook's figure, sidecars, manifest, index
    assert {e["file"] for e in load_manifest(sandbox.figures)["figures"]} == {"90_walk.png", "91_walk.png"}

    plotting_notebook(sandbox.notebooks / "92_new.ipynb", "92_walk", extra="raise RuntimeError('also broken')")
    assert sandbox.run(jobs=2) == 1
    assert "92_new.ipynb" in sandbox.output and "91_fails.ipynb" in sandbox.output
    assert not (sandbox.figures / "92_walk.png").exists()


def test_a_notebook_that_saves_no_figure_fails(sandbox):
    write_notebook(sandbox.notebooks / "90_empty.ipynb", "scale = 'quick'\nseed = 0", FIXTURE_HEADER)
    assert sandbox.run() == 1 and "saved no figure" in sandbox.output


def test_figure_names_must_carry_the_notebook_id(sandbox):
    plotting_notebook(sandbox.notebooks / "90_walk.ipynb", "91_walk")
    assert sandbox.run() == 1 and "must start with '90_'" in sandbox.output


def test_a_failed_claim_is_published_and_reported(sandbox):
    plotting_notebook(
        sandbox.notebooks / "90_walk.ipynb",
        "90_walk",
        extra="rec.check('two is three', 2 == 3, figures=['90_walk'], two=2)",
    )
    assert sandbox.run() == 0
    assert "claims 1/2 passed" in sandbox.output and "CLAIM FAILED: two is three" in sandbox.output
    claims = load_manifest(sandbox.figures)["figures"][0]["claims"]
    assert [c["passed"] for c in claims] == [True, False] and claims[1]["two"] == 2
    assert "FAILED" in (sandbox.figures / "index.html").read_text()


def test_a_claim_known_not_to_reproduce_stays_failed_with_its_explanation(sandbox):
    plotting_notebook(
        sandbox.notebooks / "90_walk.ipynb",
        "90_walk",
        extra="rec.check('two is three', 2 == 3, known_failure='arithmetic', two=2)\n"
        "rec.check('two is two', 2 == 2, known_failure='unused when it passes')",
    )
    assert sandbox.run() == 0
    assert "claims 2/3 passed" in sandbox.output
    assert "CLAIM FAILED: two is three (known not to reproduce: arithmetic)" in sandbox.output
    claims = load_manifest(sandbox.figures)["figures"][0]["claims"]
    assert [c["passed"] for c in claims] == [True, False, True]
    assert claims[1]["known_failure"] == "arithmetic" and "known_failure" not in claims[2]
    assert "failed (documented)</span><br><small>arithmetic</small>" in (sandbox.figures / "index.html").read_text()


def test_two_forced_runs_give_identical_bytes(sandbox):
    plotting_notebook(sandbox.notebooks / "90_walk.ipynb", "90_walk")
    assert sandbox.run() == 0
    first = (sandbox.figures / "90_walk.png").read_bytes()
    assert sandbox.run(force=True) == 0
    assert (sandbox.figures / "90_walk.png").read_bytes() == first


def test_cli_rejects_an_unknown_scale(capsys):
    with pytest.raises(SystemExit):
        pipeline.main(["--scale", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_cli_rejects_a_bad_execution_setting(capsys):
    with pytest.raises(SystemExit):
        pipeline.main(["--workers", "0", "--check"])
    assert "bad value for 'workers': 0; allowed: an integer >= 1" in capsys.readouterr().err


# --- the README's cluster recipe ------------------------------------------------------------------------

CLUSTER_NOTEBOOK = """\
import matplotlib.pyplot as plt
import numpy as np
from distributed import get_worker

from labkit.collapse import generations
from labkit.collapse.config import GenerationsConfig
from labkit.provenance import Recorder

cfg = GenerationsConfig.from_params(scale=scale, seed=seed, seeds=(0, 1), n_generations=2)
rec = Recorder(cfg)


class Toy:  # defined in the kernel: Dask sends it to the workers by value
    def build(self):
        def fit(train, seed):
            return float(train.mean())

        def sample(mu, like, seed):
            return np.random.default_rng(seed).normal(mu, 1.0, len(like))

        def evaluate(mu, held_out):
            return {"loss": float(((held_out - mu) ** 2).mean())}

        rng = np.random.default_rng(0)
        family = generations.Family(fit, sample, evaluate, preview=lambda data: get_worker().address)
        return family, rng.normal(0, 1, 20), rng.normal(0, 1, 200)


runs = generations.run(Toy(), cfg)
fig, ax = plt.subplots(figsize=(3, 2))
for regime, losses in runs.table().items():
    ax.plot(losses.mean(axis=0), label=regime)
workers = sorted({g["preview"] for r in runs.results for g in r["generations"]})
rec.save(fig, "90_cluster", caption="toy generations on a Dask cluster", numbers={"workers": workers})
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster():
    """A ``dask scheduler`` and one ``dask worker --nthreads 1`` started as the README says, on a free local port;
    yields the scheduler's and the worker's addresses and stops both."""
    distributed = pytest.importorskip("distributed")
    dask = Path(sys.executable).with_name("dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": str(paths.ROOT)}  # the workers import this checkout's labkit
    quiet = dict(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"], **quiet
        )
    ]
    try:
        processes.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard"], **quiet))
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
            (worker,) = client.scheduler_info()["workers"]
        yield address, worker
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_readme_cluster_recipe_runs_the_generations_on_the_scheduler(sandbox, dask_cluster, capsys):
    address, worker = dask_cluster
    write_notebook(sandbox.notebooks / "90_cluster.ipynb", 'scale = "quick"\nseed = 0', CLUSTER_NOTEBOOK)
    argv = [
        "--scale",
        "smoke",
        "--scheduler",
        address,
        "--notebooks-dir",
        str(sandbox.notebooks),
        "--figures-dir",
        str(sandbox.figures),
        "--build-dir",
        str(sandbox.build),
        "90_cluster",
    ]
    assert pipeline.main(argv) == 0, capsys.readouterr().out
    sidecar = json.loads((sandbox.figures / "90_cluster.json").read_text())
    assert sidecar["numbers"]["workers"] == [worker]  # every generation ran on the cluster's worker
    assert sidecar["execution"]["scheduler"] == address
    assert "scheduler" not in sidecar["parameters"] and address not in json.dumps(sidecar["inputs"])
    assert pipeline.main([*argv[:2], *argv[4:]]) == 0  # without the scheduler: still up to date
    assert "skip  90_cluster: up to date" in capsys.readouterr().out
