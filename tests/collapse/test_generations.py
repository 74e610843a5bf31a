"""The shared generation loop and its executor seam, on a toy family (a 1-D Gaussian fit by MLE)."""

from dataclasses import dataclass

import numpy as np
import pytest

from labkit.collapse import generations as g
from labkit.collapse.charlm import CharLMCollapseConfig
from labkit.collapse.config import GenerationsConfig
from labkit.collapse.diffusion import DiffusionCollapseConfig
from labkit.collapse.vae import VAECollapseConfig
from labkit.config import ConfigError


def _fit(train, seed):
    return float(train.mean()), float(train.std())


def _sample(model, like, seed):
    mu, sd = model
    return np.random.default_rng(seed).normal(mu, sd, len(like))


def _evaluate(model, held_out):
    mu, sd = model
    return {"loss": float(np.mean(0.5 * ((held_out - mu) / sd) ** 2 + np.log(sd) + 0.5 * np.log(2 * np.pi))), "sd": sd}


@dataclass(frozen=True)
class GaussianExperiment:
    n: int = 20

    def build(self):
        rng = np.random.default_rng(0)
        return (
            g.Family(_fit, _sample, _evaluate, preview=lambda d: d[:3].tolist()),
            rng.normal(0, 1, self.n),
            rng.normal(0, 1, 2000),
        )


def test_pool_bookkeeping_per_regime():
    family, train, held = GaussianExperiment().build()
    sizes = {
        r: [rec["train_size"] for rec in g.run_generations(family, train, held, r, 5, seed=1)["generations"]]
        for r in g.REGIMES
    }
    assert sizes == {"replace": [20] * 5, "accumulate": [20, 40, 60, 80, 100], "accumulate_subsample": [20] * 5}


def test_same_seed_same_result_and_first_generation_shared():
    family, train, held = GaussianExperiment().build()
    a = g.run_generations(family, train, held, "replace", 4, seed=3)
    assert a == g.run_generations(family, train, held, "replace", 4, seed=3)
    b = g.run_generations(family, train, held, "accumulate", 4, seed=3)
    assert a["generations"][0] == b["generations"][0]  # generation 1 is the same real-data model
    assert a["generations"][1] != b["generations"][1]


def test_replace_collapses_and_accumulate_does_not_on_the_toy_family():
    results = [
        g.run_generations(*GaussianExperiment().build(), r, 30, seed=s)
        for r in ("replace", "accumulate")
        for s in range(4)
    ]
    table = g.metric_table(results, "sd")
    assert table["replace"].shape == (4, 30)
    assert table["replace"][:, -1].mean() < 0.6 * table["replace"][:, 0].mean()  # variance collapse
    claims = g.collapse_claims(g.metric_table(results), band=0.05)
    assert claims["replace"]["passed"] and claims["accumulate"]["passed"]


def test_bad_arguments():
    family, train, held = GaussianExperiment().build()
    with pytest.raises(ValueError, match="allowed: replace, accumulate, accumulate_subsample"):
        g.run_generations(family, train, held, "keep", 2, 0)
    with pytest.raises(ValueError, match="allowed: replace"):
        g.run_all(GaussianExperiment(), ["keep"], [0], 2)
    bad = g.Family(_fit, lambda m, like, s: np.zeros(3), _evaluate)
    with pytest.raises(ValueError, match="returned 3 items; the real set has 20"):
        g.run_generations(bad, train, held, "replace", 2, 0)


def test_local_process_pool_matches_the_serial_loop():
    results = g.run_all(GaussianExperiment(), ["replace", "accumulate"], [0, 1], 3, max_workers=2)
    assert [(r["regime"], r["seed"]) for r in results] == [
        ("replace", 0),
        ("replace", 1),
        ("accumulate", 0),
        ("accumulate", 1),
    ]
    assert results[1] == g.run_generations(*GaussianExperiment().build(), "replace", 3, seed=1)


def test_dask_local_cluster_gives_the_same_results():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        results = g.run_all(
            GaussianExperiment(), ["accumulate_subsample"], [0, 1], 3, scheduler=cluster.scheduler_address
        )
    assert results == g.run_all(GaussianExperiment(), ["accumulate_subsample"], [0, 1], 3, max_workers=1)


@pytest.mark.parametrize("config", [CharLMCollapseConfig, VAECollapseConfig, DiffusionCollapseConfig])
def test_generation_notebooks_share_the_loop_config(config):
    assert issubclass(config, GenerationsConfig)
    assert len(config.from_params(scale="quick").seeds) >= 3
    assert config.from_params(scale="smoke", seeds=[4, 5]).seeds == (4, 5)
    bad = [
        ({"seeds": (0, 1)}, "'seeds'.*at least 3"),
        ({"seeds": (0, 0, 1)}, "'seeds'.*distinct"),
        ({"regimes": ("replace", "keep")}, "'regimes'"),
        ({"regimes": ("replace", "accumulate_subsample")}, "including 'replace' and 'accumulate'"),
        ({"band": -0.1}, "'band'"),
        ({"scheduler": "tcp://host:8786"}, "unknown parameter 'scheduler'"),
        ({"workers": 2}, "unknown parameter 'workers'"),
    ]
    for params, message in bad:
        with pytest.raises(ConfigError, match=message):
            config.from_params(scale="quick", **params)


def test_shared_first_generation_and_small_last_sample():
    family, train, held = GaussianExperiment().build()
    first = g.first_generation(family, train, held, 3, seed=2)
    assert g.run_generations(family, train, held, "accumulate", 3, seed=2, first=first) == g.run_generations(
        family, train, held, "accumulate", 3, seed=2
    )
    sizes = []
    small = g.Family(
        _fit, lambda m, like, s: sizes.append(len(like)) or _sample(m, like, s), _evaluate, last_sample_size=5
    )
    g.run_generations(small, train, held, "replace", 3, seed=0)
    assert sizes == [20, 20, 5]  # only the last synthetic set, which trains nothing, is small
