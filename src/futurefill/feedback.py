"""A rollout's feedback as the interpreter runs it.

Users write ``feedback(y) -> u`` in the dtype of their inputs (a half-precision type included)
and may return a list, a tuple, a NumPy array or an array of another dtype: these are converted
as inputs are (:mod:`futurefill._inputs`; refused when that would round them). The interpreter
and the executors' compiled rollouts see a function of the compute dtype that returns the
backend's arrays: :func:`adapt` makes it. It makes one per feedback, executor and dtypes (the
last :data:`CACHE_SIZE` are kept), so that compiled programs, which executors cache by
feedback, are reused across calls and streams.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from ._inputs import convert_input
from .executor import Executor

__all__ = ["CACHE_SIZE", "adapt"]

Array = Any
Feedback = Callable[[Array], Array]

#: Adapted feedbacks kept (each holds its feedback: a bounded number, no leak).
CACHE_SIZE = 16
_cache: OrderedDict[tuple[Any, ...], Feedback] = OrderedDict()
_lock = threading.Lock()


def adapt(executor: Executor, feedback: Feedback, dtype: Any, compute_dtype: Any) -> Feedback:
    """``feedback`` (of arrays of ``dtype``) as a function of arrays of ``compute_dtype``
    whose lists, tuples, NumPy arrays and backend arrays are converted to ``dtype`` by
    :func:`~futurefill._inputs.convert_input` (anything else, e.g. a JAX tracer, is left to
    the interpreter's check)."""
    key = (feedback, executor, dtype, compute_dtype)
    with _lock:
        known = _cache.get(key)
        if known is not None:
            _cache.move_to_end(key)
            return known
    xp, half = executor.xp, dtype != compute_dtype

    def adapted(y: Array) -> Array:
        u = feedback(xp.astype(y, dtype) if half else y)
        if isinstance(u, list | tuple | np.ndarray) or executor.is_native(u):
            u = convert_input(executor, u, dtype, "the feedback's value")
        return xp.astype(u, compute_dtype) if half else u

    with _lock:
        _cache[key] = adapted
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return adapted
