"""The typed definition params are read through: a param is a dataclass field whose metadata holds its check
and its default; its type, range, choices and the default come from there, and so do the known keys and
the "did you mean" hint. stages.lib.core.params declares the pipeline's sections with it, and each loss
(stages.lib.losses) its own params.

A check takes the param's dotted name and the value written and returns the value to use, or raises a
one-line UserError naming the param, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stages.lib.core.errors import UserError

PARAMS_FILE_NAME = "params.yaml"
Check = Callable[[str, Any], Any]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # no default: a missing key is an error


@dataclasses.dataclass(frozen=True)
class Spec:
    check: Check
    default: Any = REQUIRED  # the value when params.yaml does not set the key
    key: str | None = None  # the name in params.yaml, where it differs from the field's


def param(check: Check, *, if_absent: Any = REQUIRED, key: str | None = None, **field_args: Any) -> Any:
    """A dataclass field that is a param: ``if_absent`` is its value when params.yaml leaves it out (none:
    it must be there); ``field_args`` go to ``dataclasses.field`` (``default``: the record's own, for
    records built in code)."""
    return dataclasses.field(metadata={"param": Spec(check, if_absent, key)}, **field_args)


def specs(cls: type) -> dict[str, tuple[str, Spec]]:
    """The params of a dataclass: field name -> (key in params.yaml, spec)."""
    out = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("param")
        if spec is not None:
            out[f.name] = (spec.key or f.name, spec)
    return out


def dotted(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def read_value(node: Any, section: str, key: str, spec: Spec) -> Any:
    """One param of a section's mapping ``node``, checked (its default when the key is absent)."""
    name = dotted(section, key)
    if not isinstance(node, Mapping) or key not in node:
        if spec.default is REQUIRED:
            raise UserError(f"{name} is missing from {PARAMS_FILE_NAME}")
        return spec.default
    return spec.check(name, node[key])


def read(cls: type, node: Any, section: str, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Every param of ``cls`` (but the fields in ``skip``), checked in field order: field name -> value."""
    return {name: read_value(node, section, key, spec) for name, (key, spec) in specs(cls).items() if name not in skip}


def refuse_unknown(node: dict, section: str, known: tuple[str, ...]) -> None:
    """A key no param has is a typo that would be ignored: refuse it, with the closest known key."""
    for key in node:
        if key not in known:
            prefix = f"{section}." if section else ""
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {prefix}{close[0]}?" if close else f"known: {', '.join(known)}"
            raise UserError(f"{prefix}{key}: unknown param in {PARAMS_FILE_NAME}; {hint}")


# --------------------------------------------------------------------------
# Checks


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int | None = None, high: int | None = None) -> Check:
    def check(name: str, value: Any) -> int:
        if not _is_integer(value):
            raise UserError(f"{name} = {value!r}: must be an integer")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise UserError(f"{name} = {value!r}: must be an integer {bounds}")
        return value

    return check


def _finite(value: Any) -> bool:
    # Only floats can be nan or inf; an int too large for a float is a number (out of range, if anything).
    return _is_integer(value) or (isinstance(value, float) and math.isfinite(value))


def number(low: float, high: float, low_open: bool = False) -> Check:
    """A finite number in [low, high] ((low, high] with low_open), as a float."""

    def check(name: str, value: Any) -> float:
        if not _finite(value):
            raise UserError(f"{name} = {value!r}: must be a number")
        if value > high or value < low or (low_open and value == low):
            opening = "(" if low_open else "["
            raise UserError(f"{name} = {value!r}: must be a number in {opening}{low}, {high}]")
        return float(value)

    return check


def real(ok: Callable[[float], bool], allowed: str) -> Check:
    """A finite real number (NumPy's too) for which ``ok`` holds, as a float; ``allowed`` says which, e.g.
    "in (0, 1]". The loss params' check."""

    def check(name: str, value: Any) -> float:
        try:  # bool is an int subclass; `q: true` in YAML is a typo, not 1.0.
            finite = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            raise UserError(f"{name} = {value!r}: must be a finite number")
        value = float(value)
        if not ok(value):
            raise UserError(f"{name} = {value!r}: must be {allowed}")
        return value

    return check


def choice(*allowed: str) -> Check:
    def check(name: str, value: Any) -> str:
        if value not in allowed:
            raise UserError(f"{name} = {value!r}: must be one of {', '.join(allowed)}")
        return value

    check.choices = allowed  # type: ignore[attr-defined]
    return check


def text() -> Check:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{name} = {value!r}: must be a non-empty string")
        return value

    return check


def class_name() -> Check:
    """A class name, which is a folder's name: `-S data.positive_class=8` gives YAML's integer 8, and a
    folder named `8` is meant (an integer is read as its decimal name; true/false/floats are not names)."""

    def check(name: str, value: Any) -> str:
        if _is_integer(value) and abs(value) < 10**100:
            return str(value)
        return text()(name, value)

    return check


def boolean() -> Check:
    def check(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise UserError(f"{name} = {value!r}: must be true or false")
        return value

    return check


def optional(inner: Check) -> Check:
    """null, or what ``inner`` accepts."""
    return lambda name, value: None if value is None else inner(name, value)


def number_list(low: float, high: float, low_open: bool = False) -> Check:
    """A non-empty list of distinct finite numbers in [low, high] ((low, high] with low_open), as a tuple."""

    def check(name: str, value: Any) -> tuple[float, ...]:
        # Types first: set() of a list holding a list raises, and an int too large for a float is out of
        # range (compared as an int), not an OverflowError.
        ok = isinstance(value, list) and bool(value) and all(_finite(v) for v in value)
        ok = ok and all(low <= v <= high and not (low_open and v == low) for v in value)
        ok = ok and len(set(value)) == len(value)
        if not ok:
            opening = "(" if low_open else "["
            raise UserError(
                f"{name} = {value!r}: must be a non-empty list of distinct numbers in {opening}{low}, {high}]"
            )
        return tuple(float(v) for v in value)

    return check


def anything() -> Check:
    """Taken as written: a param whose check needs other params (its section's reader makes it)."""
    return lambda name, value: value
