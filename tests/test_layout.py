"""House rules for the whole of labkit: no module is over 450 lines and no modules import each other in a loop.
Imports are read statically (as the pipeline hashes them), function-level ones included. labkit.rig's layering by
role: tests/rig/test_layout.py."""

import ast
from pathlib import Path

import pytest

from labkit import paths

MAX_LINES = 450


def module_files(package: Path, prefix: str) -> dict[str, Path]:
    """Every module under ``package`` (a folder), by dotted name starting at ``prefix``; a package by its own name."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        found[".".join([prefix, *(parts[:-1] if parts[-1] == "__init__" else parts)])] = path
    return found


def imports(path: Path, known: set[str], prefix: str) -> set[str]:
    """The modules or packages under ``prefix`` that ``path`` imports (``from a import b`` counts as ``a.b`` when
    that is a module of ``known``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        out |= {n for n in names if n == prefix or n.startswith(prefix + ".")}
    return out


def first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of ``graph`` (module -> the modules it imports), as a path that returns to its start."""
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (loop := visit(nxt, stack + [nxt])):
                return loop
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (loop := visit(name, [name])):
            return loop
    return None


MODULES = module_files(paths.LABKIT, "labkit")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_the_line_limit(module):
    assert len(MODULES[module].read_text().splitlines()) <= MAX_LINES


def test_no_import_cycles():
    graph = {name: imports(path, set(MODULES), "labkit") - {name} for name, path in MODULES.items()}
    assert first_cycle(graph) is None, " -> ".join(first_cycle(graph))


def test_the_cycle_finder_finds_a_loop():
    assert first_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert first_cycle({"a": {"b"}, "b": set()}) is None
