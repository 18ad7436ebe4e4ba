"""Small argument checks and size helpers shared by the plan, the kernels and the public API."""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np

__all__ = ["check_int", "check_real", "next_pow2"]


def next_pow2(n: int) -> int:
    """Smallest power of two ``>= n`` (1 for ``n <= 1``)."""
    return 1 << max(n - 1, 0).bit_length()


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """``value`` as a Python int in ``minimum .. maximum``, or a one-line error.

    Python and NumPy integers are accepted; ``bool``, floats (even integral ones) and strings
    are refused, so that ``3.7`` or ``"5"`` never silently become ``3`` or ``5``.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_real(name: str, value: Any, *, positive: bool = False) -> float:
    """``value`` as a finite Python float, ``>= 0`` (``> 0`` if ``positive``), or a one-line error.

    Python and NumPy integers and floats are accepted; ``bool``, strings and complex numbers
    are refused (so ``"4"`` or ``True`` never silently become ``4.0`` or ``1.0``).
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number
