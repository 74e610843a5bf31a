"""Argument checks shared by the rig's modules: one test for "a number", one wording for a refused value.

A value of the wrong type raises TypeError naming the argument (:func:`as_real`, :func:`as_integer`). Every refused
value reads ``"<where>: bad value for '<name>': <value>; allowed: <allowed>"`` (a ValueError), so a caller
always learns which function refused which argument and what it would have accepted. Private to ``labkit.rig``
until ``labkit.config`` takes it over.
"""

import numbers
from typing import Any

__all__ = ["is_real", "is_integer", "as_real", "as_integer", "bad_value", "check_value"]


def is_real(value: Any) -> bool:
    """Any real number (int, float, numpy scalars), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """Any integer (int, numpy integers), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_real(name: str, value: Any) -> float:
    """``value`` as a float if it is a real number (int, float, numpy scalar; not bool), else TypeError."""
    if not is_real(value):
        raise TypeError(
            f"{name} must be a real number (int, float or a numpy scalar), got {type(value).__name__} {value!r}"
        )
    return float(value)


def as_integer(name: str, value: Any) -> int:
    """``value`` as an int if it is an integer (int, numpy integer; not bool), else TypeError."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def bad_value(where: str, name: str, value: Any, allowed: str) -> ValueError:
    """The error for argument ``name`` of ``where`` having ``value``; ``allowed`` says what it may be."""
    return ValueError(f"{where}: bad value for {name!r}: {value!r}; allowed: {allowed}")


def check_value(where: str, name: str, ok: bool, value: Any, allowed: str) -> None:
    """Raise :func:`bad_value` unless ``ok``."""
    if not ok:
        raise bad_value(where, name, value, allowed)
