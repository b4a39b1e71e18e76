"""Checks of values at genrl's boundaries (numbers, choices, settings mappings), and how a value
is described in an error message.

Every "expected an integer >= 1, got ..." in genrl comes from here, so the wording, the refusal of
booleans (``True`` is an ``int`` to Python) and the rendering of the given value are the same in
every module.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Collection
from typing import Any, TypeVar

import numpy as np

from genrl.errors import GenrlError


def describe(value: Any, limit: int = 100) -> str:
    """A value on one short line, for error messages (arrays and numpy scalars read as numbers)."""
    if isinstance(value, np.ndarray):
        text = np.array2string(value, separator=", ", threshold=8, edgeitems=2, max_line_width=10**6)
        text = f"array({text}, dtype={value.dtype})"
    elif isinstance(value, np.generic):
        text = repr(value.item())
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (parsers like YAML's report over several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (Python or numpy), and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int, if it is an integer in ``[low, high]``; else a one-line GenrlError."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        raise GenrlError(f"{name}: expected {_int_range(low, high)}, got {describe(value)}")
    return int(value)


def check_float(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a float, if it is a real number in the range; else a one-line GenrlError.

    ``low_open``/``high_open`` exclude the bound itself; ``finite`` refuses inf (NaN is always refused).
    """
    number = _as_float(value)
    ok = number is not None and not math.isnan(number) and (math.isfinite(number) or not finite)
    if ok and low is not None:
        ok = number > low if low_open else number >= low
    if ok and high is not None:
        ok = number < high if high_open else number <= high
    if not ok:
        raise GenrlError(
            f"{name}: expected {_float_range(low, high, low_open, high_open)}, got {describe(value)}"
        )
    return float(number)


def check_choice(value: Any, name: str, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``; else a one-line GenrlError listing them."""
    if isinstance(value, bool) or value not in choices:
        raise GenrlError(f"{name}: expected one of {list(choices)}, got {describe(value)}")
    return value


C = TypeVar("C")


def from_mapping(cls: type[C], data: Any, what: str) -> C:
    """A settings dataclass from a mapping, unknown keys refused in one line naming them."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise GenrlError(f"expected {what} as a mapping, got {describe(data)}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        raise GenrlError(f"unknown {what} {unknown}; expected some of {sorted(names)}")
    return cls(**data)


def set_field(obj: Any, name: str, value: Any) -> None:
    """Set a field of a frozen dataclass: for its ``__post_init__``, which normalises each value once."""
    object.__setattr__(obj, name, value)


def _as_float(value: Any) -> float | None:
    """A real number as a float (inf if too large), or None for anything else, bools included."""
    if not is_real(value):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _int_range(low: int | None, high: int | None) -> str:
    if high is not None and high >= 2**63 - 1:  # the int64 limit, not a bound worth printing
        return f"an integer >= {low} (int64)" if low is not None else "an integer (int64)"
    if low is not None and high is not None:
        return f"an integer from {low} to {high}"
    if low is not None:
        return f"an integer >= {low}"
    return "an integer" if high is None else f"an integer <= {high}"


def _float_range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return "a number" + (" " + " and ".join(parts) if parts else "")
