"""Classical binary and modern continuous Hopfield networks: energies, updates, capacity references."""

import numpy as np
import pytest

from labkit import repro
from labkit.memory import hopfield
from labkit.memory.base import EnergyMemory


def _binary_net(n=60, p=5, seed=0, synchronous=False):
    patterns = hopfield.random_binary_patterns(p, n, repro.rng(seed))
    return patterns, hopfield.BinaryHopfield(synchronous=synchronous).fit(patterns)


def test_hebbian_weights_are_symmetric_with_zero_diagonal():
    patterns, net = _binary_net()
    assert isinstance(net, EnergyMemory)
    np.testing.assert_array_equal(net.weights_, net.weights_.T)
    assert np.all(np.diag(net.weights_) == 0)
    p, n = patterns.shape
    expected = patterns.T @ patterns / n - np.eye(n) * p / n
    np.testing.assert_allclose(net.weights_, expected, atol=1e-12)
    s = patterns[:2]
    np.testing.assert_allclose(net.energy(s), [-0.5 * x @ net.weights_ @ x for x in s], rtol=1e-12)


def test_asynchronous_energy_never_increases_neuron_by_neuron():
    patterns, net = _binary_net(n=80, p=20, seed=1)  # load 0.25: plenty of flips
    s = hopfield.random_binary_patterns(6, 80, repro.rng(2))
    energies = [net.energy(s)]
    for _ in range(5):
        for i in range(80):
            h = s @ net.weights_[:, i]
            s[:, i] = np.where(h == 0, s[:, i], np.sign(h))
            energies.append(net.energy(s))
    assert np.all(np.diff(np.array(energies), axis=0) <= 1e-12)
    # the library's sweep is the same sequence of single-neuron updates
    s0 = hopfield.random_binary_patterns(6, 80, repro.rng(2))
    swept = s0
    for _ in range(5):
        swept = net.update(swept)
    np.testing.assert_array_equal(swept, s)


def test_retrieval_below_capacity_and_synchronous_mode():
    patterns, net = _binary_net(n=200, p=10, seed=3)
    noisy = patterns.copy()
    noisy[:, :20] *= -1  # 10% of bits flipped
    np.testing.assert_array_equal(net.retrieve(noisy, tol=0.0), patterns)
    sync = hopfield.BinaryHopfield(synchronous=True).fit(patterns)
    np.testing.assert_array_equal(sync.update(patterns), patterns)


def test_ags_theory_numbers():
    assert hopfield.ags_alpha_c() == pytest.approx(0.1379, abs=2e-4)
    assert hopfield.ags_overlap(0.1379) == pytest.approx(0.967, abs=0.01)
    assert hopfield.ags_overlap(0.05) > 0.999
    assert np.isnan(hopfield.ags_overlap(0.15))


def test_binary_capacity_curve_shape_determinism_and_cliff():
    loads = (0.05, 0.1, 0.3)
    a = hopfield.binary_capacity_curve(100, loads, 2, seed=0)
    b = hopfield.binary_capacity_curve(100, loads, 2, seed=0)
    assert a.shape == (3,)
    np.testing.assert_array_equal(a, b)
    assert a[0] > 0.95 and a[2] < 0.8


def test_modern_hopfield_energy_decreases_and_retrieves():
    x = repro.rng(4).standard_normal((30, 8))
    net = hopfield.ModernHopfield(beta=2.0).fit(x)
    assert isinstance(net, EnergyMemory)
    xi = repro.rng(5).standard_normal((10, 8))
    for _ in range(20):
        nxt = net.update(xi)
        assert np.all(net.energy(nxt) <= net.energy(xi) + 1e-10)
        xi = nxt
    # energy formula and its lower bound E ≥ 0 (Ramsauer et al. Lemma 1 with the constants included)
    e = net.energy(xi)
    lse = np.log(np.exp(2.0 * xi @ x.T).sum(axis=1)) / 2.0
    m2 = np.max(np.sum(x**2, axis=1))
    np.testing.assert_allclose(e, -lse + 0.5 * np.sum(xi**2, axis=1) + np.log(30) / 2.0 + 0.5 * m2, rtol=1e-12)
    assert np.all(e >= -1e-12)
    # large β: one update from a stored pattern returns it
    sharp = hopfield.ModernHopfield(beta=50.0).fit(x / np.linalg.norm(x, axis=1, keepdims=True) * 3)
    np.testing.assert_allclose(sharp.update(sharp.patterns_[:3]), sharp.patterns_[:3], atol=1e-6)


def test_clear_errors():
    with pytest.raises(ValueError, match="±1"):
        hopfield.BinaryHopfield().fit(np.array([[1.0, 0.0]]))
    _, net = _binary_net()
    with pytest.raises(ValueError, match="shape"):
        net.energy(np.ones(3))
    with pytest.raises(ValueError, match="beta"):
        hopfield.ModernHopfield(beta=0).fit(np.ones((2, 2)))
    with pytest.raises(ValueError, match="shape"):
        hopfield.ModernHopfield().fit(np.ones((2, 2))).update(np.ones(3))
    with pytest.raises(ValueError, match="loads"):
        hopfield.binary_capacity_curve(10, [0.1, -1], 1, 0)
