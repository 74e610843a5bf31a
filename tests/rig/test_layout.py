"""labkit.rig is organised by role: each sub-package imports only those before it in LAYERS, no module imports its
own package's __init__ or forms an import cycle, and no module is over 450 lines. Imports are read statically (as the
pipeline hashes them), function-level ones included."""

import ast
import importlib
from pathlib import Path

import pytest

import labkit.rig

RIG = Path(labkit.rig.__file__).parent
LAYERS = ["firmware", "simulator", "host", "analysis", "experiments", "ui"]  # each may import the ones before it
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    found = {"labkit.rig": RIG / "__init__.py", "labkit.rig._checks": RIG / "_checks.py"}
    for layer in LAYERS:
        for path in sorted((RIG / layer).glob("*.py")):
            name = f"labkit.rig.{layer}" + ("" if path.stem == "__init__" else f".{path.stem}")
            found[name] = path
    return found


def _imports(path: Path, known: set[str]) -> set[str]:
    """The labkit.rig modules (or packages) that ``path`` imports."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        out |= {n for n in names if n.startswith("labkit.rig")}
    return out


MODULES = _modules()
GRAPH = {name: _imports(path, set(MODULES)) for name, path in MODULES.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[2]) if len(parts) > 2 and parts[2] in LAYERS else None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) is not None))
def test_a_module_imports_only_its_own_and_earlier_layers(module):
    later = {i for i in GRAPH[module] if i == "labkit.rig" or (_layer(i) is not None and _layer(i) > _layer(module))}
    assert not later, f"{module} imports {sorted(later)} (layers, in order: {LAYERS})"


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_the_line_limit(module):
    assert len(MODULES[module].read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("layer", LAYERS)
def test_each_sub_package_says_its_role_and_lists_its_modules(layer):
    package = importlib.import_module(f"labkit.rig.{layer}")
    assert package.__doc__ and len(package.__doc__.split()) >= 20
    assert sorted(package.__all__) == sorted(p.stem for p in (RIG / layer).glob("[!_]*.py"))
    assert not (set(GRAPH[f"labkit.rig.{layer}"])), "a sub-package __init__ imports none of its modules"
