import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from labkit.collapse.config import LinearCollapseConfig
from labkit.config import (
    ConfigError,
    Interval,
    NotebookConfig,
    Params,
    boolean,
    check_estimator_params,
    check_params,
    non_negative_real,
    optional,
    param,
    positive_float,
    positive_int,
    unit_interval,
    validate_params,
)


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


def test_a_notebook_shows_a_bad_parameter_in_one_line(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell(
        "from labkit.collapse.config import LinearCollapseConfig\nLinearCollapseConfig.from_params(n_seeds=0)"
    )
    shown = capsys.readouterr().out.strip()
    assert shown.startswith("ConfigError: ") and "'n_seeds'" in shown and "allowed:" in shown
    assert len(shown.splitlines()) == 1 and "Traceback" not in shown


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


# ------------------------------------------------------------------------------------------- constraints and their uses


@pytest.mark.parametrize(
    "closed, inside, outside, words",
    [
        ("neither", [0.5, 1e-12], [0, 1, -1], "a number in (0, 1)"),
        ("left", [0, 0.0, 0.999], [1, -1e-12], "a number in [0, 1)"),
        ("right", [1, 1.0, 1e-9], [0, 1.5], "a number in (0, 1]"),
        ("both", [0, 1, 0.5], [-0.1, 1.1], "a number in [0, 1]"),
    ],
)
def test_interval_ends(closed, inside, outside, words):
    check = Interval(float, 0, 1, closed=closed)
    assert check.allowed == words
    assert all(check.test(v) for v in inside)
    assert not any(check.test(v) for v in outside)


@pytest.mark.parametrize("value", [True, False, "0.5", None, float("nan"), [0.5], np.array([0.5])])
def test_interval_refuses_booleans_and_non_numbers(value):
    assert not Interval(float, -1, 2, closed="both").test(value)


def test_integer_intervals_and_one_sided_words():
    assert positive_int.allowed == "an integer >= 1" and positive_float.allowed == "a number > 0"
    assert Interval(int, None, 3, closed="right").allowed == "an integer <= 3"
    assert Interval(int, 2, 9, closed="both").test(np.int64(9)) and not Interval(int, 2, 9, closed="both").test(9.0)
    assert Interval(float, None, None).allowed == "a number" and Interval(float, None, None).test(np.float32(-1))


def test_named_constraints_take_numpy_scalars():
    assert unit_interval.test(np.float32(0.25)) and unit_interval.test(np.int64(1)) and not unit_interval.test(0)
    assert non_negative_real.test(0) and non_negative_real.test(1e300) and not non_negative_real.test(float("inf"))
    assert optional(positive_int).test(None) and not optional(positive_int).test(0)
    assert boolean.test(False) and not boolean.test(0)


def test_interval_refuses_an_unknown_closed_word_or_kind():
    with pytest.raises(ValueError, match="closed must be one of 'neither', 'left', 'right', 'both', got 'open'"):
        Interval(float, 0, 1, closed="open")
    with pytest.raises(ValueError, match="kind must be int or float"):
        Interval(complex, 0, 1)


def test_check_returns_the_value_or_names_where_what_and_what_is_allowed():
    assert positive_int.check("n", 3) == 3
    with pytest.raises(ConfigError, match=re.escape("f: bad value for 'n': True; allowed: an integer >= 1")):
        positive_int.check("n", True, "f")
    with pytest.raises(TypeError):  # a ConfigError is a TypeError too (a value of a wrong type)
        positive_int.check("n", "3")


def test_check_params_checks_each_value_in_order():
    constraints = {"k": positive_int, "rate": unit_interval}
    check_params("g", constraints, k=1, rate=0.5)
    with pytest.raises(ConfigError, match=re.escape("g: bad value for 'k': 0; allowed: an integer >= 1")):
        check_params("g", constraints, k=0, rate=2.0)
    with pytest.raises(KeyError):
        check_params("g", constraints, kk=1)


class _Estimator:
    _parameter_constraints: ClassVar[dict] = {"k": positive_int, "rate": unit_interval}

    def __init__(self, k=1, rate=0.5):
        self.k, self.rate = k, rate


def test_check_estimator_params_checks_every_declared_parameter():
    check_estimator_params(_Estimator())
    with pytest.raises(
        ConfigError, match=re.escape("_Estimator: bad value for 'rate': 2.0; allowed: a number in (0, 1]")
    ):
        check_estimator_params(_Estimator(rate=2.0))


def test_validate_params_checks_bound_arguments_defaults_included():
    @validate_params(n=positive_int, tol=non_negative_real)
    def f(x, n, tol=0.0):
        return x * n

    assert f(2, 3) == 6 and f(2, n=3, tol=1e-3) == 6
    with pytest.raises(ConfigError, match=re.escape("f: bad value for 'n': 0; allowed: an integer >= 1")):
        f(2, 0)
    with pytest.raises(ConfigError, match="'tol'"):
        f(2, 1, tol=-1.0)
    with pytest.raises(TypeError, match="no argument"):
        validate_params(m=positive_int)(f)


@dataclass(frozen=True)
class _Recipe(Params):
    width: int = param(8, positive_int)
    lr: float = param(1e-3, positive_float)


@dataclass(frozen=True)
class _WithRecipe(NotebookConfig):
    recipe: _Recipe = param(_Recipe())
    SCALES = {"smoke": {"recipe": {"width": 2}}, "quick": {}, "paper": {"recipe": {"width": 64, "lr": 1e-4}}}


def test_a_nested_recipe_merges_preset_and_override_dicts_over_its_default():
    assert _WithRecipe.from_params().recipe == _Recipe()
    assert _WithRecipe.from_params(scale="smoke").recipe == _Recipe(width=2)
    assert _WithRecipe.from_params(scale="paper", recipe={"lr": 0.5}).recipe == _Recipe(width=64, lr=0.5)
    assert _WithRecipe.from_params(recipe=_Recipe(width=3)).recipe.width == 3
    assert _WithRecipe.from_params(scale="smoke").to_dict()["recipe"] == {"width": 2, "lr": 1e-3}


def test_a_nested_recipe_refuses_unknown_fields_and_bad_values():
    with pytest.raises(ConfigError, match="_Recipe: unknown parameter 'widht' \\(did you mean 'width'\\?\\)"):
        _WithRecipe.from_params(recipe={"widht": 3})
    with pytest.raises(ConfigError, match="_Recipe: bad value for 'width': 0"):
        _WithRecipe.from_params(recipe={"width": 0})
    with pytest.raises(ConfigError, match="allowed: a _Recipe or a dict of its fields"):
        _WithRecipe(recipe=3)
