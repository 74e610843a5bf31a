"""The VAE family of notebook 01c and its offline data (real 8×8 digits), the model, its sampler and metrics, the loop
wiring and the config. The online MNIST loader is tested in tests/data/test_download.py."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from labkit.collapse import generations, plots_vae, vae  # noqa: E402
from labkit.config import ConfigError  # noqa: E402
from labkit.data import images  # noqa: E402

TINY = vae.VAERecipe(hidden=16, latent=2, epochs=2, batch_size=64, lr=1e-3)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return images.digits()


# ---- data ---------------------------------------------------------------------------------------------------------


def test_digits_are_the_real_8x8_set_scaled_to_unit_interval(digits):
    x, y = digits
    assert x.shape == (1797, 64) and x.dtype == np.float32 and y.shape == (1797,)
    assert x.min() == 0 and x.max() == 1
    np.testing.assert_array_equal(x * images.DIGITS_LEVELS, np.round(x * images.DIGITS_LEVELS))
    assert sorted(np.unique(y)) == list(range(10))


def test_stratified_split_is_deterministic_disjoint_and_keeps_class_shares(digits):
    _, y = digits
    train, held = images.stratified_split(y, 0.2, seed=0)
    again = images.stratified_split(y, 0.2, seed=0)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(held, again[1])
    assert len(np.intersect1d(train, held)) == 0 and len(train) + len(held) == len(y)
    for c in range(10):
        assert (y[held] == c).sum() == round(0.2 * (y == c).sum())
    assert not np.array_equal(held, images.stratified_split(y, 0.2, seed=1)[1])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        images.stratified_split(y, 1.0, seed=0)


# ---- model, sampler, metrics --------------------------------------------------------------------------------------


def test_negative_elbo_shapes_and_parts():
    model = vae.VAE(64, 16, 3)
    x = torch.rand(5, 64).mul(16).round().div(16)
    out = vae.negative_elbo(model, x, 16, torch.randn(4, 5, 3))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"loss": (5,), "recon": (5,), "kl": (5,)}
    assert torch.all(out["kl"] >= 0) and torch.allclose(out["loss"], out["recon"] + out["kl"])


def test_binomial_likelihood_is_normalised_over_the_pixel_levels():
    model = vae.VAE(1, 8, 2)
    for p in model.encoder.parameters():  # q(z|x) = N(0, I) for every x: same z for all k
        torch.nn.init.zeros_(p)
    levels = 16
    k = torch.arange(levels + 1.0)[:, None]
    eps = torch.randn(1, 1, 2).expand(1, levels + 1, 2)
    with torch.no_grad():
        recon = vae.negative_elbo(model, k / levels, levels, eps)["recon"]
    assert math.isclose(float(torch.exp(-recon.double()).sum()), 1.0, rel_tol=1e-5)


def test_training_is_deterministic_and_lowers_held_out_loss(digits):
    x, _ = digits
    train, held = x[:300], x[1500:]
    a = vae.train_vae(train, 16, TINY, 3)
    b = vae.train_vae(train, 16, TINY, 3)
    c = vae.train_vae(train, 16, TINY, 4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.decoder[0].weight, c.decoder[0].weight)
    untrained = vae.train_vae(train, 16, TINY.replace(epochs=0), 3)
    longer = vae.train_vae(train, 16, TINY.replace(epochs=10), 3)
    losses = [vae.evaluate_vae(m, held, 16)["loss"] for m in (untrained, a, longer)]
    assert losses[0] > losses[1] > losses[2]
    assert vae.evaluate_vae(a, held, 16) == vae.evaluate_vae(a, held, 16)


def test_sampler_draws_counts_of_the_requested_size_deterministically(digits):
    model = vae.train_vae(digits[0][:200], 16, TINY, 0)
    s = vae.sample_images(model, 37, 16, seed=5)
    assert s.shape == (37, 64) and s.dtype == np.float32 and s.min() >= 0 and s.max() <= 1
    np.testing.assert_array_equal(s * 16, np.round(s * 16))
    np.testing.assert_array_equal(s, vae.sample_images(model, 37, 16, seed=5))
    assert not np.array_equal(s, vae.sample_images(model, 37, 16, seed=6))


def test_diversity_entropy_and_coverage():
    uniform = vae.diversity(np.repeat(np.arange(10), 7), coverage_share=0.05)
    assert math.isclose(uniform["class_entropy"], math.log(10)) and uniform["coverage"] == 1.0
    single = vae.diversity(np.full(50, 3), coverage_share=0.05)
    assert single == {"class_entropy": 0.0, "coverage": 0.1}
    assert vae.diversity(np.array([0] * 97 + [1] * 3), coverage_share=0.05)["coverage"] == 0.1


# ---- the loop wiring, claims and figures --------------------------------------------------------------------------


def test_experiment_runs_through_the_shared_loop():
    experiment = vae.VAEExperiment(vae.VAERecipe(hidden=16, latent=2, epochs=1))
    family, train, held = experiment.build()
    assert train.shape == (1438, 64) and held.shape == (359, 64)
    runs = [generations.run_generations(family, train, held, r, 2, seed=0) for r in ("replace", "accumulate")]
    record = runs[0]["generations"][1]
    assert set(record["metrics"]) == {"loss", "recon", "kl"} and record["preview"]["images"].shape == (16, 64)
    assert 0 <= record["preview"]["class_entropy"] <= math.log(10) + 1e-9
    assert 0 <= record["preview"]["confident_fraction"] <= 1
    assert generations.preview_table(runs, "coverage")["accumulate"].shape == (1, 2)
    first = [run["generations"][0] for run in runs]  # generation 1: the same real-data model
    assert first[0]["metrics"] == first[1]["metrics"]
    np.testing.assert_array_equal(first[0]["preview"]["images"], first[1]["preview"]["images"])
    reference = experiment.real_reference()
    assert reference["accuracy"] > 0.9 and reference["coverage"] == 1.0
    assert 0.5 < reference["confident_fraction"] <= 1


def test_confident_fraction():
    p = np.array([[0.95, 0.05], [0.9, 0.1], [0.6, 0.4], [0.05, 0.95]])
    assert vae.confident_fraction(p) == 0.75 and vae.confident_fraction(p, threshold=0.99) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        vae.confident_fraction(np.zeros((0, 10)))


def test_diversity_claims():
    ent = {"replace": np.array([[2.2, 1.9], [2.25, 1.8]]), "accumulate": np.array([[2.2, 2.15], [2.25, 2.2]])}
    out = vae.diversity_claims(ent, band=0.05)
    assert out["replace"]["passed"] and out["accumulate"]["passed"]
    ent["accumulate"] = np.array([[2.2, 1.9], [2.25, 2.0]])
    ent["replace"] = np.array([[2.2, 2.21], [2.25, 1.8]])
    out = vae.diversity_claims(ent, band=0.05)
    assert not out["replace"]["passed"] and not out["accumulate"]["passed"]


def test_figures_draw_from_loop_results():
    rng = np.random.default_rng(0)
    results = [
        {
            "regime": r,
            "seed": s,
            "generations": [
                {"preview": {"images": rng.random((16, 64)), "class_entropy": 2.0, "coverage": 1.0}} for _ in range(3)
            ],
        }
        for r in ("replace", "accumulate")
        for s in (0, 1)
    ]
    assert plots_vae.tile(rng.random((16, 64))).shape == (37, 37)
    fig = plots_vae.sample_grid_figure(results, 1, [1, 3], rng.random((16, 64)), "t")
    assert len(fig.axes) == 2 * 3
    ent = generations.preview_table(results, "class_entropy")
    fig = plots_vae.diversity_figure(
        ent, generations.preview_table(results, "coverage"), 2.3, "t", confident=ent, real_confident=0.9
    )
    assert len(fig.axes) == 3 and fig.axes[2].get_title() == "confidently recognised samples"
    with pytest.raises(ValueError, match="seeds present: \\[0, 1\\]"):
        plots_vae.sample_grid_figure(results, 7, [1], rng.random((16, 64)), "t")
    matplotlib.pyplot.close("all")


# ---- config -------------------------------------------------------------------------------------------------------


def test_config_scales_and_validation():
    quick = vae.VAECollapseConfig.from_params(scale="quick")
    assert len(quick.seeds) >= 3 and quick.regimes == generations.REGIMES and quick.band == 0.05
    assert quick.grid_generations() == [1, 3, 6, 8]
    smoke = vae.VAECollapseConfig.from_params(scale="smoke", seed=2)
    experiment = smoke.experiment()
    assert experiment.seed == 2 and experiment.recipe == smoke.recipe
    assert vae.VAECollapseConfig.from_params(scale="smoke", seeds=[4, 5]).seeds == (4, 5)
    assert vae.VAECollapseConfig.from_params(recipe={"epochs": 5}).recipe == vae.VAERecipe(
        hidden=512, latent=16, epochs=5, batch_size=64, lr=1e-3
    )  # over the full preset's recipe
    for bad, match in [
        ({"recipe": {"epoch": 3}}, "unknown parameter 'epoch' \\(did you mean 'epochs'\\?\\)"),
        ({"held_out_fraction": 1.5}, r"a number in \(0, 1\)"),
    ]:
        with pytest.raises(ConfigError, match=match):
            vae.VAECollapseConfig.from_params(scale="smoke", **bad)
