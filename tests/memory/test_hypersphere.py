"""Notebook 02d's experiment (labkit.memory.hypersphere): config, run, the aggregation over seeds, and its figures."""

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pytest

from labkit.config import ConfigError
from labkit.memory import attention as A
from labkit.memory import hypersphere as H
from labkit.memory import plots_sphere


@pytest.fixture(scope="module")
def smoke():
    cfg = H.HypersphereAttentionConfig.from_params(scale="smoke", n_layers=12, betas=(1.0, 64.0))
    return cfg, H.run(cfg)


@pytest.fixture
def close_figures():
    yield
    plt.close("all")


def _clustering(counts, cosine=None, displacement=None, dim=3, betas=(1.0, 4.0)):
    counts = np.asarray(counts, dtype=float)
    zeros = np.zeros_like(counts)
    return A.TokenClustering(
        dim,
        betas,
        np.arange(counts.shape[-1]),
        counts,
        zeros if cosine is None else np.asarray(cosine, float),
        zeros if displacement is None else np.asarray(displacement, float),
    )


# ------------------------------------------------------------------------------------------------ the aggregation
def test_summarise_clusters_takes_seed_means_then_reads_depths():
    counts = [
        [[8, 4, 5, 2], [6, 4, 1, 2]],  # β = 1: seed means 7, 4, 3, 2
        [[9, 9, 8, 10], [9, 7, 8, 10]],
    ]  # β = 4: seed means 9, 8, 8, 10 (2 above its minimum 8)
    cosine = np.broadcast_to(np.linspace(0, 1, 4), (2, 2, 4)) * np.array([1.0, 0.5])[:, None, None]
    displacement = np.zeros((2, 2, 4))
    displacement[:, :, -1] = [[0.2, 0.4], [0.0, 0.1]]
    s = H.summarise_clusters(_clustering(counts, cosine, displacement))
    assert s.betas == (1.0, 4.0)
    np.testing.assert_allclose(s.initial_clusters, [7, 9])
    np.testing.assert_allclose(s.final_clusters, [2, 10])
    np.testing.assert_allclose(s.depth_averaged_clusters, [4.0, 8.75])
    np.testing.assert_allclose(s.max_rise_above_running_min, [0.0, 2.0])
    np.testing.assert_allclose(s.final_mean_cosine, [1.0, 0.5])
    np.testing.assert_allclose(s.final_displacement_rad, [0.3, 0.05])
    assert s.max_rise == 2.0 and not s.ends_at_or_below_start  # β = 4 ends above its start
    np.testing.assert_array_equal(s.moving(0.1), [True, False])


def test_a_count_that_dips_and_recovers_is_a_rise_but_may_end_at_its_start():
    s = H.summarise_clusters(_clustering([[[5, 2, 3, 5]]], betas=(1.0,)))
    np.testing.assert_allclose(s.max_rise_above_running_min, [3.0])
    assert s.ends_at_or_below_start


def test_summary_numbers_are_the_recorded_keys_in_order():
    s = H.summarise_clusters(_clustering(np.ones((2, 2, 3))))
    assert list(s.numbers()) == [
        "betas",
        "initial_clusters",
        "final_clusters",
        "depth_averaged_clusters",
        "max_rise_above_running_min",
        "final_mean_cosine",
        "final_displacement_rad",
    ]
    np.testing.assert_array_equal(s.numbers()["final_clusters"], s.final_clusters)


# ------------------------------------------------------------------------------------------------------------ run
def test_run_measures_every_part_from_the_config(smoke):
    cfg, result = smoke
    assert isinstance(result, H.HypersphereResult)
    assert list(result.identity.norms) == list(A.NORMS) and list(result.identity.energies) == list(cfg.betas)
    assert result.identity.energies[cfg.betas[0]].shape == (cfg.energy_n_steps + 1, cfg.energy_n_queries)
    assert result.identity.norms["layer"].weights.shape == (cfg.id_n_queries, cfg.id_n_keys)
    x0 = A.random_sphere_points((cfg.n_tokens,), 3, cfg.seed, 3)
    np.testing.assert_array_equal(
        result.paths[cfg.betas[-1]], A.token_dynamics(x0, cfg.betas[-1], cfg.n_layers, cfg.alpha)
    )
    np.testing.assert_array_equal(
        result.final_labels[cfg.betas[0]], A.cluster_labels(result.paths[cfg.betas[0]][-1], cfg.cluster_angle)
    )
    assert (result.low.dim, result.high.dim) == (3, cfg.high_dim)
    again = A.cluster_experiment(
        cfg.high_dim, cfg.n_tokens, cfg.betas, cfg.n_layers, cfg.n_seeds, cfg.seed, cfg.cluster_angle, cfg.alpha
    )
    np.testing.assert_array_equal(result.high.counts, again.counts)
    assert result.high.counts.shape == (len(cfg.betas), cfg.n_seeds, cfg.n_layers + 1)


def test_result_summaries_and_numbers(smoke):
    cfg, result = smoke
    assert list(result.summaries) == ["d3", f"d{cfg.high_dim}"]
    np.testing.assert_array_equal(
        result.summaries["d3"].final_clusters, H.summarise_clusters(result.low).final_clusters
    )
    assert result.summaries[f"d{cfg.high_dim}"] is result.high_summary
    assert result.trajectory_numbers() == {
        f"clusters_at_final_depth_beta_{b:g}": len(np.unique(result.final_labels[b])) for b in cfg.betas
    }


def test_identity_numbers_are_the_worst_errors(smoke):
    _, result = smoke
    identity = result.identity
    numbers = identity.numbers()
    for norm in A.NORMS:
        v = identity.norms[norm]
        assert numbers[f"max_rel_error_{norm}"] == np.max(np.abs(v.posterior - v.weights) / v.weights)
    assert numbers["max_rel_error_logpdf_vs_scipy"] == max(v.max_rel_error_scipy for v in identity.norms.values())
    assert numbers["min_attention_weight"] == min(v.weights.min() for v in identity.norms.values())
    assert max(numbers[f"max_rel_error_{n}"] for n in A.NORMS) <= 1e-6
    rising = dataclasses.replace(identity, energies={1.0: np.array([[-2.0, -1.0], [-1.5, -1.0]])})
    assert rising.max_energy_rise == pytest.approx(0.25)  # (−1.5 − (−2)) / |−2|


# ------------------------------------------------------------------------------------------------------- figures
def test_figures_draw_the_result(smoke, close_figures):
    cfg, result = smoke
    fig = plots_sphere.identity_figure(result.identity, cfg.identity_tol)
    points = fig.axes[0].lines[0]
    np.testing.assert_array_equal(points.get_xdata(), result.identity.norms["layer"].weights.ravel())
    np.testing.assert_array_equal(points.get_ydata(), result.identity.norms["layer"].posterior.ravel())
    fig = plots_sphere.clustering_figure(result.low, cfg.cluster_angle, "t", movement_floor=cfg.movement_floor)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), result.low.counts[0].mean(axis=0))
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), result.low.depth + 1)


# -------------------------------------------------------------------------------------------------------- config
def test_config_presets_and_errors():
    for scale in ("smoke", "quick", "paper"):
        H.HypersphereAttentionConfig.from_params(scale=scale)
    with pytest.raises(ConfigError, match="betas"):
        H.HypersphereAttentionConfig.from_params(betas=(4.0, 1.0))
    with pytest.raises(ConfigError, match="unknown parameter"):
        H.HypersphereAttentionConfig.from_params(beta=1.0)


@pytest.mark.parametrize("alpha", [0, 1.5, -0.5, True, "0.5"])
def test_config_alpha_is_in_the_unit_interval_open_at_zero(alpha):
    with pytest.raises(ConfigError, match=r"bad value for 'alpha': .*; allowed: a number in \(0, 1\]"):
        H.HypersphereAttentionConfig.from_params(alpha=alpha)


def test_config_alpha_may_be_one():
    assert H.HypersphereAttentionConfig.from_params(alpha=1).alpha == 1
