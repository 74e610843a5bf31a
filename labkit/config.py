"""One declarative way to validate: notebook configurations, model recipes, estimator parameters and arguments.

*Constraints* (scikit-learn's ``sklearn.utils._param_validation`` is the model: ``Interval(Integral, 1, None,
closed="left")``, ``StrOptions``, ``validate_params``). A :class:`Check` is a test and the words naming what it
allows; :class:`Interval` (a number between two ends, each open or closed), :func:`one_of` and :func:`tuple_of` build
the common ones, and the named constants below are the ones the package uses. A refused value reads
``"<where>: bad value for '<name>': <value>; allowed: <what>"`` (:class:`ConfigError`).

*Three uses of one constraint*:

- a field of a frozen dataclass, ``n_seeds: int = param(100, positive_int)`` on a :class:`Params` subclass, checked
  when the object is made;
- the arguments of a function, ``@validate_params(n_steps=positive_int, tol=non_negative_real)``, checked at each
  call;
- any values, ``check_params("ClAMMemory", {"beta": positive_float}, beta=beta)``, e.g. an estimator's declared
  ``_parameter_constraints`` at ``fit`` (:func:`check_estimator_params`), as scikit-learn checks its own.

*Notebook configurations.* A notebook's parameters cell holds literals only (``scale``, ``seed`` and a ``params``
dict of overrides). The notebook hands them to a subclass of :class:`NotebookConfig`, which starts from the preset of
the chosen scale, applies the overrides and checks every value *before* any computation. Papermill only warns about
unknown parameters; here an unknown key or a bad value raises :class:`ConfigError` naming the key and what is
allowed. A field whose default is itself a :class:`Params` (a model recipe) is *nested*: presets and overrides give a
dict of the fields they change, ``params = {"recipe": {"epochs": 5}}``, merged over the default recipe.

Scales: ``smoke`` (tests, seconds), ``quick`` (a preview, minutes on 2 cores), ``full`` (the committed figures and
the default of ``make figures``; the whole set ≤ 2 h on 2 cores) and ``paper`` (the papers' sizes, for a GPU or a
cluster). A config whose ``quick`` preset already is its committed scale declares no ``full`` preset: ``full``
then means ``quick``'s values.

Declaring a config::

    @dataclass(frozen=True)
    class MyConfig(NotebookConfig):
        n_seeds: int = param(100, positive_int)       # runs averaged per point
        SCALES = {"smoke": {"n_seeds": 5}, "quick": {}, "paper": {"n_seeds": 1000}}
"""

import dataclasses
import difflib
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "SCALES",
    "ConfigError",
    "Check",
    "Interval",
    "one_of",
    "tuple_of",
    "optional",
    "positive_int",
    "non_negative_int",
    "positive_float",
    "non_negative_real",
    "fraction",
    "unit_interval",
    "boolean",
    "string",
    "param",
    "check_params",
    "validate_params",
    "check_estimator_params",
    "Params",
    "NotebookConfig",
]

SCALES = ("smoke", "quick", "full", "paper")


class ConfigError(ValueError, TypeError):
    """A parameter is unknown or has a value outside what is allowed (a ValueError and, for a value of the wrong
    type, a TypeError too, as scikit-learn's ``InvalidParameterError``)."""

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of the traceback: the message names the parameter and its allowed values,
        so the frames of the checks behind it would only hide it."""
        return [f"{type(self).__name__}: {self}"]


class Check:
    """A constraint: ``test(value) -> bool`` and ``allowed``, the words naming what passes (used in messages)."""

    def __init__(self, test: Callable[[Any], bool], allowed: str):
        self.test, self.allowed = test, allowed

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.allowed}>"

    def check(self, name: str, value: Any, where: str = "") -> Any:
        """``value`` when it passes; otherwise :class:`ConfigError` naming ``where``, ``name`` and what is allowed."""
        if not self.test(value):
            raise ConfigError(
                f"{where + ': ' if where else ''}bad value for {name!r}: {value!r}; allowed: {self.allowed}"
            )
        return value


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


_ENDS = {"neither": "()", "left": "[)", "right": "(]", "both": "[]"}


class Interval(Check):
    """An ``int`` (any integer, not a bool) or ``float`` (any real number: int, float, numpy scalars; not a bool) in
    the interval from ``low`` to ``high`` (``None``: unbounded on that side); ``closed`` names the ends that belong to
    it: ``"neither"``, ``"left"``, ``"right"`` or ``"both"`` (scikit-learn's ``Interval`` convention). NaN never
    passes a bounded interval."""

    def __init__(self, kind: type, low: float | None, high: float | None, *, closed: str = "neither"):
        if kind not in (int, float):
            raise ValueError(f"Interval: kind must be int or float, got {kind!r}")
        if closed not in _ENDS:
            raise ValueError(f"Interval: closed must be one of {', '.join(map(repr, _ENDS))}, got {closed!r}")
        self.kind, self.low, self.high, self.closed = kind, low, high, closed
        left, right = closed in ("left", "both"), closed in ("right", "both")
        is_kind = _is_int if kind is int else _is_real

        def test(v: Any) -> bool:
            return (
                is_kind(v)
                and (low is None or (low <= v if left else low < v))
                and (high is None or (v <= high if right else v < high))
            )

        super().__init__(test, self._words(left, right))

    def _words(self, left: bool, right: bool) -> str:
        noun = "an integer" if self.kind is int else "a number"
        low, high = self.low, self.high
        if low is None and high is None:
            return noun
        if high is None:
            return f"{noun} {'>=' if left else '>'} {low:g}"
        if low is None:
            return f"{noun} {'<=' if right else '<'} {high:g}"
        opening, ending = _ENDS[self.closed]
        return f"{noun} in {opening}{low:g}, {high:g}{ending}"


def one_of(*choices: Any) -> Check:
    """One of ``choices`` (compared with ``==``)."""
    return Check(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


def tuple_of(item: Check, *, min_len: int = 1) -> Check:
    """A tuple (or list, converted in a :class:`Params`) of at least ``min_len`` items, each passing ``item``."""
    return Check(
        lambda v: isinstance(v, (tuple, list)) and len(v) >= min_len and all(item.test(x) for x in v),
        f"a list of at least {min_len} item(s), each {item.allowed}",
    )


def optional(check: Check) -> Check:
    """``None`` or a value passing ``check``."""
    return Check(lambda v: v is None or check.test(v), f"None or {check.allowed}")


positive_int = Interval(int, 1, None, closed="left")
non_negative_int = Interval(int, 0, None, closed="left")
positive_float = Interval(float, 0, None)
#: [0, ∞) without ∞: a tolerance or regulariser that may be switched off
non_negative_real = Interval(float, 0, math.inf, closed="left")
#: (0, 1): a share that is neither none nor all
fraction = Interval(float, 0, 1)
#: (0, 1]: a step size or mixing weight that may go all the way
unit_interval = Interval(float, 0, 1, closed="right")
boolean = Check(lambda v: isinstance(v, bool), "True or False")
string = Check(lambda v: isinstance(v, str), "a string")


def param(default: Any, check: Check | None = None) -> Any:
    """A :class:`Params` field with a default and the constraint its value must pass. A :class:`Params` default
    needs no constraint: it is a nested recipe, which checks itself."""
    return dataclasses.field(default=default, metadata={"check": check})


def check_params(where: str, constraints: Mapping[str, Check], /, **values: Any) -> None:
    """Check each ``name=value`` against ``constraints[name]``, in order; the first refused raises
    :class:`ConfigError` naming ``where`` and ``name``. A name without a constraint is a programming error
    (KeyError)."""
    for name, value in values.items():
        constraints[name].check(name, value, where)


def check_estimator_params(estimator: Any) -> None:
    """Check every parameter declared in ``type(estimator)._parameter_constraints`` ({name: Check}), as
    scikit-learn checks its estimators' ``_parameter_constraints`` at ``fit`` (``__init__`` only stores)."""
    constraints = type(estimator)._parameter_constraints
    check_params(type(estimator).__name__, constraints, **{n: getattr(estimator, n) for n in constraints})


def validate_params(**constraints: Check) -> Callable:
    """Decorator: check the named arguments of every call against their constraints (scikit-learn's
    ``validate_params``); the message names the function."""

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)
        unknown = set(constraints) - set(signature.parameters)
        if unknown:
            raise TypeError(f"validate_params: {func.__qualname__} has no argument(s) {sorted(unknown)}")

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            check_params(func.__name__, constraints, **{n: bound.arguments[n] for n in constraints})
            return func(*args, **kwargs)

        return wrapper

    return decorate


@dataclass(frozen=True)
class Params:
    """Frozen parameters checked at construction: each field declared with :func:`param` must pass its constraint;
    lists become tuples (the object stays hashable); a field whose default is a :class:`Params` is nested and may be
    given as a dict of the fields it changes."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = tuple(value)
            if isinstance(f.default, Params) and isinstance(value, Mapping):
                value = f.default.replace(**value)
            object.__setattr__(self, f.name, value)
            check = f.metadata.get("check")
            if check is not None:
                check.check(f.name, value, type(self).__name__)
            elif isinstance(f.default, Params) and not isinstance(value, type(f.default)):
                raise ConfigError(
                    f"{type(self).__name__}: bad value for {f.name!r}: {value!r}; allowed: a "
                    f"{type(f.default).__name__} or a dict of its fields"
                )
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override and raise :class:`ConfigError`."""

    @classmethod
    def _known(cls, keys) -> None:
        names = [f.name for f in dataclasses.fields(cls)]
        for key in keys:
            if key not in names:
                hint = difflib.get_close_matches(key, names, n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ConfigError(f"{cls.__name__}: unknown parameter {key!r}{suggestion}; allowed: {', '.join(names)}")

    def replace(self, **changes: Any) -> "Params":
        """A copy with ``changes`` applied (unknown names refused, values checked)."""
        type(self)._known(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NotebookConfig(Params):
    """Base of every notebook's configuration: a scale preset plus validated overrides."""

    scale: str = param("full", one_of(*SCALES))  # smoke | quick | full | paper (see the module docstring)
    seed: int = param(0, non_negative_int)  # the root of every random stream of the notebook

    SCALES: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {}, "quick": {}, "paper": {}}

    @classmethod
    def from_params(cls, **params: Any) -> "NotebookConfig":
        """Build the config of ``params["scale"]`` (default ``full``) with ``params`` applied on top; a nested field's
        dicts (preset, then override) are merged over its default."""
        cls._known(params)
        scale = params.get("scale", "full")
        if scale not in SCALES:
            raise ConfigError(f"{cls.__name__}: bad value for 'scale': {scale!r}; allowed: {', '.join(SCALES)}")
        preset = cls.SCALES.get(scale, cls.SCALES["quick"]) if scale == "full" else cls.SCALES[scale]
        values = {**preset, **params}
        for f in dataclasses.fields(cls):
            if isinstance(f.default, Params) and isinstance(params.get(f.name), Mapping):
                values[f.name] = {**preset.get(f.name, {}), **params[f.name]}
        return cls(**values)
