"""FGSM and PGD-L∞: inside the ε-ball and the pixel range, loss-increasing, PGD at least as strong, seeded."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labkit.attacks import fgsm, pgd
from labkit.classifiers import predict
from labkit.data.images import digits


@pytest.fixture(scope="module")
def setup(digits_classifier):
    """The shared small classifier and 200 digits it never saw, with their labels."""
    x, y = digits()
    return digits_classifier[0], x[500:700], y[500:700]


def _loss(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y)).item()


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.2])
def test_within_eps_ball_and_pixel_range(setup, eps):
    model, x, y = setup
    for adv in (fgsm(model, x, y, eps), pgd(model, x, y, eps, steps=10, step_size=None, seed=1)):
        delta = (adv - torch.as_tensor(x)).abs().max().item()
        assert delta <= eps + 1e-6
        assert adv.min().item() >= 0 and adv.max().item() <= 1


def test_attacks_increase_the_loss_and_pgd_is_at_least_as_strong_as_fgsm(setup):
    model, x, y = setup
    clean = _loss(model, x, y)
    for eps in (0.1, 0.2):
        loss_fgsm = _loss(model, fgsm(model, x, y, eps), y)
        loss_pgd = _loss(model, pgd(model, x, y, eps, steps=20, step_size=2.5 * eps / 20, seed=0), y)
        assert clean < loss_fgsm <= loss_pgd
        assert (predict(model, pgd(model, x, y, eps, 20, None, 0)) != y).mean() > (predict(model, x) != y).mean()


def test_fgsm_is_one_signed_step_and_zero_eps_is_identity(setup):
    model, x, y = setup
    assert torch.equal(fgsm(model, x, y, 0.0), torch.as_tensor(x))
    adv = fgsm(model, x, y, 0.1)
    moved = (adv - torch.as_tensor(x)).abs()
    inside = (torch.as_tensor(x) > 0.1) & (torch.as_tensor(x) < 0.9)  # no clipping there
    assert torch.allclose(moved[inside & (moved > 0)], torch.tensor(0.1), atol=1e-6)


def test_pgd_is_seeded(setup):
    model, x, y = setup
    a, b = pgd(model, x, y, 0.1, 5, 0.03, seed=3), pgd(model, x, y, 0.1, 5, 0.03, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, pgd(model, x, y, 0.1, 5, 0.03, seed=4))


def test_bad_arguments_are_named(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match="eps"):
        fgsm(model, x, y, -0.1)
    with pytest.raises(ValueError, match="steps"):
        pgd(model, x, y, 0.1, 0, None, 0)
    with pytest.raises(ValueError, match="lo < hi"):
        fgsm(model, x, y, 0.1, lo=1.0, hi=0.0)
    assert np.isfinite(_loss(model, x, y))
