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
        The stream's dtype (the executor's float32 or float64, or its half type).
    what : str
        How the input is named in messages.
    """
    if executor.is_native(u):
        return u if u.dtype == dtype else _cast_exactly(executor, u, dtype, what)
    reason = executor.refusal(u)  # e.g. a JAX tracer: why it cannot be used, not converted
    if reason:
        raise TypeError(f"{what}: {reason}")
    if isinstance(u, np.ma.MaskedArray):  # np.asarray would drop the mask
        raise TypeError(f"{what} must be a plain array, not a masked array: fill it first")
    try:
        host = np.asarray(u)
    except Exception as error:  # a ragged list, an object NumPy cannot read
        raise TypeError(f"{what} must be an array of numbers: {error}") from None
    if host.dtype.kind not in "fiub":
        raise TypeError(f"{what} must be real numbers, got dtype {host.dtype}")
    half = executor.half_dtype(dtype) is not None  # NumPy may not know it: float32 first
    single = executor.resolve_dtype("float32")
    work = single if half else dtype
    target = np.dtype(np.float32 if work == single else np.float64)  # no array: traceable
    if host.dtype != target:
        cast = host.astype(target)
        with np.errstate(invalid="ignore"):
            same = np.array_equal(cast.astype(host.dtype), host, equal_nan=host.dtype.kind == "f")
        if not same:
            raise _rounds(what, host.dtype, dtype)
        host = cast
    u = executor.asarray(np.ascontiguousarray(host), dtype=work)
    return _cast_exactly(executor, u, dtype, what) if half else u


def _rounds(what: str, have: Any, dtype: Any) -> TypeError:
    """The error for a cast from ``have`` to ``dtype`` that would round the input."""
    name = dtype.__name__ if isinstance(dtype, type) else str(dtype)  # NumPy's are classes
    return TypeError(f"{what} has dtype {have}; casting it to {name} would round it")


def _cast_exactly(executor: Executor, u: Array, dtype: Any, what: str) -> Array:
    """The backend's array ``u`` cast to ``dtype``, refused when the cast would round it."""
    xp = executor.xp
    if not xp.isdtype(u.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"{what} must be real numbers, got dtype {u.dtype}")
    cast = xp.astype(u, dtype)
    if _widens(xp, u.dtype, dtype):
        return cast
    back = xp.astype(cast, u.dtype)
    same = back == u
    if xp.isdtype(u.dtype, "real floating"):  # NaN stays NaN
        same = same | (xp.isnan(u) & xp.isnan(back))
    if not bool(xp.all(same)):
        raise _rounds(what, u.dtype, dtype)
    return cast


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


def _widens(xp: Any, have: Any, dtype: Any) -> bool:
    """Whether ``have`` is a float type that ``dtype`` holds exactly (float32 in float64).

    From the types' limits: ``can_cast`` does not say it everywhere (torch's allows float64
    to float32).
    """
    if not xp.isdtype(have, "real floating") or not xp.isdtype(dtype, "real floating"):
        return False
    a, b = xp.finfo(have), xp.finfo(dtype)
    return bool(b.eps <= a.eps and b.max >= a.max and b.smallest_normal <= a.smallest_normal)
