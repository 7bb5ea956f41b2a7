"""Tunable parameters: what a component declares (:class:`Param`) and what a space file gives (:class:`Range`).

A value in a space file is one of

* a scalar — fixed, never shown to the sampler: ``epochs: 20``
* a list — a categorical choice: ``heads: [1, 2, 4]``
* a mapping ``{low, high, log, step}`` — an int or float range: ``lr: {low: 1.0e-4, high: 3.0e-3, log: true}``

:meth:`Range.parse` checks a value against its :class:`Param` declaration and raises
:class:`~iasf_search.errors.SpaceError` naming the key path; :meth:`Range.suggest` samples it
through Optuna's define-by-run API.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from iasf_search.errors import SpaceError, allowed, did_you_mean

Scalar = bool | int | float | str | None


@dataclass(frozen=True)
class Param:
    """Declaration of one parameter of a component.

    :param default: the range used when the space file does not mention the parameter (scalar,
        list or ``{low, high, ...}`` mapping, in space-file syntax).
    :param kind: ``int``, ``float``, ``str`` or ``bool``.
    :param choices: for ``str`` parameters, every value the component accepts.
    :param low: smallest value accepted (numbers only).
    :param high: largest value accepted (numbers only).
    :param help: one line for the space reference, docs/space.md (generated from these declarations by
        scripts/generate_docs.py).
    """

    default: Any
    kind: type = int
    choices: tuple[Scalar, ...] | None = None
    low: float | None = None
    high: float | None = None
    help: str = ""
    nullable: bool = False
    rule: Callable[[Any], str | None] | None = None
    """Extra check of one value: returns what is wrong (e.g. ``"must be odd"``) or None."""

    def check(self, value: Any, file: str, key: str) -> Scalar:
        """Return ``value`` if it is a valid single value for this parameter, else raise SpaceError."""
        if value is None and self.nullable:
            return None
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            hint = ""
            if self.kind is float and isinstance(value, str) and _is_number(value):
                hint = f"; YAML reads {value} as a string: write the number with a dot (1.0e-3, not 1e-3)"
            raise SpaceError(file, key, f"expected {self.kind.__name__}, got {value!r}{hint}")
        if self.kind is float and not math.isfinite(value):
            raise SpaceError(file, key, f"expected a finite number, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise SpaceError(file, key, f"{value!r} is not accepted{did_you_mean(value, self.choices)}; {allowed(self.choices)}")
        if self.low is not None and value < self.low:
            raise SpaceError(file, key, f"{value!r} is below the minimum {self.low}")
        if self.high is not None and value > self.high:
            raise SpaceError(file, key, f"{value!r} is above the maximum {self.high}")
        problem = self.rule(value) if self.rule is not None else None
        if problem:
            raise SpaceError(file, key, f"{value!r} {problem}")
        return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_RANGE_KEYS = ("low", "high", "log", "step")


@dataclass(frozen=True)
class Range:
    """A validated range: ``fixed`` value, categorical ``choices``, or numeric ``low..high``."""

    fixed: Scalar = None
    choices: tuple[Scalar, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    is_int: bool = False

    @classmethod
    def parse(cls, value: Any, param: Param, file: str, key: str) -> Range:
        """Validate a space-file ``value`` for ``param`` at ``key``; raise SpaceError if it is wrong."""
        if isinstance(value, list):
            if not value:
                raise SpaceError(file, key, "the list of choices is empty; give at least one value")
            checked = tuple(param.check(v, file, f"{key}[{i}]") for i, v in enumerate(value))
            if len(set(map(repr, checked))) != len(checked):
                raise SpaceError(file, key, f"the choices {list(checked)!r} repeat a value; list each once")
            return cls(fixed=checked[0]) if len(checked) == 1 else cls(choices=checked)
        if isinstance(value, dict):
            return cls._parse_interval(value, param, file, key)
        return cls(fixed=param.check(value, file, key))

    @classmethod
    def _parse_interval(cls, value: dict, param: Param, file: str, key: str) -> Range:
        if param.kind not in (int, float):
            kind = param.kind.__name__
            raise SpaceError(file, key, f"a {{low, high}} range needs a number parameter, this one is {kind}; give a list of choices")
        for k in value:
            if k not in _RANGE_KEYS:
                raise SpaceError(file, f"{key}.{k}", f"unknown range key{did_you_mean(k, _RANGE_KEYS)}; {allowed(_RANGE_KEYS)}")
        for k in ("low", "high"):
            if k not in value:
                raise SpaceError(file, key, f"a range needs both 'low' and 'high' (missing '{k}')")
        low = param.check(value["low"], file, f"{key}.low")
        high = param.check(value["high"], file, f"{key}.high")
        if low > high:
            raise SpaceError(file, key, f"low <= high must hold, but got low={low}, high={high}")
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise SpaceError(file, f"{key}.log", f"expected true or false, got {log!r}")
        step = value.get("step")
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
                raise SpaceError(file, f"{key}.step", f"expected a positive number, got {step!r}")
            if param.kind is int and not isinstance(step, int):
                raise SpaceError(file, f"{key}.step", f"an integer parameter needs an integer step, got {step!r}")
            if log:
                raise SpaceError(file, key, "'step' and 'log: true' cannot be combined; drop one")
        if log and low <= 0:
            raise SpaceError(file, f"{key}.low", f"a log range needs low > 0, got {low}")
        rng = cls(low=low, high=high, log=log, step=step, is_int=param.kind is int)
        if param.rule is not None:  # the sampler may pick any value inside the range, not only its ends
            for v in rng.values() or ():
                problem = param.rule(v)
                if problem:
                    raise SpaceError(file, key, f"{v!r} {problem}; the range {low}..{high} includes it: "
                                                f"give a list of choices, or a step that skips it")
        return rng

    @property
    def is_fixed(self) -> bool:
        return self.choices is None and self.low is None

    def suggest(self, trial: optuna.Trial, name: str) -> Scalar:
        """Sample this range as Optuna parameter ``name`` (a fixed value is returned as is)."""
        if self.is_fixed:
            return self.fixed
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        if self.is_int:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)

    def values(self) -> tuple[Scalar, ...] | None:
        """Every value this range can take, or None for a float interval or a very large int one."""
        if self.is_fixed:
            return (self.fixed,)
        if self.choices is not None:
            return self.choices
        if self.is_int and self.high - self.low <= 10_000:
            return tuple(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        return None

    def to_yaml(self) -> Any:
        """The space-file form of this range (for the resolved space saved with a study)."""
        if self.is_fixed:
            return self.fixed
        if self.choices is not None:
            return list(self.choices)
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def parse_params(given: Any, declared: dict[str, Param], file: str, key: str) -> dict[str, Range]:
    """Validate a mapping of parameter ranges against ``declared``; fill the defaults of the rest."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise SpaceError(file, key, f"expected a mapping of parameters, got {given!r}")
    for name in given:
        if name not in declared:
            options = allowed(declared) if declared else "it takes no parameters"
            raise SpaceError(file, f"{key}.{name}", f"unknown parameter{did_you_mean(name, declared)}; {options}")
    return {
        name: Range.parse(given.get(name, param.default), param, file, f"{key}.{name}")
        for name, param in declared.items()
    }
