"""Model organisms (labkit.monitor.organisms): stamps, poisoning, the hidden behaviour that organisms have and controls
lack, distillation on clean data only, determinism."""

import numpy as np
import pytest
import torch

from labkit.classifiers import MLP, predict
from labkit.data.images import digits
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
from tests.monitor.conftest import SIZES


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
