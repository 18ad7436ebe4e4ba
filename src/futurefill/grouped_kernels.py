"""Batched kernels of a stream pool: many slots, each at its own position, in one call.

:class:`GroupedKernels` is mixed into :class:`futurefill.executor.ArrayAPIExecutor`, so every
executor has them. The buffer of a pool is one ``(S, C, N)`` array whose row ``s`` is slot
``s``'s own buffer (see :class:`futurefill.StreamPool`). Two kernels:

* :meth:`~GroupedKernels.emit_rows` -- the outputs of one step for several rows, each at its
  own slot and window start (one gather of all the windows, one masked product-sum);
* :meth:`~GroupedKernels.fill_group` -- the tasks of one shape due in several rows
  (:class:`futurefill.pool.grouping.TaskGroup`): one gather of the source blocks, one forward
  FFT over the stack, one product with the shared filter spectrum, one inverse FFT and one
  scatter-add at each row's own target;
* :meth:`~GroupedKernels.fill_groups` -- every task due after one step of several rows, one
  :meth:`~GroupedKernels.fill_group` per group (an executor may make it one program: JAX
  compiles one per pool).

How rows are gathered and scattered is a declared capability, :attr:`fancy_indexing`: a
namespace whose arrays take NumPy-style integer-array indices (NumPy, PyTorch, CuPy, JAX) gets
one gather and one scatter per call; any other array-API namespace (``array_api_strict``) one
slice per row. The FFTs are batched either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import array_api_extra as xpx
import numpy as np

from . import ops
from .plan import TaskShape
from .state import ConvState

__all__ = ["GroupedKernels", "TaskGroup"]

Array = Any


@dataclass(frozen=True, eq=False)
class TaskGroup:
    """Tasks of one shape (and lane), one row per stepped slot that has one due.

    Attributes
    ----------
    shape : TaskShape
        What every task of the group computes, up to where it sits.
    rows : ndarray of int64, shape (G,)
        The slots (rows of the pool's buffer), all distinct.
    src : ndarray of int64, shape (G,)
        Buffer slot of the first input of each row's source block; its target starts at
        ``src + shape.shift``.
    """

    shape: TaskShape
    rows: np.ndarray
    src: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])


class GroupedKernels:
    """Reference batched kernels, written with the array API (see the module docstring).

    Subclasses provide ``xp``, ``device``, ``asarray`` and ``zeros`` (as
    :class:`futurefill.executor.ArrayAPIExecutor` does) and may override either kernel with a
    faster one.
    """

    xp: Any
    device: Any
    asarray: Callable[..., Array]
    zeros: Callable[..., Array]
    #: Whether arrays of this namespace take NumPy-style integer-array indices, in reads and
    #: in ``array_api_extra.at`` updates (``False``: one slice per row).
    fancy_indexing: ClassVar[bool] = False

    def index_array(self, values: np.ndarray) -> Array:
        """Host integers as an index array of this backend (on its device)."""
        return self.asarray(values)

    # ------------------------------------------------------------------ window sums
    def emit_rows(
        self,
        state: ConvState,
        rows: np.ndarray,
        u: Array,
        channels: slice,
        slots: np.ndarray,
        starts: np.ndarray,
    ) -> Array:
        """Outputs of one step of ``rows`` for ``channels``; store the inputs.

        Row ``g`` is at buffer slot ``slots[g]`` with its window from ``starts[g]``:
        ``y[g] = buffer[rows[g], ch, slots[g]] + sum(taps * buffer[rows[g], ch,
        starts[g]:slots[g]]) + phi0 * u[g]``, then ``u[g]`` is stored in that slot.

        Parameters
        ----------
        state : ConvState
            The pool's state (its batch axis is the rows).
        rows, slots, starts : ndarray of int, shape (G,)
            Distinct rows, the buffer slot of each row's step and the first slot of its window.
        u : array, shape (G, c)
            The inputs of the step.
        channels : slice
            Contiguous channels, ``c`` of them.

        Returns
        -------
        array, shape (G, c)
        """
        xp = self.xp
        width = int((slots - starts).max()) + 1
        first = slots - (width - 1)  # windows right-aligned at their slots
        window = self.gather(state, rows, channels, first, width)
        inside = (first[:, None] + np.arange(width)) >= starts[:, None]
        W = state.taps_reversed.shape[-1]
        taps = state.taps_reversed[channels, W - width :]
        # the slot holds everything filled ahead of time: weight 1; phi[0] multiplies u
        ones = self.zeros((taps.shape[0], 1), taps.dtype) + 1
        weights = xp.concat([taps[:, :-1], ones], axis=-1)
        mask = self.asarray(inside, dtype=taps.dtype)
        y = xp.sum(window * (weights[None, ...] * mask[:, None, :]), axis=-1)
        y = y + taps[:, -1] * u
        self.scatter(state, rows, channels, slots, 1, u[..., None], add=False)
        return y

    # ------------------------------------------------------------------ tasks
    def fill_group(
        self, state: ConvState, shape: TaskShape, rows: np.ndarray, src: np.ndarray
    ) -> None:
        """Run the tasks of one shape due in ``rows`` (one batched transform pair).

        Adds, for every ``g``, ``fill_future(buffer[rows[g], :, src[g] : src[g] +
        shape.src_length], spectrum, ...)`` into ``buffer[rows[g], :, src[g] + shape.shift :
        ... + shape.dst_length]``.
        """
        everything = slice(None)
        block = self.gather(state, rows, everything, src, shape.src_length)
        r = shape.read_start
        z = ops.fill_future(
            block,
            state.spectra[shape.spectrum],
            shape.fft_size,
            r,
            r + shape.dst_length,
            xp=self.xp,
        )
        self.scatter(state, rows, everything, src + shape.shift, shape.dst_length, z, add=True)

    def fill_groups(
        self, state: ConvState, groups: Sequence[TaskGroup], *, max_elements: int | None = None
    ) -> None:
        """Run every task of ``groups``: the tasks due after one step of several rows
        (:func:`futurefill.pool.grouping.due_groups`), :meth:`fill_group` for each group.

        An executor may run them as one program instead (JAX compiles one per pool). Tasks
        read inputs and add to accumulators, never the same slots, so their order is free.

        Parameters
        ----------
        state : ConvState
            The pool's state.
        groups : sequence of TaskGroup
            The groups, each split to at most ``max_elements``.
        max_elements : int, optional
            Largest ``rows x channels x FFT size`` of one batched transform (a one-program
            executor sizes its own batches by it).
        """
        for group in groups:
            self.fill_group(state, group.shape, group.rows, group.src)

    # ------------------------------------------------------------------ gather and scatter
    def gather(
        self, state: ConvState, rows: np.ndarray, channels: slice, first: np.ndarray, width: int
    ) -> Array:
        """``buffer[rows[g], channels, first[g] : first[g] + width]`` for every ``g``, shape
        ``(G, c, width)``. Entries at columns below 0 are unspecified (the caller masks them)."""
        buf = state.buffer
        if self.fancy_indexing:
            cols = np.maximum(first[:, None] + np.arange(width), 0)
            return buf[self._index(state, rows, channels, cols)]
        xp = self.xp
        blocks = []
        for r, a in zip(rows.tolist(), first.tolist(), strict=True):
            block = buf[r, channels, max(a, 0) : a + width]
            if a < 0:
                pad = self.zeros((block.shape[0], -a), buf.dtype)
                block = xp.concat([pad, block], axis=-1)
            blocks.append(block)
        return xp.stack(blocks)

    def scatter(
        self,
        state: ConvState,
        rows: np.ndarray,
        channels: slice,
        first: np.ndarray,
        width: int,
        values: Array,
        *,
        add: bool,
    ) -> None:
        """Set (or with ``add``, add) ``values[g]`` ``(c, width)`` at ``buffer[rows[g],
        channels, first[g] : first[g] + width]`` for every ``g`` (rows distinct, so no place is
        written twice)."""
        buf = state.buffer
        if self.fancy_indexing:
            cols = first[:, None] + np.arange(width)
            at = xpx.at(buf)[self._index(state, rows, channels, cols)]
            state.buffer = at.add(values) if add else at.set(values)
            return
        for g, (r, a) in enumerate(zip(rows.tolist(), first.tolist(), strict=True)):
            at = xpx.at(buf)[r, channels, a : a + width]
            buf = at.add(values[g, ...]) if add else at.set(values[g, ...])
        state.buffer = buf

    def _index(
        self, state: ConvState, rows: np.ndarray, channels: slice, cols: np.ndarray
    ) -> tuple[Array, Array, Array]:
        """Integer-array index of ``(rows[g], channel, cols[g, k])``, shape ``(G, c, k)``."""
        ch = np.arange(state.channels)[channels]
        return (
            self.index_array(rows[:, None, None]),
            self.index_array(ch[None, :, None]),
            self.index_array(cols[:, None, :]),
        )
