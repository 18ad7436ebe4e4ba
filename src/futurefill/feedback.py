"""A rollout's feedback as the interpreter runs it.

Users write ``feedback(y) -> u`` in the dtype of their inputs (a half-precision type included)
and may return a list or a tuple. The interpreter and the executors' compiled rollouts see a
function of the compute dtype that returns the backend's arrays: :func:`adapt` makes it. It
makes one per feedback, executor and dtypes (the last :data:`CACHE_SIZE` are kept), so that
compiled programs, which executors cache by feedback, are reused across calls and streams.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from .executor import Executor

__all__ = ["CACHE_SIZE", "adapt", "exact_array"]

Array = Any
Feedback = Callable[[Array], Array]

#: Adapted feedbacks kept (each holds its feedback: a bounded number, no leak).
CACHE_SIZE = 16
_cache: OrderedDict[tuple[Any, ...], Feedback] = OrderedDict()
_lock = threading.Lock()


def adapt(executor: Executor, feedback: Feedback, dtype: Any, compute_dtype: Any) -> Feedback:
    """``feedback`` (of arrays of ``dtype``) as a function of arrays of ``compute_dtype``
    whose lists and tuples are converted by :func:`exact_array`."""
    key = (feedback, executor, dtype, compute_dtype)
    with _lock:
        known = _cache.get(key)
        if known is not None:
            _cache.move_to_end(key)
            return known
    xp, half = executor.xp, dtype != compute_dtype

    def adapted(y: Array) -> Array:
        u = feedback(xp.astype(y, dtype) if half else y)
        if isinstance(u, list | tuple):
            u = exact_array(executor, u, dtype, compute_dtype)
        return xp.astype(u, compute_dtype) if half else u

    with _lock:
        _cache[key] = adapted
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return adapted


def exact_array(executor: Executor, value: Any, dtype: Any, compute_dtype: Any) -> Array:
    """``value`` (a list or tuple of real numbers) as the backend's array of ``dtype``, or a
    one-line error when it is no such thing or ``dtype`` cannot hold its values exactly."""
    kind = type(value).__name__
    try:
        host = np.asarray(value)
    except Exception as exc:  # ragged lists, traced values
        raise TypeError(f"feedback returned a {kind} that is no array: {exc}") from None
    if host.dtype.kind not in "fiub":
        raise TypeError(f"feedback returned a {kind} of {host.dtype}: return real numbers")
    array = executor.asarray(host, dtype=compute_dtype)
    if dtype != compute_dtype:
        array = executor.xp.astype(array, dtype)
        back = executor.to_numpy(executor.xp.astype(array, compute_dtype))
    else:
        back = executor.to_numpy(array)
    if not np.array_equal(np.asarray(back, np.float64), host.astype(np.float64), equal_nan=True):
        name = getattr(dtype, "__name__", str(dtype))
        raise ValueError(
            f"feedback returned a {kind} whose values {name} cannot hold exactly; return an "
            f"array of dtype {name}"
        )
    return array
