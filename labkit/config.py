"""Validated, frozen notebook configurations.

A notebook's parameters cell holds literals only (``scale``, ``seed`` and a ``params`` dict of overrides).
The notebook hands them to a subclass of :class:`NotebookConfig`, which starts from the preset of the
chosen scale, applies the overrides and checks every value *before* any computation. Papermill only warns
about unknown parameters; here an unknown key or a bad value raises :class:`ConfigError` naming the key and
what is allowed.

Scales: ``smoke`` (tests, seconds), ``quick`` (a preview, minutes on 2 cores), ``full`` (the committed figures and
the default of ``make figures``; the whole set ≤ 2 h on 2 cores) and ``paper`` (the papers' sizes, for a GPU or a
cluster). A config whose ``quick`` preset already is its committed scale declares no ``full`` preset: ``full``
then means ``quick``'s values.

Declaring a field::

    @dataclass(frozen=True)
    class MyConfig(NotebookConfig):
        n_seeds: int = param(100, positive_int)
        SCALES = {"smoke": {"n_seeds": 5}, "quick": {}, "paper": {"n_seeds": 1000}}
"""

import dataclasses
import difflib
import numbers
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

__all__ = [
    "SCALES", "ConfigError", "Check", "NotebookConfig", "param",
    "positive_int", "non_negative_int", "positive_float", "fraction", "one_of", "tuple_of",
]

SCALES = ("smoke", "quick", "full", "paper")


class ConfigError(ValueError):
    """A notebook parameter is unknown or has a value outside what is allowed."""


class Check(NamedTuple):
    """A value test and the words that describe what it allows (used in error messages)."""

    test: Callable[[Any], bool]
    allowed: str


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


positive_int = Check(lambda v: _is_int(v) and v >= 1, "an integer >= 1")
non_negative_int = Check(lambda v: _is_int(v) and v >= 0, "an integer >= 0")
positive_float = Check(lambda v: _is_real(v) and v > 0, "a number > 0")
fraction = Check(lambda v: _is_real(v) and 0 < v < 1, "a number strictly between 0 and 1")


def one_of(*choices: Any) -> Check:
    return Check(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


def tuple_of(item: Check, *, min_len: int = 1) -> Check:
    """A non-empty tuple (or list, converted) whose items all pass ``item``."""
    return Check(
        lambda v: isinstance(v, (tuple, list)) and len(v) >= min_len and all(item.test(x) for x in v),
        f"a list of at least {min_len} item(s), each {item.allowed}",
    )


def param(default: Any, check: Check) -> Any:
    """A config field with a default and the check its value must pass."""
    return dataclasses.field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class NotebookConfig:
    """Base of every notebook's configuration: a scale preset plus validated overrides."""

    scale: str = param("full", one_of(*SCALES))
    seed: int = param(0, non_negative_int)

    SCALES: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {}, "quick": {}, "paper": {}}

    @classmethod
    def from_params(cls, **params: Any) -> "NotebookConfig":
        """Build the config of ``params["scale"]`` (default ``full``) with ``params`` applied on top."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in params:
            if key not in names:
                hint = difflib.get_close_matches(key, names, n=1)
                raise ConfigError(
                    f"{cls.__name__}: unknown parameter {key!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f"; allowed: {', '.join(names)}"
                )
        scale = params.get("scale", "full")
        if scale not in SCALES:
            raise ConfigError(f"{cls.__name__}: bad value for 'scale': {scale!r}; allowed: {', '.join(SCALES)}")
        preset = cls.SCALES.get(scale, cls.SCALES["quick"]) if scale == "full" else cls.SCALES[scale]
        return cls(**{**preset, **params})

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # tuples keep the frozen config hashable
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            check = f.metadata.get("check")
            if check is not None and not check.test(value):
                raise ConfigError(
                    f"{type(self).__name__}: bad value for {f.name!r}: {value!r}; allowed: {check.allowed}"
                )
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override and raise :class:`ConfigError`."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
