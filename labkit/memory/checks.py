"""One way to validate in the memory package: :class:`labkit.config.Check` for arguments and estimator parameters too.

A notebook parameter is judged by a Check of :mod:`labkit.config` (``positive_int``, ``positive_float``,
``one_of``, ...). The memory models' arguments and their scikit-learn-style estimators' parameters are judged by the
same Checks, through :func:`require` (one argument) and :func:`check_params` (every entry of an estimator's
declarative ``_parameter_checks``, at ``fit``, as scikit-learn checks its ``_parameter_constraints``), and refused
with the config's message format: ``<where>: bad value for '<name>': <value>; allowed: <what>``.

:func:`interval` is the one local helper: config.py has no interval with a closed end yet ((0, 1], [0, 1),
[0, ∞)); when it gains declarative intervals, :func:`interval` gives way to them.
"""

import numbers

from labkit.config import Check

__all__ = ["interval", "unit_interval", "non_negative_real", "require", "check_params"]

_ENDS = {"neither": ("(", ")"), "left": ("[", ")"), "right": ("(", "]"), "both": ("[", "]")}


def interval(low: float, high: float, *, closed: str = "neither") -> Check:
    """A real number (never a bool) between ``low`` and ``high``; ``closed`` names the ends that belong to it:
    ``"neither"``, ``"left"``, ``"right"`` or ``"both"`` (scikit-learn's ``Interval`` convention)."""
    if closed not in _ENDS:
        raise ValueError(f"closed must be one of {', '.join(map(repr, _ENDS))}, got {closed!r}")
    left, right = closed in ("left", "both"), closed in ("right", "both")

    def test(v) -> bool:
        return (isinstance(v, numbers.Real) and not isinstance(v, bool)
                and (low <= v if left else low < v) and (v <= high if right else v < high))

    opening, ending = _ENDS[closed]
    return Check(test, f"a number in {opening}{low:g}, {high:g}{ending}")


#: (0, 1]: a step size or mixing weight that may go all the way
unit_interval = interval(0, 1, closed="right")
#: [0, ∞): a tolerance or regulariser that may be switched off
non_negative_real = interval(0, float("inf"), closed="left")


def require(name: str, value, check: Check, where: str = ""):
    """``value`` when it passes ``check``; otherwise a ValueError naming ``where``, ``name`` and what is allowed."""
    if not check.test(value):
        raise ValueError(f"{where + ': ' if where else ''}bad value for {name!r}: {value!r}; allowed: {check.allowed}")
    return value


def check_params(estimator) -> None:
    """Check every parameter named in ``type(estimator)._parameter_checks`` ({name: Check}) against its Check."""
    for name, check in type(estimator)._parameter_checks.items():
        require(name, getattr(estimator, name), check, type(estimator).__name__)
