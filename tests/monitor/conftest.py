"""Fixtures shared by the monitor tests: the layer sizes and the trained organisms (clean, backdoored, shortcut)."""

import numpy as np
import pytest
import torch

from labkit.classifiers import MLP, train
from labkit.data.images import digits, stratified_split
from labkit.monitor.organisms import corner_trigger, mark, poison

SIZES = (64, 64, 32, 10)


# session scope: test_organisms.py and test_evaluate.py share the three trained models (about 4 s), which module
# scope would train once per file (under pytest-xdist, still once per worker that runs either file)
@pytest.fixture(scope="session")
def organisms():
    """A clean model, a backdoored one and a shortcut one on the digits (small and fast, shared by the tests)."""
    torch.set_num_threads(1)
    x, y = digits()
    tr, te = stratified_split(y, 0.3, 0)
    trigger = corner_trigger(64, 2, 1.0)
    clean = train(MLP(SIZES, 0.1), x[tr], y[tr], epochs=25, seed=0)
    xp, yp, is_poison = poison(x[tr], y[tr], 50, 0, trigger, 0)
    backdoor = train(MLP(SIZES, 0.1), xp, yp, epochs=25, seed=0)
    rows = np.random.default_rng(0).random(len(tr)) < 0.5
    xs = x[tr].copy()
    xs[rows] = mark(xs[rows], y[tr][rows])
    shortcut = train(MLP(SIZES, 0.1), xs, y[tr], epochs=25, seed=0)
    return dict(
        x=x[tr],
        y=y[tr],
        xt=x[te],
        yt=y[te],
        trigger=trigger,
        clean=clean,
        backdoor=backdoor,
        shortcut=shortcut,
        is_poison=is_poison,
    )
