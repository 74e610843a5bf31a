"""Two pipelines on one figures folder: every published figure decodes, and each notebook's figure, sidecar and
manifest entry come from one and the same run."""

import json
import subprocess
import sys
import time

import matplotlib.image
import numpy as np

from labkit import paths, pipeline
from labkit.manifest import load_manifest
from labkit.provenance import jsonable
from tests.conftest import plotting_notebook

SEEDS = (5, 6)
OFFSETS_S = (0.0, 0.3, 0.6, 0.9, 1.2, 1.6, 2.0)  # how much later the second pipeline starts, one try each
NOISE = """
big, ax = plt.subplots(figsize=(8, 8))
ax.imshow(np.random.default_rng(cfg.seed).random((500, 500)))
rec.save(big, "90_noise", caption="seeded noise: a large PNG that takes a while to write")
"""
REFUSAL = "another pipeline (pid"


def _start(sandbox, seed: int, figures=None) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "labkit.pipeline",
        "--scale",
        "smoke",
        "--force",
        "-p",
        f"seed={seed}",
        "--notebooks-dir",
        str(sandbox.notebooks),
        "--figures-dir",
        str(figures or sandbox.figures),
        "--build-dir",
        str(sandbox.build),
    ]
    return subprocess.Popen(cmd, cwd=paths.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _published(figures) -> list[tuple[dict, dict, bytes]]:
    """(manifest entry, sidecar, PNG bytes) of each published figure; every PNG must decode."""
    published = []
    for entry in load_manifest(figures)["figures"]:
        png = figures / entry["file"]
        assert matplotlib.image.imread(png).ndim == 3, f"{entry['file']} does not decode"
        published.append((entry, json.loads((figures / entry["sidecar"]).read_text()), png.read_bytes()))
    return published


def test_concurrent_pipelines_publish_whole_runs_or_refuse(sandbox):
    plotting_notebook(sandbox.notebooks / "90_walk.ipynb", "90_walk", extra=NOISE)
    last = {s: jsonable(np.random.default_rng(s).standard_normal(50).sum()) for s in SEEDS}
    reference = {}
    for seed in SEEDS:  # one run at a time: the bytes each seed's figures must have
        run = _start(sandbox, seed)
        assert run.wait() == 0, run.stdout.read()
        reference[seed] = {entry["file"]: png for entry, _, png in _published(sandbox.figures)}
    assert reference[5]["90_walk.png"] != reference[6]["90_walk.png"]

    outcomes = []
    for attempt, offset in enumerate(OFFSETS_S):
        runs = [_start(sandbox, SEEDS[0])]
        time.sleep(offset)
        runs.append(_start(sandbox, SEEDS[1]))
        results = [(run.wait(), run.stdout.read()) for run in runs]
        outcomes.append([code for code, _ in results])
        for code, output in results:
            assert "Traceback" not in output, output
            assert code == 0 or (code == pipeline.BUSY and REFUSAL in output), (code, output)
        assert any(code == 0 for code, _ in results), results
        published = _published(sandbox.figures)
        assert {entry["file"] for entry, _, _ in published} == {"90_walk.png", "90_noise.png"}
        seed = published[0][1]["seed"]
        for entry, sidecar, png in published:
            where = f"try {attempt}, {entry['file']}"
            assert sidecar["seed"] == seed, f"{where}: figures of different runs"
            assert png == reference[seed][entry["file"]], f"{where}: not the figure seed {seed} makes"
            assert entry["claims"] == sidecar["claims"], f"{where}: manifest entry and sidecar of different runs"
            assert entry.get("run_id") == sidecar.get("run_id") == published[0][1].get("run_id")
        assert published[0][1]["claims"][0]["last"] == last[seed], f"try {attempt}: claims of another run"
        lines = []
        assert (
            pipeline.run(
                "smoke",
                parameters={"seed": seed},
                check_only=True,
                notebooks_dir=sandbox.notebooks,
                figures_dir=sandbox.figures,
                build_dir=sandbox.build,
                echo=lines.append,
            )
            == 0
        ), lines
    print("exit codes per try:", outcomes)


def test_pipelines_sharing_a_build_folder_keep_their_runs_apart(sandbox):
    """Different figures folders, one build folder (so one staging area): both run at once and succeed."""
    plotting_notebook(sandbox.notebooks / "90_walk.ipynb", "90_walk", extra=NOISE)
    folders = {seed: sandbox.figures.parent / f"figures-{seed}" for seed in SEEDS}
    for attempt in range(2):
        runs = {seed: _start(sandbox, seed, folders[seed]) for seed in SEEDS}
        for run in runs.values():
            assert run.wait() == 0, run.stdout.read()
        for seed in SEEDS:
            published = _published(folders[seed])
            assert len(published) == 2 and all(sidecar["seed"] == seed for _, sidecar, _ in published), attempt
            assert len({sidecar.get("run_id") for _, sidecar, _ in published}) == 1
        figures = [{e["file"]: png for e, _, png in _published(folders[seed])} for seed in SEEDS]
        assert all(a != b for a, b in zip(figures[0].values(), figures[1].values())), attempt
    assert not list((sandbox.build / "staging").iterdir())  # each run removes its own staging folder
