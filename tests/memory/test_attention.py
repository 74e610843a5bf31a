"""Normalise-then-attend as vMF posterior inference; the vMF-KDE memory; token clustering on the sphere
(labkit.memory.attention)."""

import re

import numpy as np
import pytest
import torch
from scipy.special import gammaln, iv
from scipy.stats import vonmises_fisher

from labkit.memory import attention as A
from labkit.memory.base import EnergyMemory


def _rel(a, b):
    return np.max(np.abs(a - b) / np.abs(b))


def _random_layer(seed, dim=12, n_keys=20, n_queries=30):
    r = np.random.default_rng(seed)
    keys = 1.5 * r.standard_normal((n_keys, dim))
    gamma = r.standard_normal(dim) * np.exp(0.3 * r.standard_normal(dim))
    delta = r.standard_normal(dim)
    queries = 2 * r.standard_normal((n_queries, dim)) + r.standard_normal((n_queries, 1))
    return keys, gamma, delta, queries


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("norm", A.NORMS)
def test_attention_equals_vmf_posterior(norm, seed):
    keys, gamma, delta, queries = _random_layer(seed)
    bias = delta if norm == "layer" else None
    w = A.attention_weights(queries, keys, norm, gamma, bias)
    p = A.attention_vmf_mixture(keys, norm, gamma, bias).posterior(A.sphere_point(queries, norm))
    assert w.shape == p.shape == (len(queries), len(keys))
    assert _rel(p, w) <= 1e-6
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)


def test_identity_check_helper_matches_scipy():
    checks = A.identity_check(10, 12, 16, seed=3)
    assert list(checks) == list(A.NORMS)
    for norm, v in checks.items():
        assert v.weights.shape == v.posterior.shape == v.log_density.shape == v.log_density_scipy.shape == (16, 12)
        assert _rel(v.posterior, v.weights) <= 1e-6, norm
        assert _rel(v.log_density, v.log_density_scipy) <= 1e-6, norm
        assert v.max_rel_error == pytest.approx(_rel(v.posterior, v.weights), rel=1e-12)
        assert v.max_rel_error_scipy == pytest.approx(_rel(v.log_density, v.log_density_scipy), rel=1e-12)


def test_layernorm_sphere_is_radius_sqrt_d_in_the_centred_hyperplane():
    _, _, _, queries = _random_layer(0, dim=9)
    q = A.normalise(queries, "layer").numpy()
    np.testing.assert_allclose(q.sum(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 3.0, rtol=1e-12)
    assert A.sphere_point(queries, "layer").shape == (len(queries), 8)  # S^{D-2} in R^{D-1}
    np.testing.assert_allclose(np.linalg.norm(A.normalise(queries, "rms").numpy(), axis=-1), 3.0, rtol=1e-12)


def test_mixture_is_a_genuine_posterior_not_the_logits():
    """Change the prior or drop the normalisers and the identity breaks: the normalisers really enter."""
    keys, gamma, delta, queries = _random_layer(1)
    mix = A.attention_vmf_mixture(keys, "layer", gamma, delta)
    u = A.sphere_point(queries, "layer")
    w = A.attention_weights(queries, keys, "layer", gamma, delta)
    assert _rel(A.vmf_posterior(u, mix.means, mix.kappas, np.zeros(len(keys))), w) > 1e-2
    # RMSNorm with unequal concentrations: uniform mixing is wrong, mixing ∝ 1/C_D(κ_i) is right ...
    rms = A.attention_vmf_mixture(keys, "rms", gamma)
    w_rms = A.attention_weights(queries, keys, "rms", gamma)
    u_rms = A.sphere_point(queries, "rms")
    assert _rel(A.vmf_posterior(u_rms, rms.means, rms.kappas, np.zeros(len(keys))), w_rms) > 1e-2
    # ... and with equal concentrations uniform mixing is exact
    unit = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    eq = A.attention_vmf_mixture(unit, "rms")
    np.testing.assert_allclose(eq.log_weights, -np.log(len(keys)), rtol=1e-12)
    assert _rel(eq.posterior(u_rms), A.attention_weights(queries, unit, "rms")) <= 1e-6


def test_defaults_gamma_one_delta_zero():
    keys, _, _, queries = _random_layer(2)
    w = A.attention_weights(queries, keys)
    assert _rel(A.attention_vmf_mixture(keys).posterior(A.sphere_point(queries)), w) <= 1e-6
    ref = (
        torch.softmax(
            torch.nn.LayerNorm(keys.shape[1], eps=0.0, dtype=torch.float64)(torch.tensor(queries))
            @ torch.tensor(keys).T,
            dim=-1,
        )
        .detach()
        .numpy()
    )
    np.testing.assert_allclose(w, ref, rtol=1e-12)


@pytest.mark.parametrize("p", [2, 3, 5, 16, 100])
def test_vmf_log_density_matches_scipy(p):
    r = np.random.default_rng(p)
    mu = r.standard_normal(p)
    mu /= np.linalg.norm(mu)
    u = A.random_sphere_points((7,), p, 0)
    for kappa in [1e-4, 0.3, 5.0, 80.0, 700.0]:
        assert _rel(A.vmf_log_density(u, mu, kappa), vonmises_fisher(mu, kappa).logpdf(u)) <= 1e-6


def test_vmf_normaliser_limits_and_bessel():
    for p in (2, 3, 10):
        area = 2 * np.pi ** (p / 2) / np.exp(gammaln(p / 2))
        np.testing.assert_allclose(A.log_vmf_normaliser(p, 0.0), -np.log(area), rtol=1e-13)
        np.testing.assert_allclose(A.log_vmf_normaliser(p, 1e-8), -np.log(area), rtol=1e-7)
    np.testing.assert_allclose(A.log_vmf_normaliser(3, 2.0), np.log(2.0 / (4 * np.pi * np.sinh(2.0))), rtol=1e-13)
    np.testing.assert_allclose(A.log_bessel_iv(2.5, [0.1, 3.0, 40.0]), np.log(iv(2.5, [0.1, 3.0, 40.0])), rtol=1e-12)
    # where ive underflows (ν ≫ κ) the power series takes over; mpmath reference values of log I_500(κ)
    np.testing.assert_allclose(
        A.log_bessel_iv(500, [100.0, 1.0, 1e-5]),
        [-650.3534147886027, -2957.9035497383807, -8714.366781225242],
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match="bad value for 'p': 1; allowed: an integer >= 2"):
        A.log_vmf_normaliser(1, 1.0)
    with pytest.raises(ValueError, match="kappa must be >= 0"):
        A.log_bessel_iv(1.0, -1.0)


def test_vmf_posterior_integrates_the_mixture_density():
    """On S¹ the mixture density Σ π_i f_i integrates to 1 and the posterior sums to 1."""
    theta = np.linspace(0, 2 * np.pi, 20001)[:-1]
    u = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    means = A.random_sphere_points((3,), 2, 5)
    mix = A.VMFMixture(means, np.array([0.5, 4.0, 30.0]), np.log([0.2, 0.3, 0.5]))
    density = np.exp(mix.log_weights + mix.log_likelihoods(u)).sum(axis=-1)
    np.testing.assert_allclose(density.mean() * 2 * np.pi, 1.0, rtol=1e-9)
    np.testing.assert_allclose(mix.posterior(u).sum(axis=-1), 1.0, rtol=1e-12)


def test_clear_errors():
    keys, gamma, delta, queries = _random_layer(0)
    with pytest.raises(ValueError, match=r"bad value for 'norm': 'batch'; allowed: one of 'layer', 'rms'"):
        A.attention_weights(queries, keys, "batch")
    with pytest.raises(ValueError, match="bad value for 'norm'"):
        A.attention_vmf_mixture(keys, "Layer")
    with pytest.raises(ValueError, match="no bias"):
        A.attention_weights(queries, keys, "rms", gamma, delta)
    with pytest.raises(ValueError, match="no bias"):
        A.attention_vmf_mixture(keys, "rms", gamma, delta)
    for alpha in (0.0, 1.5, True):
        with pytest.raises(
            ValueError,
            match=re.escape(f"attention_step: bad value for 'alpha': {alpha!r}; allowed: a number in (0, 1]"),
        ):
            A.attention_step(A.random_sphere_points((4,), 3, 0), 1.0, alpha=alpha)
    A.attention_step(A.random_sphere_points((4,), 3, 0), 1.0, alpha=1)  # pure attention is allowed
    with pytest.raises(ValueError, match="unit vectors"):
        A.VMFKDEMemory(keys, 1.0)
    with pytest.raises(ValueError, match="VMFKDEMemory: bad value for 'beta': 0.0; allowed: a number > 0"):
        A.VMFKDEMemory(A.random_sphere_points((4,), 3, 0), 0.0)


@pytest.mark.parametrize("beta", [0.5, 4.0, 32.0])
def test_mean_shift_never_raises_the_energy(beta):
    memory = A.VMFKDEMemory(A.random_sphere_points((40,), 6, 1), beta)
    assert isinstance(memory, EnergyMemory)
    x = A.random_sphere_points((50,), 6, 2)
    for _ in range(25):
        x_next = memory.update(x)
        np.testing.assert_allclose(np.linalg.norm(x_next, axis=-1), 1.0, rtol=1e-12)
        assert np.all(memory.energy(x_next) <= memory.energy(x) + 1e-12 * np.abs(memory.energy(x)))
        x = x_next
    e = A.mean_shift_energies(5, 30, (beta,), 20, 15, seed=0)[beta]
    assert e.shape == (16, 20) and np.all(np.diff(e, axis=0) <= 1e-12 * np.abs(e[:-1]))


def test_mean_shift_is_the_normalised_attention_step_and_density_is_normalised():
    patterns = A.random_sphere_points((10,), 3, 4)
    memory = A.VMFKDEMemory(patterns, 3.0)
    x = A.random_sphere_points((5,), 3, 5)
    # unit x: RMSNorm gives √3·x, so γ = β/√3 makes the query β·x and the logits β x_jᵀx
    w = A.attention_weights(x, patterns, "rms", gamma=np.full(3, 3.0 / np.sqrt(3)))
    np.testing.assert_allclose(
        memory.update(x), (w @ patterns) / np.linalg.norm(w @ patterns, axis=-1, keepdims=True), rtol=1e-12
    )
    # the vMF-KDE on S² integrates to 1 (Fibonacci-lattice quadrature)
    n = 200_000
    z = 1 - (2 * np.arange(n) + 1) / n
    phi = np.pi * (3 - np.sqrt(5)) * np.arange(n)
    grid = np.stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z], axis=-1)
    np.testing.assert_allclose(np.exp(memory.log_density(grid)).mean() * 4 * np.pi, 1.0, rtol=1e-6)


def test_dynamics_shapes_determinism_and_collapse():
    x0 = A.random_sphere_points((3, 10), 3, 0)
    np.testing.assert_array_equal(x0, A.random_sphere_points((3, 10), 3, 0))
    xs = A.token_dynamics(x0, 1.0, 60)
    assert xs.shape == (61, 3, 10, 3)
    np.testing.assert_allclose(np.linalg.norm(xs, axis=-1), 1.0, rtol=1e-12)
    counts = A.cluster_count(xs, 0.1)
    assert counts.shape == (61, 3) and counts[0].min() >= 5 and np.all(counts[-1] == 1)
    np.testing.assert_allclose(A.mean_pairwise_cosine(xs[-1]), 1.0, atol=1e-9)
    r = A.cluster_experiment(3, 8, (1.0, 50.0), 20, 2, seed=1, threshold=0.1)
    again = A.cluster_experiment(3, 8, (1.0, 50.0), 20, 2, seed=1, threshold=0.1)
    assert isinstance(r, A.TokenClustering) and r.dim == 3 and r.betas == (1.0, 50.0)
    assert r.counts.shape == r.cosine.shape == r.displacement.shape == (2, 2, 21)
    np.testing.assert_array_equal(r.depth, np.arange(21))
    np.testing.assert_array_equal(r.counts, again.counts)
    assert np.allclose(r.displacement[:, :, 0], 0, atol=1e-6) and np.all(r.displacement[0, :, -1] > 0.1)


def test_mean_displacement_is_the_mean_angle_to_the_start():
    e = np.eye(3)
    x0 = np.stack([e[0], e[1]])
    moved = np.stack([e[1], e[1]])  # the first token turned by π/2, the second stayed
    np.testing.assert_allclose(A.mean_displacement(moved, x0), np.pi / 4)
    np.testing.assert_allclose(A.mean_displacement(np.stack([x0, moved]), x0), [0.0, np.pi / 4])


def test_cluster_count_and_cosine_on_known_configurations():
    e = np.eye(3)
    x = np.stack([e[0], e[0], e[1], e[2], -e[2]])
    assert A.cluster_count(x, 0.1) == 4
    labels = A.cluster_labels(x, 0.1)
    assert labels[0] == labels[1] and len(set(labels)) == 4
    assert A.cluster_count(x, 2.0) == 1  # every other pair is π/2 < 2 apart: −e2 joins through e0
    np.testing.assert_allclose(A.mean_pairwise_cosine(x), (1 + -1) / 10)
    batch = np.stack([x, x[[0, 0, 0, 0, 0]]])
    np.testing.assert_array_equal(A.cluster_count(batch, 0.1), [4, 1])
