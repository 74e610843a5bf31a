"""Notebook 04's cross-seed summaries (labkit.facade.experiment)."""

from types import SimpleNamespace

import numpy as np
import pytest

from labkit.facade.config import FacadeConfig
from labkit.facade.experiment import AttackStats, FacadeResult, SeedRun


def _seed_run(seed, clean_accuracy, success, loss, linf, pixels, auroc, clean_fpr):
    attacks = {a: AttackStats(success[a], loss[a], linf[a], *pixels[a]) for a in success}
    return SeedRun(
        seed=seed,
        clean_accuracy=clean_accuracy,
        attacks=attacks,
        adversarial_accuracy={a: clean_accuracy * (1 - s.success_rate) for a, s in attacks.items()},
        scores={},
        metrics={d: {a: {"auroc": v, "tpr_at_fpr": v / 2} for a, v in per.items()} for d, per in auroc.items()},
        raw={},
        clean_fpr=clean_fpr,
        trajectories={},
        pseudo_geometry=[],
        model=None,
        facade=SimpleNamespace(pseudo_=SimpleNamespace(train_paths_=np.array([[0, 1, 5], [0, 1, 5], [1, 1, 5]]))),
        adversarial={},
        y_train=np.array([2, 2, 4]),
        x_test=np.zeros((0, 64)),
    )


def test_facade_result_summaries_over_seeds():
    cfg = FacadeConfig.from_params(scale="smoke", eps_values=(0.1,))
    names = ["FGSM ε=0.1", "PGD ε=0.1"]
    runs = [
        _seed_run(
            11,
            0.9,
            dict(zip(names, (0.5, 0.7))),
            dict(zip(names, (1.0, 1.5))),
            dict(zip(names, (0.1, 0.09))),
            dict(zip(names, ((0.0, 1.0), (0.02, 0.9)))),
            {"MSP": dict(zip(names, (0.6, 0.8)))},
            0.04,
        ),
        _seed_run(
            12,
            0.8,
            dict(zip(names, (0.25, 0.5))),
            dict(zip(names, (2.0, 2.0))),
            dict(zip(names, (0.099, 0.1))),
            dict(zip(names, ((0.01, 0.95), (0.0, 1.0)))),
            {"MSP": dict(zip(names, (0.7, 1.0)))},
            0.08,
        ),
    ]
    result = FacadeResult(cfg, runs)
    assert result.attacks == names
    assert result.mean_over_seeds(lambda r: r.clean_fpr) == pytest.approx(0.06)
    np.testing.assert_allclose(result.mean_over_seeds(lambda r: np.array([r.clean_accuracy, 1.0])), [0.85, 1.0])
    assert result.clean_accuracy() == pytest.approx(0.85)
    summary = result.attack_summary()
    fgsm = summary["FGSM ε=0.1"]
    assert fgsm.accuracy_after_attack == pytest.approx((0.9 * 0.5 + 0.8 * 0.75) / 2)
    assert fgsm.success_rate == pytest.approx(0.375) and fgsm.mean_loss == pytest.approx(1.5)
    assert (fgsm.max_linf, fgsm.min_pixel, fgsm.max_pixel) == (0.1, 0.0, 1.0)
    assert (summary["PGD ε=0.1"].min_pixel, summary["PGD ε=0.1"].max_pixel) == (0.0, 1.0)
    assert result.accuracy_drop()["PGD ε=0.1"] == pytest.approx((0.9 * 0.7 + 0.8 * 0.5) / 2)
    gap = result.pgd_minus_fgsm()["ε=0.1"]
    assert gap["success_rate"] == pytest.approx(0.225) and gap["mean_loss"] == pytest.approx(0.25)
    mean, se = result.metric_table("auroc")["MSP"]["PGD ε=0.1"]
    assert mean == pytest.approx(0.9) and se == pytest.approx(np.std([0.8, 1.0], ddof=1) / np.sqrt(2))
    assert result.metric_table("tpr_at_fpr")["MSP"]["FGSM ε=0.1"][0] == pytest.approx(0.325)
    np.testing.assert_allclose(runs[0].purity(), [(1 + 1) / 2, 2 / 3])  # paths (0, 0, 1) and (1, 1, 1)
