"""The stream pool's gathers and scatters on NumPy, through strided window views.

A group of a pool's tasks reads one block of ``k`` inputs per row and adds one block of
outputs per row. Indexing the ``(S, C, N)`` buffer with three broadcast index arrays makes
NumPy compute an index per element; a view of every length-``k`` window instead, ``(S, C,
N - k + 1, k)`` with the last two axes sharing one stride, is indexed with one row and one
offset per block and copies whole blocks. The rows of a group are distinct, so the blocks an
addition writes never overlap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from futurefill.grouped_kernels import GroupedKernels
from futurefill.state import ConvState

__all__ = ["StridedGroupedKernels"]


def _windows(buf: np.ndarray, width: int) -> np.ndarray:
    """Every length-``width`` window of the last axis: a writable ``(S, C, N - width + 1,
    width)`` view of ``buf``."""
    S, C, N = buf.shape
    s0, s1, s2 = buf.strides
    return as_strided(buf, (S, C, N - width + 1, width), (s0, s1, s2, s2), writeable=True)


class StridedGroupedKernels(GroupedKernels):
    """:class:`~futurefill.grouped_kernels.GroupedKernels` whose block gathers and
    scatter-adds go through window views (see the module docstring)."""

    def emit_rows(
        self,
        state: ConvState,
        rows: np.ndarray,
        u: Any,
        channels: slice,
        slots: np.ndarray,
        starts: np.ndarray,
    ) -> Any:
        width = int((slots - starts).max()) + 1
        first = np.maximum(slots - (width - 1), 0)  # windows clipped at the buffer's start
        buf = state.buffer
        window = _windows(buf[:, channels, :], width)[rows, :, first]  # (G, c, width)
        # Column j of row g is position first + j, at distance d = end - j from the slot
        # (end = slot - first): its weight is phi[d] for 0 < d, 1 at d = 0 (the slot holds
        # everything filled ahead of time), 0 beyond the slot or before the window's start.
        # Row g's weights are one contiguous slice of ``ramp`` = (phi[width-1] .. phi[1], 1,
        # 0 ... 0), starting at width - 1 - end.
        W = state.taps_reversed.shape[-1]
        taps = state.taps_reversed[channels, W - width :]
        ramp = np.zeros((taps.shape[0], 2 * width - 1), buf.dtype)
        ramp[:, : width - 1] = taps[:, :-1]
        ramp[:, width - 1] = 1
        end = slots - first
        weights = _windows(ramp[None], width)[0][:, width - 1 - end].transpose(1, 0, 2)
        weights = weights * ((first[:, None] + np.arange(width)) >= starts[:, None])[:, None, :]
        y = np.einsum("gcw,gcw->gc", window, weights)
        y += taps[:, -1] * u
        buf[rows, channels, slots] = u
        return y

    def gather(
        self, state: ConvState, rows: np.ndarray, channels: slice, first: np.ndarray, width: int
    ) -> Any:
        if first.size == 0 or int(first.min()) < 0:
            return super().gather(state, rows, channels, first, width)
        return _windows(state.buffer[:, channels, :], width)[rows, :, first]

    def scatter(
        self,
        state: ConvState,
        rows: np.ndarray,
        channels: slice,
        first: np.ndarray,
        width: int,
        values: Any,
        *,
        add: bool,
    ) -> None:
        view = _windows(state.buffer[:, channels, :], width)
        if add:
            view[rows, :, first] += values
        else:
            view[rows, :, first] = values
