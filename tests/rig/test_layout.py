"""labkit.rig is organised by role: each sub-package imports only those before it in LAYERS, no module imports the
rig package's __init__, and each sub-package says its role and lists its modules. Imports are read statically (as
the pipeline hashes them), function-level ones included; the line limit and the absence of import cycles are checked
for all of labkit in tests/test_layout.py."""

import importlib
from pathlib import Path

import pytest

import labkit.rig
from tests.test_layout import imports, module_files

RIG = Path(labkit.rig.__file__).parent
LAYERS = ["firmware", "simulator", "host", "analysis", "experiments", "ui"]  # each may import the ones before it


MODULES = module_files(RIG, "labkit.rig")
GRAPH = {name: imports(path, set(MODULES), "labkit.rig") for name, path in MODULES.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[2]) if len(parts) > 2 and parts[2] in LAYERS else None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) is not None))
def test_a_module_imports_only_its_own_and_earlier_layers(module):
    later = {i for i in GRAPH[module] if i == "labkit.rig" or (_layer(i) is not None and _layer(i) > _layer(module))}
    assert not later, f"{module} imports {sorted(later)} (layers, in order: {LAYERS})"


@pytest.mark.parametrize("layer", LAYERS)
def test_each_sub_package_says_its_role_and_lists_its_modules(layer):
    package = importlib.import_module(f"labkit.rig.{layer}")
    assert package.__doc__ and len(package.__doc__.split()) >= 20
    assert sorted(package.__all__) == sorted(p.stem for p in (RIG / layer).glob("[!_]*.py"))
    assert not (set(GRAPH[f"labkit.rig.{layer}"])), "a sub-package __init__ imports none of its modules"
