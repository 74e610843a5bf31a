"""Notebook 05c's accuracy of one design on one worm: pulses to accuracy and the grid's final accuracy, on hand-made
runs whose answers are known."""

import math

import numpy as np

from labkit.rig.experiments.search import Trials
from labkit.rig.experiments.search_accuracy import WormRun, final_accuracy, pulses_to_accuracy


def _run(errors, n_templates=12):
    return WormRun("closed_loop", 0, Trials(), np.asarray(errors, dtype=float), n_templates, None, True, {})


def test_pulses_to_accuracy_counts_from_the_last_excursion_templates_included():
    e = np.full((6, 4), 0.5)
    e[1:, :2] = 0.05
    e[3, 1] = 0.2  # leaves the tolerance once more at trial 4
    assert pulses_to_accuracy(_run(e), "MGF", 0.1) == 12 + 5
    assert pulses_to_accuracy(_run(e), "LGF", 0.1) == math.inf
    e[:, :2] = np.nan  # undefined estimates never count as accurate
    assert pulses_to_accuracy(_run(e), "MGF", 0.1) == math.inf


def test_pulses_to_the_grids_final_accuracy_use_one_tolerance_per_number():
    e = np.full((5, 4), np.nan)
    e[:, 0] = [0.5, 0.2, 0.05, 0.04, 0.03]
    e[:, 1] = [2.0, 0.9, 0.8, 0.3, 0.35]
    grid = _run(np.array([[0.06, 0.4, np.nan, np.nan]] * 3), n_templates=15)
    assert list(final_accuracy(grid, "MGF")) == [0.06, 0.4] and np.isinf(final_accuracy(grid, "LGF")).all()
    assert pulses_to_accuracy(_run(e), "MGF", final_accuracy(grid, "MGF")) == 12 + 4
    assert pulses_to_accuracy(_run(e), "LGF", final_accuracy(grid, "LGF")) == math.inf  # never defined
