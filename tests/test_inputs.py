"""A notebook's inputs (labkit.inputs): the labkit modules it imports, traced transitively; the itemised components
and the reasons they give for a re-run; the literal-only parameters cell."""

import json

import pytest

from labkit import inputs, paths
from tests.conftest import plotting_notebook, write_notebook


def test_imports_are_traced_transitively_through_labkit():
    found = inputs.labkit_modules(["%matplotlib inline\nfrom labkit.collapse import linear\n"])
    assert {"labkit", "labkit.collapse", "labkit.collapse.linear", "labkit.repro", "labkit.paths"} <= set(found)
    assert "labkit.pipeline" not in found and "labkit.manifest" not in found


def test_the_rig_simulator_behind_rigsim_urls_is_an_input():
    """pyserial imports the rigsim:// handler by name at run time; the package imports it statically so that a
    change to the simulated device or worm makes every rig notebook stale."""
    found = inputs.labkit_modules(["from labkit.rig.host.driver import Rig"])
    assert {
        "labkit.rig.simulator.protocol_rigsim",
        "labkit.rig.simulator.sim",
        "labkit.rig.firmware.device",
        "labkit.rig.simulator.worm",
    } <= set(found)


def test_attribute_imports_resolve_to_their_module():
    found = inputs.labkit_modules(["from labkit.config import NotebookConfig", "import numpy"])
    assert set(found) == {"labkit", "labkit.config"}


def test_components_change_with_the_code_and_parameters(sandbox):
    nb = inputs.Notebook(plotting_notebook(sandbox.notebooks / "90_walk.ipynb", "90_walk"))
    base = inputs.input_components(nb, {"scale": "smoke"})
    assert inputs.stale_reasons(base, base) == []
    assert inputs.stale_reasons(inputs.input_components(nb, {"scale": "quick"}), base) == [
        "parameters changed: {'scale': 'smoke'} -> {'scale': 'quick'}"
    ]
    plotting_notebook(nb.path, "90_walk", extra="print('changed')")
    assert inputs.stale_reasons(inputs.input_components(nb, {"scale": "smoke"}), base) == ["its code cells changed"]


def test_a_changed_module_is_named_and_an_unrelated_one_is_ignored():
    nb = inputs.Notebook(paths.NOTEBOOKS / "01a_collapse_linear.ipynb")
    recorded = inputs.input_components(nb, {"scale": "quick"})
    edited = json.loads(json.dumps(recorded))
    edited["modules"]["labkit/collapse/linear.py"] = "0" * 64
    assert inputs.stale_reasons(edited, recorded) == ["labkit/collapse/linear.py changed"]
    assert "labkit/pipeline.py" not in recorded["modules"]
    assert "labkit/collapse/linear.py" in recorded["modules"]


def test_parameters_cell_must_hold_literals(sandbox):
    nb = write_notebook(sandbox.notebooks / "90_bad.ipynb", "scale = 'smoke'\nseed = 1 + 1")
    with pytest.raises(ValueError, match="'seed' is not a literal"):
        inputs.declared_parameters(nb)
    nb = write_notebook(sandbox.notebooks / "90_bad.ipynb", "scale = 'smoke'")
    nb_json = json.loads(nb.read_text())
    nb_json["cells"][0]["metadata"]["tags"] = []
    nb.write_text(json.dumps(nb_json))
    with pytest.raises(ValueError, match="exactly one cell tagged 'parameters'"):
        inputs.declared_parameters(nb)
