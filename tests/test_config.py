from dataclasses import dataclass

import pytest

from labkit.collapse.config import LinearCollapseConfig
from labkit.config import ConfigError, NotebookConfig, param, positive_int


@dataclass(frozen=True)
class Toy(NotebookConfig):
    n_seeds: int = param(100, positive_int)
    SCALES = {"smoke": {"n_seeds": 3}, "quick": {"n_seeds": 50}, "paper": {"n_seeds": 1000}}


@dataclass(frozen=True)
class ToyWithFull(Toy):
    SCALES = {**Toy.SCALES, "full": {"n_seeds": 200}}


def test_scale_presets_and_overrides():
    assert Toy.from_params(scale="smoke").n_seeds == 3
    assert Toy.from_params(scale="paper", n_seeds=7).n_seeds == 7


def test_full_is_the_default_and_means_quick_where_not_declared():
    assert Toy.from_params().scale == "full" and Toy.from_params().n_seeds == 50
    assert ToyWithFull.from_params().n_seeds == 200 and ToyWithFull.from_params(scale="quick").n_seeds == 50


def test_unknown_key_names_the_key_and_allowed_keys():
    with pytest.raises(ConfigError) as err:
        Toy.from_params(n_seed=5)
    msg = str(err.value)
    assert "'n_seed'" in msg and "did you mean 'n_seeds'" in msg and "allowed: scale, seed, n_seeds" in msg


@pytest.mark.parametrize("value", [0, -1, 2.5, "10", True])
def test_bad_value_names_the_key_and_what_is_allowed(value):
    with pytest.raises(ConfigError, match=r"'n_seeds'.*allowed: an integer >= 1"):
        Toy.from_params(n_seeds=value)


def test_bad_scale():
    with pytest.raises(ConfigError, match="allowed: smoke, quick, full, paper"):
        Toy.from_params(scale="huge")


def test_config_is_frozen_and_lists_become_tuples():
    cfg = LinearCollapseConfig.from_params(scale="smoke", d_values=[1, 2])
    assert cfg.d_values == (1, 2)
    with pytest.raises(AttributeError):
        cfg.n_seeds = 3
    hash(cfg)


def test_linear_config_cross_field_checks():
    with pytest.raises(ConfigError, match="grid_sigma2"):
        LinearCollapseConfig.from_params(grid_sigma2=3.0)
    with pytest.raises(ConfigError, match="ref_T > ref_d \\+ 1"):
        LinearCollapseConfig.from_params(ref_d=10, ref_T=11)
    with pytest.raises(ConfigError, match="d_values"):
        LinearCollapseConfig.from_params(d_values=())
