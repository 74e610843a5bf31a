"""The ELBO memory: its dynamics are gradient descent on the negative ELBO and their fixed point is the posterior."""

import re

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from labkit.memory.elbo import ELBOMemory, ELBOMixture, fixed_point_errors


def _logits(seed, n=40, K=4, scale=1.0):
    return np.random.default_rng(seed).normal(scale=scale, size=(n, K))


def test_velocity_is_minus_the_energy_gradient_and_keeps_the_minus_one():
    ell = _logits(0)
    v = _logits(1)
    vt = torch.tensor(v, requires_grad=True)
    q = torch.softmax(vt, -1)
    energy = (q * (torch.log_softmax(vt, -1) - torch.from_numpy(ell))).sum()
    (grad,) = torch.autograd.grad(energy, vt)
    mem = ELBOMemory(ell)
    np.testing.assert_allclose(mem.velocity(v), -grad.numpy(), rtol=1e-6, atol=1e-14)
    qn = softmax(v, -1)
    literal = np.einsum(
        "nij,nj->ni", np.einsum("ni,ij->nij", qn, np.eye(4)) - qn[:, :, None] * qn[:, None, :], ell - np.log(qn) - 1
    )  # (diag q − q qᵀ)(ℓ − log q − 1), as written in the paper
    np.testing.assert_allclose(mem.velocity(v), literal, rtol=1e-6, atol=1e-14)


def test_energy_is_kl_to_the_posterior_minus_log_evidence():
    ell, v = _logits(2), _logits(3)
    q, p = softmax(v, -1), softmax(ell, -1)
    kl = np.sum(q * (np.log(q) - np.log(p)), -1)
    np.testing.assert_allclose(ELBOMemory(ell).energy(v), kl - logsumexp(ell, -1), rtol=1e-6)


@pytest.mark.parametrize("shift", [0.0, 3.7])
def test_the_posterior_is_a_fixed_point(shift):
    mem = ELBOMemory(_logits(4))
    assert np.abs(mem.velocity(mem.log_joint + shift)).max() < 1e-12


def test_dynamics_converge_to_the_posterior_to_float_precision():
    errors = fixed_point_errors(ELBOMemory(_logits(5, n=100, K=3)), 5000)
    assert errors["converged_error"] <= 1e-6
    assert errors["energy_gap"] <= 1e-6
    assert errors["kl_identity_error"] <= 1e-12


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_energy_decreases_monotonically_even_for_stiff_log_joints(scale):
    _, energy = ELBOMemory(_logits(6, scale=scale), step_size=1.0).trajectory(300)
    assert np.diff(energy, axis=0).max() <= 1e-12 * (1 + np.abs(energy).max())
    assert np.all(energy[-1] < energy[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"log_joint": np.array([0.0, np.inf])}, "finite"), ({"log_joint": np.zeros(3), "step_size": 0}, "step_size")],
)
def test_memory_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ELBOMemory(**kwargs)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(200, centers=[[-4, 0], [4, 0], [0, 5]], cluster_std=0.8, random_state=1)


def test_mixture_conventions_and_monotone_lower_bound(blobs):
    X, y = blobs
    est = ELBOMixture(3, random_state=0)
    assert est.fit(X) is est
    assert np.diff(est.lower_bounds_).min() >= -1e-9
    assert adjusted_rand_score(y, est.labels_) > 0.95
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    np.testing.assert_allclose(est.predict_proba(X).sum(1), 1.0)
    again = clone(est).fit(X)
    np.testing.assert_array_equal(again.means_, est.means_)
    np.testing.assert_allclose(est.memory(X).posterior(), est.predict_proba(X), atol=1e-4)
    learned = {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}
    assert {"means_", "variances_", "weights_", "labels_", "lower_bound_", "n_iter_", "converged_"} <= learned


def test_mixture_rejects_bad_n_components(blobs):
    with pytest.raises(ValueError, match="n_components"):
        ELBOMixture(0).fit(blobs[0])


def test_every_mixture_parameter_but_the_seed_has_one_declared_check():
    assert set(ELBOMixture._parameter_constraints) == set(ELBOMixture().get_params()) - {"random_state"}


@pytest.mark.parametrize(
    "name, value, allowed",
    [
        ("n_components", True, "an integer >= 1"),
        ("n_steps", 0, "an integer >= 1"),
        ("max_iter", 2.5, "an integer >= 1"),
        ("step_size", 0.0, "a number > 0"),
        ("tol", -1e-3, "a number in [0, inf)"),
        ("em_tol", float("nan"), "a number in [0, inf)"),
        ("reg_covar", -1.0, "a number in [0, inf)"),
    ],
)
def test_mixture_checks_its_parameters_at_fit(blobs, name, value, allowed):
    with pytest.raises(
        ValueError, match=re.escape(f"ELBOMixture: bad value for '{name}': {value!r}; allowed: {allowed}")
    ):
        ELBOMixture(**{name: value}).fit(blobs[0])


def test_mixture_refuses_more_components_than_points_and_accepts_zero_tolerances():
    X = np.arange(10.0).reshape(5, 2)
    with pytest.raises(ValueError, match="ELBOMixture: bad value for 'n_components': 6; allowed: at most n_samples=5"):
        ELBOMixture(6).fit(X)
    ELBOMixture(2, tol=0, em_tol=0.0, reg_covar=0, max_iter=2, random_state=0).fit(X)
