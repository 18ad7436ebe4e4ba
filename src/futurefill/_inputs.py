"""Inputs at the public boundary: converted as array users expect, refused only when inexact.

A plain list, a NumPy array given to a torch/JAX/CuPy stream, or float32 data for a float64
stream are converted, as NumPy, PyTorch and JAX convert them in their own functions. What cannot
be converted exactly is refused with the reason: complex values, non-numbers, and a cast that
would round an array (float64 data with more precision than a float32 stream keeps, integers
beyond the float's exact range). Python floats (a list, no dtype of their own) are "weak", as in
NumPy 2 (NEP 50), JAX and PyTorch: they take the stream's precision, rounded to nearest; only
a value beyond its range is refused. An array already of the stream's backend and dtype passes
untouched (no copy, no host round trip). Filters are checked on the host
(:func:`host_filters`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .executor import Executor

__all__ = ["convert_input", "convert_shaped", "host_filters"]

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
        with np.errstate(invalid="ignore", over="ignore"):
            cast = host.astype(target)
            if _weak(u, host):  # Python floats take the stream's precision (NEP 50)
                same = np.array_equal(np.isinf(cast), np.isinf(host))
            else:
                same = np.array_equal(
                    cast.astype(host.dtype), host, equal_nan=host.dtype.kind == "f"
                )
        if not same:
            raise _rounds(what, host.dtype, dtype)
        host = cast
    u = executor.asarray(np.ascontiguousarray(host), dtype=work)
    return _cast_exactly(executor, u, dtype, what) if half else u


def _weak(u: Any, host: np.ndarray) -> bool:
    """Whether ``u`` holds Python floats (a list or a scalar, no dtype of its own): "weak"
    values that take the precision of the array they meet, as NumPy 2 (NEP 50), JAX and
    PyTorch treat them; they are rounded to the stream's dtype (an overflow is refused)."""
    return host.dtype.kind == "f" and not hasattr(u, "dtype")


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


def host_filters(executor: Executor, filters: Array) -> np.ndarray:
    """Validate filters on the host: a finite, real ``(C, N)`` array in native byte order."""
    if executor.is_native(filters):
        if executor.half_dtype(filters.dtype) is not None:  # NumPy may not know the type
            filters = executor.xp.astype(filters, executor.resolve_dtype("float32"))
        host = executor.to_numpy(filters)
    elif isinstance(filters, np.ndarray):
        host = filters
    else:
        raise TypeError(
            f"filters must be a NumPy array or an array of the {executor.name!r} backend, got "
            f"{type(filters).__module__}.{type(filters).__name__}"
        )
    if isinstance(host, np.ma.MaskedArray):
        raise TypeError("filters must be a plain array, not a masked array: fill it first")
    if host.ndim != 2 or 0 in host.shape:
        raise ValueError(f"filters must have shape (channels, taps), got {host.shape}")
    if host.dtype.kind not in "fiub":
        raise TypeError(f"filters must be real, got dtype {host.dtype}")
    if not host.dtype.isnative:
        host = host.astype(host.dtype.newbyteorder("="))
    if not np.all(np.isfinite(host)):
        raise ValueError("filters contain NaN or infinite values")
    return host
