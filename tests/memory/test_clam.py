"""ClAM: energy = β⁻¹ × a Gaussian-mixture NLL, dynamics that descend it, a clusterer with sklearn conventions."""

import re

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from labkit.memory.base import EnergyMemory
from labkit.memory.clam import ClAM, ClAMMemory, clam_step


def _memory(seed, K=4, d=3, beta=0.7, step_size=1.0):
    g = np.random.default_rng(seed)
    return ClAMMemory(g.normal(size=(K, d)), beta=beta, step_size=step_size), g.normal(size=(50, d))


@pytest.mark.parametrize("seed", range(3))
def test_log_density_is_the_uniform_gaussian_mixture(seed):
    mem, v = _memory(seed)
    var = 1 / (2 * mem.beta)
    direct = logsumexp([multivariate_normal(mu, var * np.eye(3)).logpdf(v) for mu in mem.memories], axis=0) - np.log(4)
    np.testing.assert_allclose(mem.log_density(v), direct, rtol=1e-6)
    assert isinstance(mem, EnergyMemory)


def test_dynamics_are_minus_half_the_energy_gradient():
    mem, v = _memory(0)
    vt = torch.tensor(v, requires_grad=True)
    mu = torch.from_numpy(mem.memories)
    energy = -torch.logsumexp(-mem.beta * torch.cdist(vt, mu) ** 2, dim=1) / mem.beta
    (grad,) = torch.autograd.grad(energy.sum(), vt)
    velocity = clam_step(torch.from_numpy(v), mu, mem.beta, 1.0).numpy() - v
    np.testing.assert_allclose(velocity, -0.5 * grad.numpy(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("step_size", [0.1, 0.5, 1.0])
def test_energy_never_rises_along_the_dynamics(step_size):
    mem, v = _memory(1, beta=3.0, step_size=step_size)
    energies = [mem.energy(v)]
    for _ in range(30):
        v = mem.update(v)
        energies.append(mem.energy(v))
    rises = np.diff(energies, axis=0)
    assert rises.max() <= 1e-12 * np.abs(energies).max()


def test_retrieval_settles_on_a_stored_memory_at_low_temperature():
    mem = ClAMMemory(np.array([[0.0, 0.0], [5.0, 5.0]]), beta=5.0)
    np.testing.assert_allclose(mem.retrieve(np.array([[4.0, 4.5], [0.3, -0.2]])), mem.memories[::-1], atol=1e-8)


@pytest.mark.parametrize("kwargs, match", [({"beta": 0.0}, "beta"), ({"step_size": 1.5}, "step_size")])
def test_memory_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClAMMemory(np.zeros((2, 2)), **kwargs)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(200, centers=[[-4, 0], [4, 0], [0, 5]], cluster_std=0.6, random_state=0)


def test_clam_estimator_conventions(blobs):
    X, y = blobs
    est = ClAM(3, beta=1.0, max_iter=10, random_state=0)
    assert est.fit(X) is est
    learned = {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}
    assert {"cluster_centers_", "labels_", "loss_curve_", "memory_", "n_features_in_"} <= learned
    assert est.cluster_centers_.shape == (3, 2)
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    again = clone(est).fit(X)
    np.testing.assert_array_equal(again.cluster_centers_, est.cluster_centers_)
    assert clone(est).get_params() == est.get_params()
    assert adjusted_rand_score(y, est.labels_) > 0.95
    assert est.loss_curve_[-1] <= est.loss_curve_[0]
    assert isinstance(est.memory_, ClAMMemory)


@pytest.mark.parametrize(
    "kwargs, match", [({"n_clusters": 0}, "n_clusters"), ({"n_steps": 0}, "n_steps"), ({"beta": -1.0}, "beta")]
)
def test_clam_rejects_bad_parameters(blobs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClAM(**{"n_clusters": 3, **kwargs}).fit(blobs[0])


def test_every_parameter_but_the_seed_has_one_declared_check():
    assert set(ClAM._parameter_constraints) == set(ClAM().get_params()) - {"random_state"}


@pytest.mark.parametrize(
    "name, value, allowed",
    [
        ("n_clusters", 2.0, "an integer >= 1"),
        ("n_steps", True, "an integer >= 1"),
        ("max_iter", 0, "an integer >= 1"),
        ("batch_size", -5, "an integer >= 1"),
        ("beta", 0, "a number > 0"),
        ("learning_rate", -0.1, "a number > 0"),
        ("step_size", 0.0, "a number in (0, 1]"),
        ("step_size", 1.01, "a number in (0, 1]"),
    ],
)
def test_clam_checks_its_parameters_at_fit_naming_the_argument_and_what_is_allowed(blobs, name, value, allowed):
    est = ClAM(**{"n_clusters": 3, name: value})  # __init__ only stores
    with pytest.raises(ValueError, match=re.escape(f"ClAM: bad value for '{name}': {value!r}; allowed: {allowed}")):
        est.fit(blobs[0])


def test_clam_refuses_more_clusters_than_points():
    with pytest.raises(
        ValueError, match=re.escape("ClAM: bad value for 'n_clusters': 6; allowed: at most n_samples=5")
    ):
        ClAM(6).fit(np.arange(10.0).reshape(5, 2))


def test_memory_step_size_one_is_allowed_and_numpy_scalars_pass():
    ClAMMemory(np.zeros((2, 2)), beta=np.float64(2.0), step_size=1)
    ClAM(np.int64(2), beta=np.float32(1.0), max_iter=1).fit(np.arange(10.0).reshape(5, 2))
