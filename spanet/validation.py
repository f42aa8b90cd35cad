"""Argument checks shared by the model library: each error names the parameter and what it allows."""

from __future__ import annotations

import numbers
from typing import Iterable, TypeVar

T = TypeVar("T")


def check_ratio(name: str, value: float) -> float:
    """A composition ratio must lie in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in (0, 1] (1 = plain convolution); got {value!r}")
    return float(value)


def check_positive(name: str, value: float) -> float:
    """A multiplier such as the network width must be a number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0.0:
        raise ValueError(f"{name} must be a number > 0; got {value!r}")
    return float(value)


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    """Counts (channels, kernel sizes, classes) must be whole numbers >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_choice(name: str, value: T, allowed: Iterable[T]) -> T:
    """A named option must be one of the allowed values."""
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value
