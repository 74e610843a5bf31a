"""Notebook 03's experiment (labkit.monitor.evaluate): config validation, cross-seed summaries, run seeds. (The
notebook's smoke run: tests/test_notebooks.py ``-k 03_deceptive``.)"""

import numpy as np
import pytest

from labkit.config import ConfigError
from labkit.data.images import digits
from labkit.monitor.evaluate import MonitorConfig, MonitorResult
from labkit.monitor.protocol import MONITORS, TASKS, AdaptiveRun, FilterRun, MonitorRun, OrganismStats


def test_config_presets_and_validation():
    for scale in ("smoke", "quick", "paper"):
        cfg = MonitorConfig.from_params(scale=scale)
        assert cfg.adaptive_beta in cfg.adaptive_betas and cfg.n_seeds >= 2
    assert MonitorConfig.from_params(scale="quick").n_seeds >= 3
    with pytest.raises(ConfigError, match="n_poisson"):
        MonitorConfig.from_params(n_poisson=3)
    with pytest.raises(ConfigError, match="adaptive_beta"):
        MonitorConfig.from_params(adaptive_beta=7.0)
    with pytest.raises(ConfigError, match="sizes"):
        MonitorConfig.from_params(dataset="mnist")
    with pytest.raises(ConfigError, match="target"):
        MonitorConfig.from_params(target=10)
    with pytest.raises(ConfigError, match="n_seeds"):
        MonitorConfig.from_params(n_seeds=1)


def _monitor_run(seed, backdoor, control, adaptive, student, control_student, spectral):
    """A run with every monitor at the same AUROC per task (backdoor, control, adaptive)."""
    per_task = {"backdoor": backdoor, "control: clean model + trigger": control, "adaptive backdoor": adaptive}
    metrics = {t: {m: {"auroc": per_task.get(t, 0.5), "tpr_at_fpr": 0.0} for m in MONITORS} for t in TASKS}
    return MonitorRun(
        seed=seed,
        accuracy={"clean": 0.9, "backdoor": 0.88},
        attack_success={"clean (control)": 0.0, "backdoor": 0.97},
        marker_reliance={"clean (control)": 0.01, "shortcut": 0.2},
        students={4.0: OrganismStats(0.9, student)},
        control_students={4.0: OrganismStats(0.91, control_student)},
        scores={},
        adaptive={0.1: AdaptiveRun(0.8, 0.9, 0.25, np.zeros(64), metrics["adaptive backdoor"])},
        metrics=metrics,
        filters={"backdoor": {"spectral signature": FilterRun(np.zeros(3), spectral, 0.1)}},
        is_poison=np.zeros(3, bool),
    )


def test_monitor_result_summaries_over_seeds():
    cfg = MonitorConfig.from_params(scale="smoke", temperatures=(4.0,), adaptive_betas=(0.1,), adaptive_beta=0.1)
    runs = [
        _monitor_run(1, 0.99, 0.80, 0.70, 0.30, 0.0, 0.6),
        _monitor_run(2, 0.97, 0.85, 0.75, 0.50, 0.1, 0.8),
        _monitor_run(3, 0.95, 0.70, 0.55, 0.40, 0.0, 0.7),
    ]
    result = MonitorResult(cfg, runs)
    se = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v)))  # noqa: E731
    drops, mean, drop_se = result.adaptive_drop("KD+BU")  # the drops, computed once
    np.testing.assert_allclose(drops, [0.29, 0.22, 0.40])
    assert mean == pytest.approx(np.mean([0.29, 0.22, 0.40])) and drop_se == pytest.approx(se([0.29, 0.22, 0.40]))
    excess = result.specificity()["MSP"]
    assert excess == pytest.approx((np.mean([0.19, 0.12, 0.25]), se([0.19, 0.12, 0.25])))
    gap = result.transfer_gap()[4.0]
    assert gap == pytest.approx((np.mean([0.3, 0.4, 0.4]), se([0.3, 0.4, 0.4])))
    assert result.summary(lambda r: r.attack_success["backdoor"]) == pytest.approx((0.97, 0.0))
    organisms = result.organisms()
    assert organisms["adaptive attack success"][0.1] == pytest.approx((0.9, 0.0))
    assert set(organisms["clean accuracy"]) == {"clean", "backdoor"}
    table = result.auroc_table()
    assert table["LID (all)"]["backdoor"][0] == pytest.approx(0.97) and table["LID (all)"]["shortcut"] == (0.5, 0.0)
    assert result.filter_table()["backdoor"]["spectral signature"][0] == pytest.approx(0.7)
    assert result.filter_table("tpr_at_fpr")["backdoor"]["spectral signature"] == pytest.approx((0.1, 0.0))
    transfer = result.transfer_summary()
    np.testing.assert_allclose(transfer["attack_success"][0], [0.4])
    np.testing.assert_allclose(result.transfer_summary("control_students")["accuracy"][0], [0.91])
    stress, organism = result.stress_summary()
    np.testing.assert_allclose(stress["FACADE total"][0], [np.mean([0.70, 0.75, 0.55])])
    np.testing.assert_allclose(organism["accuracy"][0], [0.8])


def test_runs_use_derived_seeds_and_distinct_splits():
    """Run i's seed is derived_seed(cfg.seed, i): the calibration split of one run is no other run's training stream."""
    from labkit.monitor.protocol import SPLIT
    from labkit.seeds import derived_seed

    cfg = MonitorConfig.from_params(scale="smoke")
    assert cfg.run_seeds() == [derived_seed(cfg.seed, i) for i in range(cfg.n_seeds)]
    x, y = digits()
    (tr0, cal0, te0), (tr1, cal1, te1) = (cfg.split(y, derived_seed(s, SPLIT)) for s in cfg.run_seeds())
    assert sum(map(len, (tr0, cal0, te0))) == pytest.approx(cfg.n_images, abs=10)
    assert not np.array_equal(cal0, cal1) and not np.array_equal(tr0, tr1)
