"""Notebook 02b's experiment (labkit.memory.clustering): widths, scores, paired tests, seeds, the run and its
aggregation, figures (labkit.memory.plots_clustering), config."""

import dataclasses
import itertools
import random
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import adjusted_rand_score, silhouette_score

from labkit.config import ConfigError
from labkit.memory import clustering as pc
from labkit.memory import plots_clustering as plots
from labkit.memory.clustering import ClusteringConfig
from labkit.memory.crp import CRPMemory

TINY = dict(scale="smoke", datasets=("blobs",), n_seeds=2, blobs_n=40, blobs_k=2, seed=1)


def _rows(per_method: dict, dataset: str = "x", metric: str = "ARI") -> list[dict]:
    """Result rows from {method: per-seed values of ``metric``}."""
    return [
        {"dataset": dataset, "method": m, "seed": s, metric: float(v)}
        for m, values in per_method.items()
        for s, v in enumerate(values)
    ]


@pytest.fixture(scope="module")
def tiny():
    """A two-seed comparison on 40 two-cluster blobs (seconds), with its config."""
    cfg = ClusteringConfig.from_params(**TINY)
    return cfg, pc.compare(cfg)


@pytest.fixture
def close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------------------------ kernel widths
def test_median_beta_is_one_over_twice_the_per_feature_variance_at_the_median_pair_distance():
    z = np.random.default_rng(0).normal(size=(25, 3))
    pair_sq = [np.sum((z[i] - z[j]) ** 2) for i, j in itertools.combinations(range(len(z)), 2)]
    sigma2 = np.median(pair_sq) / (2 * z.shape[1])  # σ² = median_{i<j} ‖z_i − z_j‖² / (2d)
    assert pc.median_beta(z) == pytest.approx(1 / (2 * sigma2), rel=1e-12)


def test_median_beta_is_per_feature_and_ignores_order_and_location():
    z = np.random.default_rng(1).normal(size=(30, 2))
    beta = pc.median_beta(z)
    assert pc.median_beta(np.hstack([z, z])) == pytest.approx(beta, rel=1e-12)  # twice d, twice ‖·‖²: same σ²
    assert pc.median_beta(z[::-1] + 5.0) == pytest.approx(beta, rel=1e-12)
    assert pc.median_beta(3.0 * z) == pytest.approx(beta / 9, rel=1e-12)


def test_oracle_beta_averages_the_within_class_variance_over_classes_not_points():
    z = np.array(
        [
            [0.0, 0.0],
            [2.0, 0.0],  # class 0: variances (1, 0) → 0.5
            [0.0, -3.0],
            [0.0, 3.0],
            [0.0, -3.0],
            [0.0, 3.0],
        ]
    )  # class 1: variances (0, 9) → 4.5
    y = np.array([0, 0, 1, 1, 1, 1])
    assert pc.oracle_beta(z, y) == pytest.approx(1 / (2 * 2.5))  # σ_w² = (0.5 + 4.5) / 2, not size-weighted 19/6


def test_on_separated_blobs_the_oracle_width_is_narrower_than_the_median_heuristic():
    cfg = ClusteringConfig.from_params(**{**TINY, "blobs_std": 0.2})
    z, y = pc.load_dataset("blobs", cfg, seed=0)
    assert pc.oracle_beta(z, y) > 10 * pc.median_beta(z)


# ------------------------------------------------------------------------------------------------------------- data
@pytest.mark.parametrize(
    "name, shape, k",
    [("iris", (150, 4), 3), ("wine", (178, 13), 3), ("breast_cancer", (569, 30), 2), ("digits", (1797, 64), 10)],
)
def test_bundled_data_sets_are_standardised_with_their_true_labels(name, shape, k):
    z, y = pc.load_dataset(name, ClusteringConfig.from_params(scale="smoke"), seed=0)
    assert z.shape == shape and y.shape == shape[:1] and len(np.unique(y)) == k
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    std = z.std(axis=0)
    assert np.all(np.isclose(std, 1.0) | (std == 0))  # digits has constant (blank) pixels


def test_blobs_are_drawn_afresh_per_seed_from_the_config():
    cfg = ClusteringConfig.from_params(**{**TINY, "blobs_n": 60, "blobs_k": 4})
    z, y = pc.load_dataset("blobs", cfg, seed=7)
    assert z.shape == (60, 2) and set(y) == {0, 1, 2, 3}
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), 1.0)
    np.testing.assert_array_equal(pc.load_dataset("blobs", cfg, seed=7)[0], z)
    assert not np.allclose(pc.load_dataset("blobs", cfg, seed=8)[0], z)


def test_an_unknown_data_set_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown data set 'mnist'; allowed: iris, wine, breast_cancer, digits, blobs"):
        pc.load_dataset("mnist", ClusteringConfig.from_params(scale="smoke"), seed=0)


# ----------------------------------------------------------------------------------------------------------- methods
def test_make_methods_configures_the_six_clusterers_from_the_config():
    cfg = ClusteringConfig.from_params(scale="smoke", n_init=2, bgmm_factor=3, crp_discount=0.25, crp_n_refine=4)
    methods = pc.make_methods(k=4, beta=0.7, cfg=cfg, seed=11)
    assert tuple(methods) == pc.METHODS
    expected = {
        "k-means": dict(n_clusters=4, n_init=2, random_state=11),
        "GMM": dict(n_components=4, n_init=2, random_state=11),
        "DP-GMM": dict(
            n_components=12,
            n_init=2,
            max_iter=cfg.bgmm_max_iter,
            random_state=11,
            weight_concentration_prior_type="dirichlet_process",
        ),
        "ClAM": dict(n_clusters=4, beta=0.7, n_steps=cfg.clam_n_steps, max_iter=cfg.clam_max_iter, random_state=11),
        "ELBO memory": dict(n_components=4, n_steps=cfg.elbo_n_steps, max_iter=cfg.elbo_max_iter, random_state=11),
        "CRP memory": dict(alpha=cfg.crp_alpha, discount=0.25, beta=0.7, rho=cfg.crp_rho, n_refine=4, random_state=11),
    }
    for name, params in expected.items():
        got = methods[name].get_params()
        assert {p: got[p] for p in params} == params, name


def test_scores_of_a_relabelled_perfect_clustering():
    cfg = ClusteringConfig.from_params(**TINY)
    z, y = pc.load_dataset("blobs", cfg, seed=0)
    s = pc.scores(z, y, 5 - y)  # the same partition under other names
    assert s["ARI"] == pytest.approx(1) and s["AMI"] == pytest.approx(1) and s["NMI"] == pytest.approx(1)
    assert s["silhouette"] == pytest.approx(silhouette_score(z, y)) and s["clusters"] == 2


@pytest.mark.parametrize("labels, clusters", [(np.zeros(40, int), 1), (np.arange(40), 40)])
def test_silhouette_is_nan_when_undefined(labels, clusters):
    cfg = ClusteringConfig.from_params(**TINY)
    z, y = pc.load_dataset("blobs", cfg, seed=0)
    s = pc.scores(z, y, labels)
    assert np.isnan(s["silhouette"]) and s["clusters"] == clusters
    assert s["ARI"] == pytest.approx(adjusted_rand_score(y, labels))


def test_compare_scores_every_seed_and_method_plus_the_oracle_ablations(tiny):
    cfg, rows = tiny
    runs = [(r["dataset"], r["seed"], r["method"]) for r in rows]
    assert len(runs) == cfg.n_seeds * 8
    assert set(runs) == {("blobs", s, m) for s in range(cfg.n_seeds) for m in pc.METHODS + pc.ORACLE_ABLATIONS}
    for r in rows:
        assert -1 <= r["ARI"] <= 1 and 0 <= r["NMI"] <= 1 + 1e-12 and r["clusters"] >= 1


def test_compare_seeds_each_run_and_gives_the_memories_the_median_or_the_oracle_width(tiny):
    cfg, rows = tiny
    found = {}
    for s in range(cfg.n_seeds):
        z, y = pc.load_dataset("blobs", cfg, pc.stream_seed(cfg.seed, pc.DATA, s))
        for method, beta in (("CRP memory", pc.median_beta(z)), ("CRP memory (oracle width)", pc.oracle_beta(z, y))):
            est = CRPMemory(
                alpha=cfg.crp_alpha,
                discount=cfg.crp_discount,
                beta=beta,
                rho=cfg.crp_rho,
                n_refine=cfg.crp_n_refine,
                random_state=pc.stream_seed(cfg.seed, pc.FIT, s),
            )
            found[s, method] = pc.scores(z, y, est.fit_predict(z))["ARI"]
    assert {(r["seed"], r["method"]): r["ARI"] for r in rows if r["method"].startswith("CRP")} == found
    assert any(found[s, "CRP memory"] != found[s, "CRP memory (oracle width)"] for s in range(cfg.n_seeds))


def test_alpha_sweep_shapes_and_more_memories_at_larger_alpha():
    cfg = ClusteringConfig.from_params(**TINY)
    sweep = pc.alpha_sweep(cfg)
    np.testing.assert_array_equal(sweep.alpha, cfg.alpha_values)
    for values in (sweep.created, sweep.kept, sweep.ari):
        assert values.shape == (cfg.n_seeds, len(cfg.alpha_values))
    assert np.all(sweep.kept <= sweep.created) and np.all(sweep.kept >= 1)
    assert np.all(np.diff(sweep.created.mean(axis=0)) > 0)
    assert np.all(sweep.created[:, -1] > cfg.blobs_k)  # α = 100 opens far more memories than clusters


@pytest.mark.parametrize("oracle", [False, True])
def test_alpha_sweep_entry_is_the_crp_memory_at_that_alpha_and_width(oracle):
    cfg = ClusteringConfig.from_params(**TINY)
    sweep = pc.alpha_sweep(cfg, oracle=oracle)
    s, j = 1, 1
    z, y = pc.load_dataset("blobs", cfg, pc.stream_seed(cfg.seed, pc.DATA, s))
    est = CRPMemory(
        alpha=cfg.alpha_values[j],
        discount=cfg.crp_discount,
        beta=pc.oracle_beta(z, y) if oracle else pc.median_beta(z),
        rho=cfg.crp_rho,
        n_refine=cfg.crp_n_refine,
        random_state=pc.stream_seed(cfg.seed, pc.FIT, s),
    ).fit(z)
    assert (sweep.created[s, j], sweep.kept[s, j]) == (est.n_created_, est.n_clusters_)
    assert sweep.ari[s, j] == pytest.approx(adjusted_rand_score(y, est.labels_))


def test_the_sweep_at_crp_alpha_repeats_the_comparisons_crp_memory(tiny):
    cfg, rows = tiny
    sweep = pc.alpha_sweep(cfg)
    j = list(cfg.alpha_values).index(cfg.crp_alpha)
    compared = {r["seed"]: r for r in rows if r["method"] == "CRP memory"}
    for s in range(cfg.n_seeds):
        assert sweep.ari[s, j] == pytest.approx(compared[s]["ARI"], abs=1e-12)


def test_alpha_sweep_aggregates_over_seeds():
    g = np.random.default_rng(0)
    sweep = pc.AlphaSweep(np.array([0.1, 1.0, 10.0]), *(g.uniform(1, 9, (4, 3)) for _ in range(3)))
    summary = sweep.summary()
    assert list(summary) == ["created_mean", "created_std", "kept_mean", "ARI_mean"]
    np.testing.assert_allclose(summary["created_mean"], sweep.created.mean(axis=0))
    np.testing.assert_allclose(summary["created_std"], sweep.created.std(axis=0))
    np.testing.assert_allclose(summary["kept_mean"], sweep.kept.mean(axis=0))
    np.testing.assert_allclose(summary["ARI_mean"], sweep.ari.mean(axis=0))
    assert sweep.created_at(1.0) == pytest.approx(sweep.created[:, 1].mean())


# ------------------------------------------------------------------------------------------------------------ seeds
def test_stream_seed_is_the_first_draw_of_its_repro_substream():
    from labkit import repro

    assert pc.stream_seed(7, pc.FIT, 3) == int(repro.rng(7, pc.FIT, 3).integers(2**31))
    assert pc.stream_seed(7, pc.DEMO) == pc.stream_seed(7, pc.DEMO, 0)
    assert isinstance(pc.stream_seed(0, pc.DATA, 0), int) and 0 <= pc.stream_seed(0, pc.DATA, 0) < 2**31


def test_every_stream_and_repetition_gets_its_own_seed():
    streams = (pc.DATA, pc.FIT, pc.IDENTITY, pc.DEMO)
    assert len(set(streams)) == len(streams) and 0 not in streams
    seeds = [pc.stream_seed(seed, k, s) for seed in (0, 1) for k in streams for s in range(20)]
    assert len(set(seeds)) == len(seeds)


def test_blobs_and_clusterers_change_with_the_root_seed(tiny):
    cfg, rows = tiny
    other = pc.compare(ClusteringConfig.from_params(**{**TINY, "seed": 2}))
    assert [r["ARI"] for r in other] != [r["ARI"] for r in rows]


# ------------------------------------------------------------------------------------------- significantly_beaten
@pytest.mark.parametrize(
    "n_seeds, alpha, beaten", [(4, 0.05, False), (5, 0.05, True), (5, 0.03, False), (6, 0.02, True)]
)
def test_a_consistently_worse_method_is_beaten_at_the_exact_one_sided_level(n_seeds, alpha, beaten):
    # all n paired differences positive (and distinct): exact one-sided p = 2^-n (1/16, 1/32, 1/64)
    a = np.linspace(0.2, 0.6, n_seeds)
    rows = _rows({"a": a, "b": a + 0.1 + 0.01 * np.arange(n_seeds)})
    expected = {"a": {"x": ["b"]}, "b": {}} if beaten else {"a": {}, "b": {}}
    assert pc.significantly_beaten(rows, ("a", "b"), "ARI", alpha) == expected


@pytest.mark.parametrize(
    "b_minus_a",
    [
        [0.0] * 8,  # identical: p = 1 even at a lax level
        [0.01, -0.01, 0.02, -0.02, 0.01, -0.01, 0.02, -0.02],  # noise-level differences, both signs
        [0.0] * 9 + [0.1, 0.2, 0.3],  # ties add no evidence to three wins
    ],
    ids=["identical", "noise", "mostly-ties"],
)
def test_no_method_is_beaten_without_consistent_evidence(b_minus_a):
    a = np.linspace(0.3, 0.7, len(b_minus_a))
    rows = _rows({"a": a, "b": a + np.array(b_minus_a)})
    assert pc.significantly_beaten(rows, ("a", "b"), "ARI", 0.1) == {"a": {}, "b": {}}
    if not any(b_minus_a):
        assert pc.significantly_beaten(rows, ("a", "b"), "ARI", 0.99) == {"a": {}, "b": {}}


def test_differences_are_paired_by_seed_not_by_row_order():
    a = np.array([0.1, 0.9, 0.3, 0.7, 0.5, 0.2, 0.8])  # seed effects far larger than the margin
    rows = _rows({"a": a, "b": a + 0.05 + 0.001 * np.arange(7)})
    random.Random(0).shuffle(rows)
    assert pc.significantly_beaten(rows, ("a", "b"), "ARI", 0.05) == {"a": {"x": ["b"]}, "b": {}}


def test_beaten_lists_every_better_method_per_data_set_for_the_chosen_metric_only():
    base = np.linspace(0.2, 0.5, 6)
    ranks = np.arange(6) * 0.01
    rows = _rows(
        {"a": base + 0.2 + ranks, "b": base + 0.1 + ranks, "c": base, "a (oracle width)": base + 0.5}, "x", "AMI"
    ) + _rows({"a": base, "b": base, "c": base, "a (oracle width)": base}, "y", "AMI")
    for r in rows:  # ARI says the opposite: c is best everywhere
        r["ARI"] = 1.0 - r["AMI"]
    beaten = pc.significantly_beaten(rows, ("a", "b", "c"), "AMI", 0.05)
    assert beaten == {"a": {}, "b": {"x": ["a"]}, "c": {"x": ["a", "b"]}}  # the ablation is no competitor
    assert pc.significantly_beaten(rows, ("a", "b", "c"), "ARI", 0.05) == {
        "a": {"x": ["b", "c"]},
        "b": {"x": ["c"]},
        "c": {},
    }


# ---------------------------------------------------------------------------------------------- summaries, winners
def test_summarise_gives_mean_and_sample_std_and_ignores_nan_silhouettes():
    rows = [
        {
            "dataset": "x",
            "method": "k-means",
            "seed": s,
            "ARI": ari,
            "AMI": 0.5,
            "NMI": 0.6,
            "silhouette": sil,
            "clusters": c,
        }
        for s, (ari, sil, c) in enumerate([(0.2, np.nan, 1), (0.4, 0.3, 2), (0.9, 0.5, 3)])
    ]
    rows += [
        {
            "dataset": "x",
            "method": "GMM",
            "seed": s,
            "ARI": 0.1,
            "AMI": 0.1,
            "NMI": 0.1,
            "silhouette": sil,
            "clusters": 2,
        }
        for s, sil in enumerate([np.nan, 0.7, np.nan])
    ]
    rows += [
        {
            "dataset": "y",
            "method": "GMM",
            "seed": s,
            "ARI": 0.1,
            "AMI": 0.1,
            "NMI": 0.1,
            "silhouette": np.nan,
            "clusters": 1,
        }
        for s in range(2)
    ]
    out = pc.summarise(rows)
    km = out["x"]["k-means"]
    assert km["ARI"] == pytest.approx((0.5, np.std([0.2, 0.4, 0.9], ddof=1)))
    assert km["silhouette"] == pytest.approx((0.4, np.std([0.3, 0.5], ddof=1)))  # the NaN seed left out
    assert km["clusters"] == pytest.approx((2.0, 1.0)) and km["AMI"] == pytest.approx((0.5, 0.0))
    assert out["x"]["GMM"]["silhouette"] == (0.7, 0.0)  # one finite value: std 0
    assert all(np.isnan(v) for v in out["y"]["GMM"]["silhouette"])  # all NaN: NaN


def test_winners_pick_the_best_compared_method_and_never_an_ablation():
    summary = {
        "x": {"k-means": {"ARI": (0.5, 0.1)}, "GMM": {"ARI": (0.7, 0.3)}, "ClAM (oracle width)": {"ARI": (0.99, 0.0)}},
        "y": {"k-means": {"ARI": (0.6, 0.0), "AMI": (0.1, 0.0)}, "GMM": {"ARI": (0.2, 0.0), "AMI": (0.4, 0.0)}},
    }
    assert pc.winners(summary) == {"x": "GMM", "y": "k-means"}
    assert pc.winners({"y": summary["y"]}, metric="AMI") == {"y": "GMM"}


def test_summary_table_prints_mean_and_std_per_data_set_and_method():
    summary = {"iris": {"k-means": {m: (0.5, 0.25) for m in (*pc.METRICS, "clusters")}}}
    lines = pc.summary_table(summary).split("\n")
    assert lines[:2] == ["", "iris"]
    assert lines[2].split() == ["method", *pc.METRICS, "clusters"]
    assert lines[3].split() == ["k-means"] + ["0.500", "±", "0.250"] * 5


# --------------------------------------------------------------------------------------------------- ELBO check, run
@pytest.fixture(scope="module")
def elbo():
    cfg = ClusteringConfig.from_params(scale="smoke", seed=3)
    return cfg, pc.elbo_check(cfg)


def test_elbo_check_runs_the_dynamics_on_random_log_joints_and_the_most_uncertain_iris_flower(elbo):
    from labkit import repro
    from labkit.memory.elbo import ELBOMemory, ELBOMixture, fixed_point_errors

    cfg, check = elbo
    random_memory = ELBOMemory(repro.rng(cfg.seed, pc.IDENTITY, 0).normal(size=(cfg.identity_n_points, 3)))
    expected = fixed_point_errors(random_memory, cfg.identity_n_steps)
    assert {k: check.random[k] for k in pc.FIXED_POINT_KEYS} == {k: expected[k] for k in pc.FIXED_POINT_KEYS}
    z, _ = pc.load_dataset("iris", cfg, seed=0)
    memory = ELBOMixture(3, random_state=pc.stream_seed(cfg.seed, pc.DEMO)).fit(z).memory(z)
    p = memory.posterior()
    assert check.iris_index == int(np.argmax(scipy.stats.entropy(p, axis=1)))
    np.testing.assert_allclose(check.iris_posterior, p[check.iris_index], rtol=1e-12)
    evidence = ELBOMemory(memory.log_joint[check.iris_index]).log_evidence()
    assert check.iris_log_evidence == pytest.approx(float(evidence))
    assert check.iris["q"].shape == (cfg.demo_n_steps + 1, 3)


def test_elbo_check_worst_error_and_rise_take_the_tested_numbers_only(elbo):
    _, check = elbo
    keys = ("fixed_point_residual", "kl_identity_error", "converged_error", "energy_gap", "max_energy_rise")
    random = dict.fromkeys(keys, 1e-9) | {"converged_error": 3e-9, "max_energy_rise": -1.0}
    iris = dict.fromkeys(keys, 1e-9) | {"converged_error": 0.5, "energy_gap": 0.4, "max_energy_rise": 2e-15}
    fake = dataclasses.replace(check, random=random, iris=iris)
    assert fake.worst_error == 3e-9  # the iris flower's 1/t tail is not tested
    assert fake.max_energy_rise == 2e-15
    numbers = fake.numbers()
    assert numbers["random_logits"] == {k: random[k] for k in keys} and numbers["iris_point"] == iris
    assert numbers["iris_point_index"] == check.iris_index
    assert check.worst_error <= 1e-6 and check.max_energy_rise <= 1e-12


def test_run_returns_the_typed_result_of_every_part(tiny):
    cfg, rows = tiny
    result = pc.run(cfg)
    assert isinstance(result, pc.ClusteringResult)
    assert result.rows == rows
    for sweep, oracle in ((result.sweep, False), (result.oracle_sweep, True)):
        again = pc.alpha_sweep(cfg, oracle=oracle)
        np.testing.assert_array_equal(sweep.created, again.created)
        np.testing.assert_array_equal(sweep.ari, again.ari)
    assert result.elbo.iris_index == pc.elbo_check(cfg).iris_index
    assert result.summary == pc.summarise(rows)
    assert result.best() == {m: pc.winners(pc.summarise(rows), m) for m in pc.METRICS}
    assert result.beaten(0.3) == pc.significantly_beaten(rows, pc.METHODS, "ARI", 0.3)


# ---------------------------------------------------------------------------------------------------------- figures
def test_comparison_figure_draws_each_mean_with_hatched_ablations(close_figures):
    methods = ("ClAM (oracle width)", "GMM", "k-means")  # drawn in METHODS + ablations order
    summary = {
        ds: {
            m: {metric: (0.1 * i + 0.01 * j + 0.3 * d, 0.05) for j, metric in enumerate(pc.METRICS)}
            for i, m in enumerate(methods)
        }
        for d, ds in enumerate(("breast_cancer", "iris"))
    }
    fig = plots.comparison_figure(summary)
    assert len(fig.axes) == len(pc.METRICS)
    order = ("k-means", "GMM", "ClAM (oracle width)")
    for ax, metric in zip(fig.axes, pc.METRICS):
        bars = ax.patches
        assert len(bars) == 2 * 3
        heights = [b.get_height() for b in bars]  # method by method, data set inside
        assert heights == pytest.approx([summary[ds][m][metric][0] for m in order for ds in summary])
        assert [b.get_hatch() for b in bars] == [None] * 4 + ["//"] * 2
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == ["breast cancer", "iris"]


def test_alpha_figure_plots_seed_means_against_alpha_with_the_true_k(close_figures):
    g = np.random.default_rng(0)
    sweep = pc.AlphaSweep(np.array([0.1, 1.0, 10.0]), *(g.uniform(1, 9, (4, 3)) for _ in range(3)))
    oracle = dataclasses.replace(sweep, ari=sweep.ari / 2)
    for with_oracle in (False, True):
        fig = plots.alpha_figure(sweep, true_k=5, oracle=oracle if with_oracle else None)
        left, right = fig.axes
        assert len(left.containers) == 2 * (1 + with_oracle) and len(right.containers) == 1 + with_oracle
        np.testing.assert_allclose(left.containers[0][0].get_ydata(), sweep.created.mean(0))
        np.testing.assert_allclose(left.containers[1][0].get_ydata(), sweep.kept.mean(0))
        np.testing.assert_allclose(right.containers[0][0].get_ydata(), sweep.ari.mean(0))
        if with_oracle:
            np.testing.assert_allclose(right.containers[1][0].get_ydata(), oracle.ari.mean(0))
            assert right.containers[1][0].get_linestyle() == "--"
        assert any(list(line.get_ydata()) == [5, 5] for line in left.lines)


def test_elbo_dynamics_figure_shows_the_gap_to_minus_log_evidence_floored_for_log_scale(close_figures):
    q = np.array([[0.5, 0.5], [0.7, 0.3], [0.8, 0.2]])
    energy = np.array([3.0, 2.5, 2.0])
    fig = plots.elbo_dynamics_figure(q, energy, posterior=np.array([0.8, 0.2]), log_evidence=-2.0)
    left, right = fig.axes
    assert len(left.lines) == 2 * 2  # q_k(t) and the dashed posterior, per k
    np.testing.assert_allclose(left.lines[0].get_ydata(), q[:, 0])
    np.testing.assert_allclose(right.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(right.lines[0].get_ydata(), [1.0, 0.5, 1e-17])


# ---------------------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "name, value",
    [
        ("n_seeds", 1),
        ("n_seeds", 0),
        ("n_init", True),
        ("bgmm_factor", 0),
        ("blobs_std", 0.0),
        ("datasets", ("iris", "mnist")),
        ("datasets", ()),
        ("alpha_values", (10.0, 1.0, 0.1)),
        ("alpha_values", (1.0,)),
        ("alpha_values", (0.0, 1.0)),
        ("crp_alpha", 0.5),
        ("crp_discount", 1.0),
        ("crp_discount", -0.1),
        ("crp_rho", -1.0),
        ("crp_n_refine", -1),
        ("crp_n_refine", 1.5),
        ("significance", 0.0),
        ("significance", 1.0),
    ],
)
def test_config_rejects_a_bad_value_naming_the_argument(name, value):
    with pytest.raises(ConfigError, match=f"^ClusteringConfig: bad value for '{name}'"):
        ClusteringConfig.from_params(scale="quick", **{name: value})


def test_config_names_the_parameter_a_typo_meant():
    with pytest.raises(ConfigError, match="unknown parameter 'n_seed' \\(did you mean 'n_seeds'\\?\\)"):
        ClusteringConfig.from_params(n_seed=3)


def test_config_accepts_lists_as_tuples_and_crp_alpha_among_the_swept_values():
    cfg = ClusteringConfig.from_params(scale="smoke", alpha_values=[0.5, 2.0], crp_alpha=2.0, datasets=["wine"])
    assert cfg.alpha_values == (0.5, 2.0) and cfg.datasets == ("wine",) and cfg.n_seeds == 2


@pytest.mark.parametrize(
    "name, value, allowed",
    [
        ("crp_n_refine", True, "an integer >= 0"),
        ("crp_n_refine", False, "an integer >= 0"),
        ("crp_discount", False, "a number in [0, 1)"),
        ("crp_discount", True, "a number in [0, 1)"),
    ],
)
def test_config_rejects_booleans_for_crp_numbers(name, value, allowed):
    with pytest.raises(
        ConfigError, match=re.escape(f"ClusteringConfig: bad value for '{name}': {value!r}; allowed: {allowed}")
    ):
        ClusteringConfig.from_params(**{name: value})


def test_config_accepts_the_ends_of_the_crp_ranges():
    cfg = ClusteringConfig.from_params(crp_discount=0, crp_n_refine=0)
    assert (cfg.crp_discount, cfg.crp_n_refine) == (0, 0)
    assert ClusteringConfig.from_params(crp_discount=0.99).crp_discount == 0.99


def test_config_names_the_allowed_data_sets():
    with pytest.raises(
        ConfigError,
        match="allowed: a list of at least 1 item\\(s\\), each one of 'iris', 'wine', "
        "'breast_cancer', 'digits', 'blobs'",
    ):
        ClusteringConfig.from_params(datasets=["mnist"])
