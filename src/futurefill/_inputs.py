"""Inputs at the public boundary: converted as array users expect, refused only when inexact.

A plain list, a NumPy array given to a torch/JAX/CuPy stream, or float32 data for a float64
stream are converted, as NumPy, PyTorch and JAX convert them in their own functions. What cannot
be converted exactly is refused with the reason: complex values, non-numbers, and a cast that
would round (float64 data with more precision than a float32 stream keeps, integers beyond the
float's exact range). An array already of the stream's backend and dtype passes untouched (no
copy, no host round trip).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .executor import Executor

__all__ = ["convert_input", "convert_shaped"]

Array = Any


def convert_input(executor: Executor, u: Any, dtype: Any, what: str) -> Array:
    """``u`` as an array of ``executor``'s backend in ``dtype``, or a clear error.

    Parameters
    ----------
    executor : Executor
        The stream's executor.
    u : array-like
        Anything NumPy can read (lists, NumPy arrays, arrays of other libraries on the CPU)
        or an array of the executor's backend.
    dtype
        The stream's working dtype (the executor's float32 or float64).
    what : str
        How the input is named in messages.
    """
    if executor.is_native(u):
        if u.dtype == dtype:
            return u
        xp = executor.xp
        if not xp.isdtype(u.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"{what} must be real numbers, got dtype {u.dtype}")
        cast = xp.astype(u, dtype)
        if not bool(xp.all(xp.astype(cast, u.dtype) == u)):
            raise TypeError(f"{what} has dtype {u.dtype}; casting it to {dtype} would round it")
        return cast
    try:
        host = np.asarray(u)
    except Exception as error:  # a ragged list, an object NumPy cannot read
        raise TypeError(f"{what} must be an array of numbers: {error}") from None
    if host.dtype.kind not in "fiub":
        raise TypeError(f"{what} must be real numbers, got dtype {host.dtype}")
    target = np.dtype(executor.to_numpy(executor.zeros((0,), dtype)).dtype)
    if host.dtype != target:
        cast = host.astype(target)
        with np.errstate(invalid="ignore"):
            same = np.array_equal(cast.astype(host.dtype), host, equal_nan=host.dtype.kind == "f")
        if not same:
            raise TypeError(f"{what} has dtype {host.dtype}; casting it to {target} would round it")
        host = cast
    return executor.asarray(np.ascontiguousarray(host), dtype=dtype)


def convert_shaped(
    executor: Executor,
    u: Any,
    dtype: Any,
    shape: tuple[int, ...],
    what: str,
    *,
    finite: bool = False,
) -> Array:
    """:func:`convert_input`, then check the shape (``-1`` in ``shape``: any length) and, with
    ``finite``, NaN and infinities (on the device: one boolean comes back, not the data)."""
    u = convert_input(executor, u, dtype, what)
    got = tuple(int(n) for n in u.shape)
    if len(got) != len(shape) or any(w not in (-1, g) for w, g in zip(shape, got, strict=True)):
        want = tuple("P" if w == -1 else w for w in shape)
        raise ValueError(f"{what} must have shape {want}, got {got}")
    xp = executor.xp
    if finite and not bool(xp.all(xp.isfinite(u))):
        raise ValueError(f"{what} contains NaN or infinite values")
    return u
