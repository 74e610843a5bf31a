"""A notebook's inputs: what its published figures are made from, itemised and hashed, so that the pipeline
(:mod:`labkit.pipeline`) re-runs a notebook exactly when one of them changed, and says which.

The inputs of a run of a numbered notebook (``notebooks/NN*.ipynb``, :func:`discover`) are (:func:`input_components`)

- its code cells (:func:`code_cells`),
- the parameters passed to it, checked against its cell tagged ``parameters``, which may hold only literal
  assignments (:func:`declared_parameters`),
- the source of every labkit module it imports, transitively, by static analysis of ``import`` statements
  (:func:`labkit_modules`; importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b``, so those count too),
- the pinned requirements and the repository's ``matplotlibrc``;

their hash is the notebook's *input hash* (:func:`input_hash`). A notebook is stale when its current components differ
from those recorded with its published figures; :func:`stale_reasons` says how, in words.
"""

import ast
import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit import paths
from labkit.manifest import sha256

__all__ = [
    "Notebook",
    "discover",
    "code_cells",
    "declared_parameters",
    "labkit_modules",
    "input_components",
    "input_hash",
    "stale_reasons",
]


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(paths.ROOT).as_posix()
    except ValueError:
        return path.resolve().as_posix()


@dataclass(frozen=True)
class Notebook:
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def key(self) -> str:
        """How the notebook is named in the manifest: its path relative to the repository root."""
        return _rel(self.path)


def discover(notebooks_dir: Path = paths.NOTEBOOKS, patterns: list[str] | None = None) -> list[Notebook]:
    """The numbered notebooks, in order; ``patterns`` (globs on the stem, e.g. ``01*``) narrow the list."""
    found = sorted(p for p in notebooks_dir.glob("[0-9][0-9]*.ipynb"))
    if patterns:
        found = [p for p in found if any(fnmatch.fnmatch(p.stem, pat) or p.stem == pat for pat in patterns)]
    return [Notebook(p) for p in found]


def _cells(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def code_cells(path: Path) -> list[str]:
    return [_source(c) for c in _cells(path) if c["cell_type"] == "code"]


def _python_only(source: str) -> str:
    """Drop IPython magics and shell escapes so the cell parses as Python."""
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines())


def declared_parameters(path: Path) -> dict[str, Any]:
    """The literal assignments of the cell tagged ``parameters``; raises if it holds anything else."""
    cells = [c for c in _cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path.name}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    declared = {}
    for node in ast.parse(_source(cells[0])).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{path.name}: the parameters cell may hold only `name = literal` lines")
        try:
            declared[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise ValueError(f"{path.name}: parameter {node.targets[0].id!r} is not a literal") from None
    return declared


def _module_file(module: str) -> Path | None:
    base = paths.ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.AST, package: str) -> set[str]:
    """Absolute names of the labkit modules (or attributes of them) that ``tree`` imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import inside labkit
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {n for n in names if n == "labkit" or n.startswith("labkit.")}


def labkit_modules(sources: list[str]) -> dict[str, Path]:
    """Every labkit module the given code imports, directly or through other labkit modules.

    Importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` too, so those count as inputs.
    """
    pending = set().union(*(_imported(ast.parse(_python_only(s)), "") for s in sources)) if sources else set()
    found: dict[str, Path] = {}
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            module = ".".join(parts[:i])
            file = _module_file(module)
            if file is None or module in found:
                continue
            found[module] = file
            package = module if file.name == "__init__.py" else module.rpartition(".")[0]
            pending |= _imported(ast.parse(file.read_text()), package) - set(found)
    return found


def input_components(notebook: Notebook, parameters: dict[str, Any]) -> dict[str, Any]:
    """The hashed inputs of one notebook run, itemised so that a change can be explained."""
    cells = code_cells(notebook.path)
    modules = labkit_modules(cells)
    return {
        "code_cells": sha256("\n\x00".join(cells)),
        "parameters": json.loads(json.dumps(parameters, sort_keys=True)),
        "modules": {_rel(f): sha256(f.read_bytes()) for f in sorted(modules.values())},
        "requirements": sha256(b"".join(p.read_bytes() for p in paths.REQUIREMENTS)),
        "matplotlibrc": sha256(paths.MATPLOTLIBRC.read_bytes()),
    }


def input_hash(components: dict[str, Any]) -> str:
    return sha256(json.dumps(components, sort_keys=True))[:16]


def stale_reasons(current: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """Why a notebook must re-run, in words; empty when its figures are up to date."""
    reasons = []
    if current["code_cells"] != recorded["code_cells"]:
        reasons.append("its code cells changed")
    if current["parameters"] != recorded["parameters"]:
        reasons.append(f"parameters changed: {recorded['parameters']} -> {current['parameters']}")
    old, new = recorded["modules"], current["modules"]
    for mod in sorted(set(old) | set(new)):
        if mod not in old:
            reasons.append(f"now imports {mod}")
        elif mod not in new:
            reasons.append(f"no longer imports {mod}")
        elif old[mod] != new[mod]:
            reasons.append(f"{mod} changed")
    for key in ("requirements", "matplotlibrc"):
        if current[key] != recorded[key]:
            reasons.append(f"{key} changed")
    return reasons
