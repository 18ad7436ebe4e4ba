"""The mixer states of many sequences at their own positions: one row per pool slot.

Besides its long convolution (held by a :class:`futurefill.StreamPool`), each layer's mixer
keeps a small per-position state (the Hyena short convolution's last inputs, the STU sign of
the position). Serving steps a changing subset of slots, so these states are kept with one row
per slot and the rows of the stepped slots are gathered before a position and scattered back
after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import array_api_extra as xpx
import numpy as np

from ..executor import Executor
from .mixer_base import State

__all__ = ["SlotStates"]

Array = Any


class SlotStates:
    """Per layer, the mixer state of every slot, each array ``(capacity, ...)``.

    Parameters
    ----------
    executor : Executor
        The backend of the states.
    capacity : int
        Number of slots.

    Notes
    -----
    A sequence's own state has a leading axis of one row (what a batch-of-one prefill or
    ``initial_state(batch=1)`` returns); the arrays are allocated from the first one put.
    """

    def __init__(self, executor: Executor, capacity: int) -> None:
        self._executor = executor
        self._capacity = capacity
        self._arrays: list[list[Array]] | None = None

    def put(self, row: int, states: Sequence[State]) -> None:
        """Store one sequence's states (per layer, arrays of leading size 1) at ``row``."""
        if self._arrays is None:
            self._arrays = [
                [self._executor.zeros((self._capacity, *a.shape[1:]), a.dtype) for a in layer]
                for layer in states
            ]
        self.put_rows(np.asarray([row], np.int64), states)

    def take(self, rows: np.ndarray) -> list[State]:
        """The states of ``rows`` (distinct, ascending), arrays ``(len(rows), ...)``."""
        if self._arrays is None:
            raise RuntimeError("no state was put yet")
        return [tuple(self._gather(a, rows) for a in layer) for layer in self._arrays]

    def put_rows(self, rows: np.ndarray, states: Sequence[State]) -> None:
        """Store states ``(len(rows), ...)`` (one per layer, as :meth:`take` returns) at
        ``rows``."""
        if self._arrays is None:
            raise RuntimeError("no state was put yet")
        for layer, new in zip(self._arrays, states, strict=True):
            for k, value in enumerate(new):
                if int(value.shape[0]) != rows.size:
                    raise RuntimeError(
                        f"a mixer state of shape {tuple(value.shape)} has no row per sequence "
                        f"({rows.size} sequences): it cannot be kept per slot"
                    )
                layer[k] = self._scatter(layer[k], rows, value)

    def layer(self, index: int) -> State:
        """Layer ``index``'s arrays ``(capacity, ...)``, as held (not copied)."""
        if self._arrays is None:
            raise RuntimeError("no state was put yet")
        return tuple(self._arrays[index])

    def replace_layers(self, arrays: Sequence[State]) -> None:
        """Hold ``arrays`` (per layer, arrays of the shapes held now) instead."""
        if self._arrays is None:
            raise RuntimeError("no state was put yet")
        shapes = [[tuple(a.shape) for a in layer] for layer in self._arrays]
        if [[tuple(a.shape) for a in layer] for layer in arrays] != shapes:
            raise ValueError("the replacement states do not have the shapes held")
        self._arrays = [list(layer) for layer in arrays]

    # ------------------------------------------------------------------ rows
    @staticmethod
    def _span(rows: np.ndarray) -> slice | None:
        """``rows`` as a slice when they are consecutive."""
        first = int(rows[0])
        if np.array_equal(rows, np.arange(first, first + rows.size)):
            return slice(first, first + rows.size)
        return None

    def _gather(self, array: Array, rows: np.ndarray) -> Array:
        span = self._span(rows)
        ex = self._executor
        if span is not None:  # a copy: the scatter after the step must not write into it
            return ex.xp.asarray(array[span, ...], copy=True)
        if ex.fancy_indexing:
            return array[ex.asarray(rows), ...]
        return ex.xp.stack([array[r, ...] for r in rows.tolist()])

    def _scatter(self, array: Array, rows: np.ndarray, values: Array) -> Array:
        span = self._span(rows)
        if span is not None:
            return xpx.at(array)[span, ...].set(values)
        ex = self._executor
        if ex.fancy_indexing:
            return xpx.at(array)[ex.asarray(rows), ...].set(values)
        for i, r in enumerate(rows.tolist()):
            array = xpx.at(array)[r, ...].set(values[i, ...])
        return array
