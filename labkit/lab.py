"""JupyterLab for the project (``make lab``): notebooks under ``notebooks/`` are saved without outputs.

The committed notebooks carry no outputs (a test enforces it; the figure pipeline hashes their code cells), but
JupyterLab autosaves whatever a session produced. :func:`pre_save_hook`, installed by
``jupyter_config/jupyter_server_config.py``, strips outputs, execution counts and widget state from every notebook
saved under ``notebooks/`` before it reaches the disk; the open notebook keeps its outputs on screen.
"""

from typing import Any

__all__ = ["NOTEBOOKS_PREFIX", "strip_outputs", "pre_save_hook"]

NOTEBOOKS_PREFIX = "notebooks/"


def strip_outputs(notebook: dict[str, Any]) -> dict[str, Any]:
    """Clear every code cell's outputs and execution count and the notebook's widget state, in place."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    notebook.get("metadata", {}).pop("widgets", None)
    return notebook


def pre_save_hook(model: dict[str, Any], path: str, **kwargs: Any) -> None:
    """jupyter_server's ``FileContentsManager.pre_save_hook``: strip notebooks saved under ``notebooks/``."""
    if model.get("type") == "notebook" and path.lstrip("/").startswith(NOTEBOOKS_PREFIX):
        strip_outputs(model["content"])
