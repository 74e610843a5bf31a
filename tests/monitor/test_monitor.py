"""labkit.monitor: organisms really have (and controls really lack) the hidden behaviour, filters find a planted
outlier set, trusted-data monitors flag the backdoor, distillation sees clean data only, determinism, config
validation, notebook 03's cross-seed summaries. (The notebook's smoke run lives in tests/test_notebooks.py:
``-k 03_deceptive``.)"""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score as auroc

from labkit.classifiers import MLP, predict, train
from labkit.config import ConfigError
from labkit.data.images import digits, stratified_split
from labkit.detectors.metrics import detection_metrics
from labkit.monitor.evaluate import MonitorConfig, MonitorResult
from labkit.monitor.filters import activation_clustering_scores, spectral_signature_scores
from labkit.monitor.organisms import (
    AdditiveTrigger,
    attack_success_rate,
    class_marker,
    corner_trigger,
    distil,
    mark,
    marker_reliance,
    poison,
    train_adaptive_backdoor,
)
from labkit.monitor.protocol import (
    MONITORS,
    TASKS,
    AdaptiveRun,
    FilterRun,
    MonitorRun,
    OrganismStats,
    monitor_scores,
)

SIZES = (64, 64, 32, 10)


@pytest.fixture(scope="module")
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


def accuracy(model, x, y):
    return float(np.mean(predict(model, x) == y))


def test_stamps_write_only_their_pixels():
    x = np.random.default_rng(0).random((5, 64)).astype(np.float32)
    t = corner_trigger(64, 2, 1.0)
    out = t(x).reshape(5, 8, 8)
    assert np.all(out[:, 6:, 6:] == 1.0)
    np.testing.assert_array_equal(
        np.delete(out.reshape(5, 64), [54, 55, 62, 63], axis=1), np.delete(x, [54, 55, 62, 63], axis=1)
    )
    markers = [np.flatnonzero(class_marker(c).mask) for c in range(10)]
    assert len({int(m[0]) for m in markers}) == 10 and all(len(m) == 1 for m in markers)
    assert not set(int(m[0]) for m in markers) & {54, 55, 62, 63}  # markers never touch the trigger
    with pytest.raises(ValueError, match="trigger side"):
        corner_trigger(64, 8)
    with pytest.raises(ValueError, match="label"):
        class_marker(14)


def test_poison_relabels_only_the_chosen_non_target_images():
    x, y = digits()
    t = corner_trigger()
    xp, yp, is_poison = poison(x, y, 30, 3, t, seed=1)
    assert is_poison.sum() == 30 and np.all(y[is_poison] != 3) and np.all(yp[is_poison] == 3)
    np.testing.assert_array_equal(xp[~is_poison], x[~is_poison])
    np.testing.assert_array_equal(xp[is_poison], t(x[is_poison]))
    again = poison(x, y, 30, 3, t, seed=1)[2]
    np.testing.assert_array_equal(again, is_poison)
    with pytest.raises(ValueError, match="n_poison"):
        poison(x, y, 0, 3, t, seed=1)


def test_backdoor_has_its_hidden_behaviour_and_the_clean_model_does_not(organisms):
    o = organisms
    asr = attack_success_rate(o["backdoor"], o["xt"], o["yt"], 0, o["trigger"])
    control = attack_success_rate(o["clean"], o["xt"], o["yt"], 0, o["trigger"])
    assert asr >= 0.85, asr
    assert control <= 0.1, control
    assert abs(accuracy(o["backdoor"], o["xt"], o["yt"]) - accuracy(o["clean"], o["xt"], o["yt"])) <= 0.03


def test_shortcut_follows_its_marker_and_the_clean_model_does_not(organisms):
    o = organisms
    marked = mark(o["xt"], o["yt"])
    assert accuracy(o["shortcut"], marked, o["yt"]) >= accuracy(o["shortcut"], o["xt"], o["yt"])
    assert marker_reliance(o["shortcut"], o["xt"], o["yt"]) > marker_reliance(o["clean"], o["xt"], o["yt"]) + 0.03
    assert marker_reliance(o["clean"], o["xt"], o["yt"]) <= 0.05


def test_distillation_reads_clean_inputs_only(organisms):
    """The teacher is queried on exactly the clean inputs handed over; the trigger pixels are never lit."""
    o = organisms
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return o["backdoor"](x)

    x_clean = o["x"][:200]
    student = distil(Spy(), x_clean, 4.0, SIZES, epochs=2, seed=0)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0].numpy(), x_clean)
    assert not np.any(np.all(seen[0].numpy()[:, [54, 55, 62, 63]] == 1.0, axis=1))
    assert isinstance(student, MLP) and not student.training


def test_distillation_and_adaptive_training_are_deterministic(organisms):
    o = organisms
    a = distil(o["backdoor"], o["x"][:300], 2.0, SIZES, epochs=2, seed=5)
    b = distil(o["backdoor"], o["x"][:300], 2.0, SIZES, epochs=2, seed=5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    args = (o["x"][:300], o["y"][:300], np.arange(300) < 20, 0, 1.0, 0.25, SIZES)
    (m1, t1), (m2, t2) = (train_adaptive_backdoor(*args, epochs=2, seed=3) for _ in range(2))
    np.testing.assert_array_equal(t1.delta, t2.delta)
    assert np.abs(t1.delta).max() <= 0.25 + 1e-6
    torch.testing.assert_close(m1.linears[0].weight, m2.linears[0].weight, rtol=0, atol=0)


def test_additive_trigger_stays_in_pixel_range():
    t = AdditiveTrigger(np.full(64, 0.3))
    out = t(np.full((2, 64), 0.9, np.float32))
    assert out.max() == 1.0 and out.min() >= 0


def toy_poisoned_cloud(seed=0, n=400, n_bad=20, d=30):
    """Per label, an isotropic Gaussian; the poisons of label 0 are shifted along one direction (rank one)."""
    g = np.random.default_rng(seed)
    h = g.standard_normal((2 * n, d))
    labels = np.repeat([0, 1], n)
    bad = np.zeros(2 * n, bool)
    bad[:n_bad] = True
    direction = g.standard_normal(d)
    h[bad] += 4 * direction / np.linalg.norm(direction)
    return h, labels, bad


def test_spectral_signature_finds_a_rank_one_outlier_set():
    h, labels, bad = toy_poisoned_cloud()
    s = spectral_signature_scores(h, labels)
    assert auroc(bad, s) >= 0.99
    assert bad[np.argsort(-s)[:20]].sum() >= 15  # the top of the ranking is the planted set
    # with no poisons, the top direction is noise: the flagged set is not the would-be poisons
    h0, _, _ = toy_poisoned_cloud(seed=1, n_bad=0)
    assert 0.3 < auroc(bad, spectral_signature_scores(h0, labels)) < 0.75


def test_activation_clustering_puts_the_poisons_in_the_small_cluster():
    h, labels, bad = toy_poisoned_cloud(n_bad=40)
    h[bad] += 4 * np.eye(h.shape[1])[0]  # a well separated second mode
    s = activation_clustering_scores(h, labels, n_components=5, seed=0)
    assert auroc(bad, s) >= 0.99
    with pytest.raises(ValueError, match="activations"):
        activation_clustering_scores(h[:, 0], labels)


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


def test_trusted_data_monitors_score_every_input_and_flag_the_backdoor(organisms):
    """All monitors fit on clean data only; on the corner-patch backdoor the best one separates (known answer from
    the pilot: Mahalanobis ≈ 1.0), and every score is finite."""
    o = organisms
    cfg = MonitorConfig.from_params(scale="smoke", sizes=SIZES)
    nontarget = o["yt"] != 0
    scores = monitor_scores(
        cfg,
        0,
        o["backdoor"],
        o["x"],
        o["y"],
        o["xt"][:100],
        {"clean": o["xt"], "hidden": o["trigger"](o["xt"][nontarget])},
    )
    assert list(scores) == list(MONITORS)
    assert all(np.all(np.isfinite(s[k])) for s in scores.values() for k in ("clean", "hidden"))
    aurocs = {m: detection_metrics(s["clean"], s["hidden"])["auroc"] for m, s in scores.items()}
    assert max(aurocs.values()) >= 0.9, aurocs
    assert aurocs["Mahalanobis (all)"] >= 0.9, aurocs


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
