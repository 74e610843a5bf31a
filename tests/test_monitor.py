"""labkit.monitor: organisms really have (and controls really lack) the hidden behaviour, filters find a planted
outlier set, trusted-data monitors flag the backdoor, distillation sees clean data only, determinism, config
validation. (The notebook's smoke run lives in tests/test_notebooks.py: ``-k 03_deceptive``.)"""

import numpy as np
import pytest
import torch

from labkit.classifiers import MLP, predict, train
from labkit.config import ConfigError
from labkit.data.images import digits, stratified_split
from labkit.detectors.metrics import auroc, detection_metrics
from labkit.monitor.evaluate import MONITORS, MonitorConfig, monitor_scores
from labkit.monitor.filters import activation_clustering_scores, spectral_signature_scores
from labkit.monitor.organisms import AdditiveTrigger, attack_success_rate, class_marker, corner_trigger, distil, \
    mark, marker_reliance, poison, train_adaptive_backdoor

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
    return dict(x=x[tr], y=y[tr], xt=x[te], yt=y[te], trigger=trigger, clean=clean, backdoor=backdoor,
                shortcut=shortcut, is_poison=is_poison)


def accuracy(model, x, y):
    return float(np.mean(predict(model, x) == y))


def test_stamps_write_only_their_pixels():
    x = np.random.default_rng(0).random((5, 64)).astype(np.float32)
    t = corner_trigger(64, 2, 1.0)
    out = t(x).reshape(5, 8, 8)
    assert np.all(out[:, 6:, 6:] == 1.0)
    np.testing.assert_array_equal(np.delete(out.reshape(5, 64), [54, 55, 62, 63], axis=1),
                                  np.delete(x, [54, 55, 62, 63], axis=1))
    markers = [np.flatnonzero(class_marker(c).mask) for c in range(10)]
    assert len({int(m[0]) for m in markers}) == 10 and all(len(m) == 1 for m in markers)
    assert not set(int(m[0]) for m in markers) & {54, 55, 62, 63}       # markers never touch the trigger
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
    assert bad[np.argsort(-s)[:20]].sum() >= 15               # the top of the ranking is the planted set
    # with no poisons, the top direction is noise: the flagged set is not the would-be poisons
    h0, _, _ = toy_poisoned_cloud(seed=1, n_bad=0)
    assert 0.3 < auroc(bad, spectral_signature_scores(h0, labels)) < 0.75


def test_activation_clustering_puts_the_poisons_in_the_small_cluster():
    h, labels, bad = toy_poisoned_cloud(n_bad=40)
    h[bad] += 4 * np.eye(h.shape[1])[0]              # a well separated second mode
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
    scores = monitor_scores(cfg, 0, o["backdoor"], o["x"], o["y"], o["xt"][:100],
                            {"clean": o["xt"], "hidden": o["trigger"](o["xt"][nontarget])})
    assert list(scores) == list(MONITORS)
    assert all(np.all(np.isfinite(s[k])) for s in scores.values() for k in ("clean", "hidden"))
    aurocs = {m: detection_metrics(s["clean"], s["hidden"])["auroc"] for m, s in scores.items()}
    assert max(aurocs.values()) >= 0.9, aurocs
    assert aurocs["Mahalanobis (all)"] >= 0.9, aurocs
