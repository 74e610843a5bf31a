"""Every numbered notebook: committed clean, runs at smoke scale (a representative few twice, byte for byte), and its
published figures current."""

import json
import re

import pytest

from labkit import paths, pipeline
from labkit.manifest import load_manifest

NOTEBOOKS = pipeline.discover()
#: run twice, forced, to check byte-identical figures and claims: one of each kind of computation (numpy only; a
#: torch generation loop in worker processes; torch in the kernel; the simulated rig)
REPRODUCED = {"01a_collapse_linear", "01b_collapse_language_model", "04_facade", "05a_rig_mapping"}


def test_there_are_notebooks():
    assert [nb.name for nb in NOTEBOOKS][:1] == ["01a_collapse_linear"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.name)
def test_committed_without_outputs_and_on_the_project_kernel(nb):
    data = json.loads(nb.path.read_text())
    dirty = [
        i for i, c in enumerate(data["cells"]) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])
    ]
    assert not dirty, f"{nb.name}: cells {dirty} have outputs or execution counts; clear them before committing"
    assert data["metadata"]["kernelspec"]["name"] == pipeline.KERNEL
    assert {"scale", "seed", "params"} <= set(pipeline.declared_parameters(nb.path))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.name)
def test_runs_at_smoke_scale(nb, sandbox):
    """Every notebook runs; those of :data:`REPRODUCED` run twice and must give the same bytes and claims."""

    def run(force):
        code = pipeline.run(
            "smoke",
            force=force,
            patterns=[nb.name],
            notebooks_dir=paths.NOTEBOOKS,
            figures_dir=sandbox.figures,
            build_dir=sandbox.build,
            echo=sandbox.lines.append,
        )
        assert code == 0, sandbox.output
        entries = [e for e in load_manifest(sandbox.figures)["figures"] if e["notebook"] == nb.key]
        return {e["file"]: (sandbox.figures / e["file"]).read_bytes() for e in entries}, [
            c for e in entries for c in e["claims"]
        ]

    figures, claims = run(force=False)
    assert figures and claims, f"{nb.name} published no figure or checked no claim"
    assert not _stray_reprs(sandbox.build / "executed" / "smoke" / nb.path.name)
    if nb.name not in REPRODUCED:
        return
    again, claims_again = run(force=True)
    assert again == figures, "two forced runs gave different figure bytes"
    assert claims_again == claims, "two forced runs gave different claim values"


#: what a cell shows when it ends in a call whose value nobody asked for (a path, a verdict) or prints NumPy 2's scalars
STRAY = re.compile(r"PosixPath\(|np\.(float|int|bool_?)\w*\(|^(True|False)$")


def _stray_reprs(executed) -> list[tuple[int, str]]:
    """(cell index, text) of each plain-text result in ``executed`` that shows a stray repr."""
    cells = json.loads(executed.read_text())["cells"]
    shown = [
        (i, "".join(o["data"].get("text/plain", "")))
        for i, c in enumerate(cells)
        if c["cell_type"] == "code"
        for o in c["outputs"]
        if o["output_type"] == "execute_result"
    ]
    return [(i, text[:80]) for i, text in shown if STRAY.search(text)]


def test_committed_figures_are_up_to_date():
    """A change to a notebook or to a labkit module it imports must come with regenerated figures."""
    manifest = load_manifest(paths.FIGURES)["figures"]
    lines = []
    for scale in sorted({e["scale"] for e in manifest}):
        names = sorted({pipeline.Notebook(paths.ROOT / e["notebook"]).name for e in manifest if e["scale"] == scale})
        assert pipeline.run(scale, patterns=names, check_only=True, echo=lines.append) == 0, "\n".join(lines)
    published = {e["notebook"] for e in manifest}
    missing = [nb.key for nb in NOTEBOOKS if nb.key not in published]
    assert not missing, f"notebooks without published figures: {missing} (run make figures)"


def test_committed_claims_pass_or_are_documented_as_not_reproducing():
    failed = [
        (e["file"], c["claim"])
        for e in load_manifest(paths.FIGURES)["figures"]
        for c in e["claims"]
        if not c["passed"] and not c.get("known_failure")
    ]
    assert not failed, failed
