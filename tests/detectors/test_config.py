"""The shared protocol of notebooks 03 and 04 (labkit.detectors.config): its run seeds and three-way split."""

import numpy as np
import pytest

from labkit.detectors.config import DetectionConfig, train_calibration_test_split


def test_train_calibration_test_split_is_disjoint_stratified_and_seeded():
    labels = np.repeat(np.arange(4), [100, 60, 40, 200])
    train, cal, test = train_calibration_test_split(labels, 0.4, 0.625, seed=3, n_items=200)
    parts = np.concatenate([train, cal, test])
    assert len(np.unique(parts)) == len(parts) == 200  # disjoint, a subset of 200
    for part, share in ((train, 0.6), (cal, 0.4 * 0.375), (test, 0.4 * 0.625)):
        assert np.all(np.diff(part) > 0)  # sorted indices
        np.testing.assert_allclose(
            np.bincount(labels[part], minlength=4) / len(part), [0.25, 0.15, 0.1, 0.5], atol=0.03
        )  # every class keeps its share
        assert len(part) == pytest.approx(200 * share, abs=4)
    again = train_calibration_test_split(labels, 0.4, 0.625, seed=3, n_items=200)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, cal, test)))
    other = train_calibration_test_split(labels, 0.4, 0.625, seed=4, n_items=200)
    assert not np.array_equal(other[0], train)
    whole = train_calibration_test_split(labels, 0.4, 0.625, seed=3)
    assert sum(map(len, whole)) == len(labels)


def test_split_streams_never_coincide_across_runs_or_purposes():
    """The bug this replaces: run s's calibration split used seed s + 1, run s+1's training seed."""
    from labkit.seeds import derived_seed

    cfg = DetectionConfig(n_seeds=4, seed=0)
    seeds = cfg.run_seeds()
    assert seeds == [derived_seed(0, i) for i in range(4)] and len(set(seeds)) == 4
    assert not set(seeds) & set(DetectionConfig(n_seeds=4, seed=1).run_seeds())  # not shifted copies
    streams = [derived_seed(derived_seed(s, k), part) for s in seeds for k in range(7) for part in (0, 1, 2)]
    assert len(set(streams)) == len(streams)
    y = np.arange(1797) % 10
    a, b = cfg.split(y, seeds[0]), cfg.split(y, seeds[1])
    assert not np.array_equal(a[1], b[1]) and sum(map(len, a)) == 1797
