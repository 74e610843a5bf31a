"""In-context energy transformer: shapes, causality, no positional encoding, the batched-candidate pass against
one forward pass per candidate, Langevin hygiene, determinism, training progress and the notebook config."""

import numpy as np
import pytest
import torch

from labkit import repro
from labkit.config import ConfigError
from labkit.memory import icl, icl_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed=0, d=16, heads=2, layers=2):
    torch.manual_seed(seed)
    return icl_model.EnergyTransformer(d, heads, layers).eval()


def _rel_err(a, b):
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-12)


def test_shapes():
    m = _model()
    x, c = torch.randn(3, 7, 2), torch.randn(3, 5, 2)
    e_x, e_c = m(x, c, torch.tensor([0, 1, 3, 7, 7]))
    assert e_x.shape == (3, 7) and e_c.shape == (3, 5)
    e_x2, none = m(x)
    assert none is None and torch.allclose(e_x, e_x2, atol=1e-6)  # candidates never change the real tokens


def test_mask_blocks_what_it_should():
    mask = icl_model.candidate_mask(3, torch.tensor([0, 2]))
    allowed = ~mask
    assert allowed[:3, :3].tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert not allowed[:3, 3:].any()  # real tokens never see candidates
    assert allowed[3].tolist() == [False, False, False, True, False]  # prefix 0: itself only
    assert allowed[4].tolist() == [True, True, False, False, True]  # prefix 2: x_0, x_1 and itself


def test_causal_later_tokens_do_not_change_earlier_energies():
    m = _model()
    x = torch.randn(2, 9, 2)
    y = x.clone()
    y[:, 5:] = torch.randn(2, 4, 2) * 10
    e_x, e_y = m(x)[0], m(y)[0]
    assert torch.allclose(e_x[:, :5], e_y[:, :5], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(e_x[:, 5:], e_y[:, 5:])


def test_no_positional_encoding_one_layer_sees_the_context_as_a_set():
    """Without positional encoding a one-layer model's energy at n is a function of the set x_<n (deeper causal
    models are not exactly invariant: a context token's hidden state depends on its own prefix)."""
    m = _model(layers=1)
    x = torch.randn(2, 10, 2)
    n = 7
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    y = torch.cat([x[:, perm], x[:, n:]], dim=1)
    e_x, e_y = m(x)[0], m(y)[0]
    assert _rel_err(e_y[:, n:], e_x[:, n:]) < 1e-6


@pytest.mark.parametrize("train_mode", [False, True])
def test_batched_candidates_equal_one_pass_per_candidate(train_mode):
    m = _model(d=32, heads=4, layers=3).train(train_mode)
    torch.manual_seed(1)
    x = torch.randn(3, 6, 2) * 4
    prefix = torch.arange(6).repeat_interleave(3)  # the training layout: 3 negatives per token
    c = torch.rand(3, len(prefix), 2) * 30 - 15
    _, batched = m(x, c, prefix)
    naive = torch.stack(
        [m(torch.cat([x[:, :p], c[:, j : j + 1]], dim=1))[0][:, -1] for j, p in enumerate(prefix.tolist())], dim=1
    )
    err = _rel_err(batched, naive)
    assert err < 1e-6, err


def test_candidate_gradients_are_their_own():
    """dE(c_m)/dc_m' = 0 for m' ≠ m, so one backward of the sum gives every candidate's own gradient."""
    m = _model()
    x, c = torch.randn(1, 4, 2), torch.randn(1, 3, 2, requires_grad=True)
    prefix = torch.tensor([1, 2, 4])
    jac = torch.autograd.functional.jacobian(lambda c_: m(x, c_, prefix)[1], c)  # (1, 3, 1, 3, 2)
    off = jac[0, :, 0].clone()
    for j in range(3):
        off[j, j] = 0
    assert off.abs().max() == 0 and jac[0, 0, 0, 0].abs().sum() > 0


def test_langevin_keeps_shape_and_leaks_no_gradient():
    m = _model().train()
    x, neg = torch.randn(2, 5, 2), torch.rand(2, 10, 2) * 30 - 15
    prefix = torch.arange(5).repeat_interleave(2)
    out = icl_model.langevin(m, x, neg, prefix, 3, 0.1, 0.01, torch.Generator().manual_seed(0))
    assert out.shape == neg.shape and not out.requires_grad and out.grad_fn is None
    assert all(p.grad is None for p in m.parameters())
    assert not torch.equal(out, neg)
    assert torch.equal(icl_model.langevin(m, x, neg, prefix, 0, 0.1, 0.01, torch.Generator()), neg)


def test_bounded_langevin_stays_in_the_box_the_normaliser_integrates():
    m = _model().train()
    with torch.no_grad():
        m.head.weight.mul_(1e4)  # steep energy: free chains fly off
    x, neg = torch.randn(2, 5, 2), torch.rand(2, 10, 2) * 30 - 15
    prefix = torch.arange(5).repeat_interleave(2)
    free = icl_model.langevin(m, x, neg, prefix, 3, 0.1, 0.01, torch.Generator().manual_seed(0))
    bounded = icl_model.langevin(m, x, neg, prefix, 3, 0.1, 0.01, torch.Generator().manual_seed(0), bound=15.0)
    assert free.abs().max() > 15 and bounded.abs().max() <= 15
    assert icl_model.InContextEnergyModel(bounded=True).chain_bound == 15.0
    assert icl_model.InContextEnergyModel().chain_bound is None


def test_gradient_update_lowers_the_energy():
    X, _ = icl_model.THREE_COMPONENTS.sample(16, 12, repro.rng(0))
    est = icl_model.InContextEnergyModel(
        d_model=16, n_heads=2, n_layers=1, n_steps=3, batch_size=4, progress=False
    ).fit(X)
    mem = est.memory(X[0, :8], step_size=1e-3)
    q = repro.rng(1).uniform(-5, 5, (20, 2))
    assert mem.energy(q).shape == (20,) and mem.update(q).shape == q.shape
    assert np.all(mem.energy(mem.update(q)) <= mem.energy(q) + 1e-6)
    assert np.allclose(mem.log_density(q), -mem.energy(q))
    assert mem.energy(q[None]).shape == (1, 20)


def test_fit_is_deterministic_and_loss_decreases():
    X, _ = icl_model.THREE_COMPONENTS.sample(64, 16, repro.rng(0))
    kw = dict(d_model=16, n_heads=2, n_layers=1, langevin_steps=3, n_steps=40, batch_size=8, progress=False)
    a = icl_model.InContextEnergyModel(seed=3, **kw).fit(X)
    b = icl_model.InContextEnergyModel(seed=3, **kw).fit(X)
    assert np.array_equal(a.loss_history_, b.loss_history_)
    q = repro.rng(2).normal(0, 5, (1, 30, 2))
    assert np.array_equal(a.energy(X[:1, :5], q), b.energy(X[:1, :5], q))
    c = icl_model.InContextEnergyModel(seed=4, **kw).fit(X)
    assert not np.array_equal(a.loss_history_, c.loss_history_)
    assert a.loss_history_[-10:].mean() < a.loss_history_[:5].mean()


def test_energy_is_chunk_invariant_and_checks_shapes():
    X, _ = icl_model.THREE_COMPONENTS.sample(8, 10, repro.rng(0))
    est = icl_model.InContextEnergyModel(
        d_model=16, n_heads=2, n_layers=1, n_steps=2, batch_size=4, progress=False
    ).fit(X)
    q = repro.rng(1).normal(0, 5, (2, 50, 2))
    full = est.energy(X[:2, :4], q)
    est.chunk_size = 7
    assert np.allclose(est.energy(X[:2, :4], q), full, rtol=1e-5, atol=1e-6)
    assert est.energy(np.zeros((2, 0, 2)), q).shape == (2, 50)  # empty context
    with pytest.raises(ValueError, match="share B"):
        est.energy(X[:3, :4], q)
    with pytest.raises(RuntimeError, match="not fitted"):
        icl_model.InContextEnergyModel().energy(X[:2, :4], q)
    with pytest.raises(ValueError, match="shape"):
        icl_model.InContextEnergyModel().fit(np.zeros((4, 2)))


def test_mixture_sampler_and_density():
    fam = icl_model.MixtureFamily(3, 5.0, 0.33)
    pts, means = fam.sample(4, 500, repro.rng(0))
    assert pts.shape == (4, 500, 2) and means.shape == (4, 3, 2)
    nearest = np.sqrt(((pts[:, :, None] - means[:, None]) ** 2).sum(-1)).min(-1)
    assert nearest.max() < 6 * 0.33
    # the density integrates to one on a grid wide enough to hold every component
    grid, area = icl.square_grid(25.0, 400)
    log_p = fam.log_density(np.broadcast_to(grid, (4, *grid.shape)), means)
    total = np.exp(log_p).sum(axis=1) * area
    assert np.allclose(total, 1.0, rtol=1e-6), total


def test_grid_normaliser_of_a_gaussian_energy():
    grid, area = icl.square_grid(10.0, 200)
    energy = (grid**2).sum(-1) / (2 * 0.7**2)  # Z = 2π σ²
    assert abs(icl.grid_log_normaliser(energy, area) - np.log(2 * np.pi * 0.7**2)) < 1e-9


def _mixture_energy(means, std, offset=0.0):
    """-log p of an equal-weight isotropic mixture, shifted by ``offset`` (so log Z = -offset)."""
    fam = icl_model.MixtureFamily(len(means), 1.0, std)
    return lambda x: -fam.log_density(np.asarray(x)[None], means[None])[0] + offset


def test_adaptive_normaliser_recovers_a_sharp_mixture_the_coarse_grid_misses():
    means = np.random.default_rng(0).normal(0.0, 4.5, (5, 2))
    energy = _mixture_energy(means, 0.13, offset=3.0)  # the unseen family's width; log Z = -3
    assert abs(icl.adaptive_log_normaliser(energy, 15.0, 64, 8, 12.0) - (-3.0)) < 1e-3
    grid, area = icl.square_grid(15.0, 50)  # the old evaluation grid (spacing 0.6)
    assert abs(icl.grid_log_normaliser(energy(grid), area) - (-3.0)) > 0.1
    flat = lambda x: np.zeros(len(x))  # the uniform density on the square
    assert abs(icl.adaptive_log_normaliser(flat, 15.0, 16, 4, 12.0) - np.log(30.0**2)) < 1e-9


def test_has_well_sees_one_well_per_cluster_and_not_a_broad_basin():
    means = np.array([[0.0, 5.0], [4.0, -2.0], [-4.0, -2.0]])
    assert icl.has_well(_mixture_energy(means, 0.33), means, 1.0, 0.05).tolist() == [True, True, True]
    floor = np.array([0.0, 4.6])  # one bowl whose floor is near the first mean
    bowl = lambda x: ((np.asarray(x) - floor) ** 2).sum(-1) / 50.0
    assert icl.has_well(bowl, means, 1.0, 0.05).tolist() == [True, False, False]
    shifted = means + 1.5  # wells 2.1 away from every centre
    assert not icl.has_well(_mixture_energy(shifted, 0.33), means, 1.0, 0.05).any()


def _tiny_fit(**kw):
    X, _ = icl_model.THREE_COMPONENTS.sample(8, 10, repro.rng(0))
    return icl_model.InContextEnergyModel(
        d_model=16, n_heads=2, n_layers=1, n_steps=2, batch_size=4, progress=False, **kw
    ).fit(X)


def test_sample_mse_is_the_squared_distance_of_langevin_samples_and_deterministic():
    est = _tiny_fit(langevin_steps=0)  # no steps: the uniform initial draw
    means = np.zeros((2, 1, 2))
    mse = icl.sample_mse(est, np.zeros((2, 3, 2)), means, 4000, torch.Generator().manual_seed(0))
    assert mse.shape == (2,) and np.allclose(mse, 2 * 15.0**2 / 3, rtol=0.05)  # E|U|² on [-15, 15]²
    est = _tiny_fit()
    ctx, means = np.zeros((2, 3, 2)), np.ones((2, 3, 2))
    a = icl.sample_mse(est, ctx, means, 16, torch.Generator().manual_seed(1))
    b = icl.sample_mse(est, ctx, means, 16, torch.Generator().manual_seed(1))
    assert np.array_equal(a, b)


def test_evaluate_shapes_and_endpoints():
    cfg = icl.ICLEnergyConfig.from_params(scale="smoke")
    est = _tiny_fit()
    e = icl.evaluate(est, icl_model.FIVE_COMPONENTS, cfg, repro.rng(1))
    shape = (cfg.n_eval_mixtures, len(cfg.context_sizes))
    assert e.nll.shape == e.wells.shape == e.sample_mse.shape == shape and e.true_nll.shape == (shape[0],)
    assert e.context.shape == (shape[0], cfg.context_sizes[-1], 2) and e.means.shape == (shape[0], 5, 2)
    assert np.all(np.isfinite(e.nll)) and np.all((0 <= e.wells) & (e.wells <= 1)) and np.all(e.sample_mse > 0)
    assert np.isclose(e.true_sample_mse, 2 * 0.13**2)


def test_endpoint_paired_change_and_standard_error():
    def ev(first, last):
        return icl.ContextEvaluation(
            np.array([0, 4]),
            np.array([[first, last]]),
            np.ones((1, 2)),
            np.ones((1, 2)),
            np.zeros(1),
            0.0,
            np.zeros((1, 4, 2)),
            np.zeros((1, 3, 2)),
        )

    e = icl.endpoints([[ev(5.0, 1.0), ev(7.0, 1.0)], [ev(6.0, 3.0)]], "nll")  # seeds: 6 → 1 and 6 → 3
    assert e.first.tolist() == [6.0, 6.0] and e.last.tolist() == [1.0, 3.0]
    assert e.change == -4.0 and np.isclose(e.se, np.std([-5.0, -3.0], ddof=1) / np.sqrt(2))
    assert e.as_dict() == {"first": 6.0, "last": 2.0, "change": -4.0, "se": e.se}


def test_config_presets_and_validation():
    for scale in ("smoke", "quick", "paper"):
        cfg = icl.ICLEnergyConfig.from_params(scale=scale)
        assert isinstance(cfg.estimator(0, progress=False), icl_model.InContextEnergyModel)
    for scale in ("quick", "paper"):  # the authors' small configuration
        cfg = icl.ICLEnergyConfig.from_params(scale=scale)
        r = cfg.recipe
        assert (r.d_model, r.n_heads, r.n_layers, r.langevin_steps) == (64, 8, 3, 7)
        assert (r.step_size, r.noise_std, r.learning_rate, r.reg) == (0.1, 0.01, 1e-3, 1e-3)
        assert cfg.n_seeds >= 3
    cfg = icl.ICLEnergyConfig.from_params(scale="quick")
    assert cfg.estimator(0).seed != cfg.estimator(1).seed
    assert cfg.training_data(0).shape == (cfg.n_train_sequences, cfg.context_len, 2)
    streams = {cfg.estimator(i).seed for i in range(3)} | {
        int(cfg.eval_rng(0, 0, 0).integers(2**31)),
        int(repro.rng(cfg.seed).integers(2**31)),
    }
    assert len(streams) == 5  # distinct streams: none is the bare seed's or another's, padded
    bad = [
        dict(recipe=dict(n_heads=5)),
        dict(n_seeds=1),
        dict(context_sizes=(1, 2)),
        dict(context_sizes=(0, 4, 2)),
        dict(context_sizes=(0, 64)),
        dict(landscape_lim=20.0),
        dict(well_spacing=2.0),
        dict(recipe=dict(step_size=0)),
        dict(recipe=dict(n_stepz=3)),
        dict(n_steps=3),
    ]
    for params in bad:
        with pytest.raises(ConfigError):
            icl.ICLEnergyConfig.from_params(scale="quick", **params)
