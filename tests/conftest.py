"""Shared fixtures: small notebooks written on the fly, a sandbox for pipeline runs, a small digits classifier, one
thread; and how pytest-xdist shares the tests out."""

from pathlib import Path

import nbformat
import pytest

from labkit import pipeline

FIXTURE_HEADER = """\
import matplotlib.pyplot as plt
import numpy as np
from labkit.config import NotebookConfig
from labkit.provenance import Recorder

cfg = NotebookConfig.from_params(scale=scale, seed=seed)
rec = Recorder(cfg)
"""


def write_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """A notebook with a tagged parameters cell followed by code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": pipeline.KERNEL, "display_name": "Python (labkit)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def plotting_notebook(path: Path, name: str, extra: str = "") -> Path:
    """A tiny notebook that draws seeded random numbers, saves one figure and checks one claim."""
    body = (
        FIXTURE_HEADER
        + f"""
x = np.random.default_rng(cfg.seed).standard_normal(50)
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot(np.cumsum(x))
ax.set_xlabel("step")
ax.set_ylabel("sum")
rec.save(fig, {name!r}, caption="a seeded random walk", numbers={{"last": x.sum()}})
rec.check("the walk is finite", bool(np.isfinite(x.sum())), last=x.sum())
{extra}"""
    )
    return write_notebook(path, 'scale = "quick"\nseed = 0', body)


class Sandbox:
    """Notebooks, figures and build folders under tmp_path; ``run`` calls the pipeline and keeps its output."""

    def __init__(self, root: Path):
        self.notebooks, self.figures, self.build = root / "notebooks", root / "figures", root / "build"
        self.notebooks.mkdir()
        self.lines: list[str] = []

    def run(self, **kwargs) -> int:
        self.lines = []
        kwargs.setdefault("scale", "smoke")
        return pipeline.run(
            notebooks_dir=self.notebooks,
            figures_dir=self.figures,
            build_dir=self.build,
            echo=self.lines.append,
            **kwargs,
        )

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


#: tests spread one by one over the pytest-xdist workers: the notebook smoke runs, each in a sandbox of its own
SPREAD = "tests/test_notebooks.py::test_runs_at_smoke_scale["


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduler: the tests of one module run on one worker, in order (they share module fixtures such
    as trained models, files and servers), except those of :data:`SPREAD`. (``--dist=loadgroup`` with
    ``xdist_group`` marks would say the same, but pytest-xdist 3.8 cannot group under pytest 9.2.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if nodeid.startswith(SPREAD) else nodeid.split("::", 1)[0]

    return ByModule(config, log)


@pytest.fixture
def sandbox(tmp_path) -> Sandbox:
    return Sandbox(tmp_path)


@pytest.fixture(scope="session")
def digits_classifier():
    """A small MLP trained on 500 real digits (one torch thread): (model, x_train, y_train, 300 unseen images)."""
    import torch

    from labkit.classifiers import MLP, train
    from labkit.data.images import digits

    torch.set_num_threads(1)
    x, y = digits()
    model = train(MLP((64, 32, 32, 10), 0.1), x[:500], y[:500], epochs=15, seed=0)
    return model, x[:500], y[:500], x[500:800]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train several times faster on one thread (as each generation-loop worker does), above all on a
    busy machine; a module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    from labkit import repro

    with repro.threads(1):
        yield
