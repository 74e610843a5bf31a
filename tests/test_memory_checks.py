"""Argument checks of the memory package (labkit.memory.checks): intervals, one message format, declared parameters."""

import re
from typing import ClassVar

import numpy as np
import pytest

from labkit.config import positive_int
from labkit.memory.checks import check_params, interval, non_negative_real, require, unit_interval


@pytest.mark.parametrize("closed, inside, outside, words", [
    ("neither", [0.5, 1e-12], [0, 1, -1], "a number in (0, 1)"),
    ("left", [0, 0.0, 0.999], [1, -1e-12], "a number in [0, 1)"),
    ("right", [1, 1.0, 1e-9], [0, 1.5], "a number in (0, 1]"),
    ("both", [0, 1, 0.5], [-0.1, 1.1], "a number in [0, 1]"),
])
def test_interval_ends(closed, inside, outside, words):
    check = interval(0, 1, closed=closed)
    assert check.allowed == words
    assert all(check.test(v) for v in inside)
    assert not any(check.test(v) for v in outside)


@pytest.mark.parametrize("value", [True, False, "0.5", None, float("nan"), [0.5], np.array([0.5])])
def test_interval_refuses_booleans_and_non_numbers(value):
    assert not interval(-1, 2, closed="both").test(value)


def test_interval_takes_numpy_scalars_and_unbounded_ends():
    assert unit_interval.test(np.float32(0.25)) and unit_interval.test(np.int64(1))
    assert non_negative_real.allowed == "a number in [0, inf)"
    assert non_negative_real.test(0) and non_negative_real.test(1e300) and not non_negative_real.test(float("inf"))


def test_interval_refuses_an_unknown_closed_word():
    with pytest.raises(ValueError, match="closed must be one of 'neither', 'left', 'right', 'both', got 'open'"):
        interval(0, 1, closed="open")


def test_require_returns_the_value_or_names_where_what_and_what_is_allowed():
    assert require("n", 3, positive_int) == 3
    with pytest.raises(ValueError, match=re.escape("f: bad value for 'n': True; allowed: an integer >= 1")):
        require("n", True, positive_int, "f")
    with pytest.raises(ValueError, match=re.escape("bad value for 'n': 0; allowed: an integer >= 1")):
        require("n", 0, positive_int)


class _Estimator:
    _parameter_checks: ClassVar[dict] = {"k": positive_int, "rate": unit_interval}

    def __init__(self, k=1, rate=0.5):
        self.k, self.rate = k, rate


def test_check_params_checks_every_declared_parameter_in_order():
    check_params(_Estimator())
    with pytest.raises(ValueError, match=re.escape("_Estimator: bad value for 'k': 0; allowed: an integer >= 1")):
        check_params(_Estimator(k=0, rate=2.0))
    with pytest.raises(ValueError, match=re.escape("_Estimator: bad value for 'rate': 2.0; allowed: a number in "
                                                   "(0, 1]")):
        check_params(_Estimator(rate=2.0))
