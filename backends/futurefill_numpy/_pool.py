"""The stream pool's kernels on NumPy: window sums as a lock-step step computes them, and
gathers and scatters through strided window views.

A group of a pool's tasks reads one block of ``k`` inputs per row and adds one block of
outputs per row. Indexing the ``(S, C, N)`` buffer with three broadcast index arrays makes
NumPy compute an index per element; a view of every length-``k`` window instead, ``(S, C,
N - k + 1, k)`` with the last two axes sharing one stride, is indexed with one row and one
offset per block and copies whole blocks. The rows of a group are distinct, so the blocks an
addition writes never overlap. A group's spectrum and inverse go into work arrays kept in the
pool's state between calls (grown to the largest group, at most the pool's
``max_group_bytes``): fresh arrays of that size would be fresh pages, faulted in at every call.

The window sums of a step are bucketed by window width (:func:`width_buckets`): each bucket is
one ``vecdot`` over exactly its rows' windows -- no row reads the widest window of the call --
and each row's sum is the lock-step step's own (the same ``vecdot`` over the same window, then
the accumulated future), so a slot's outputs equal an :class:`futurefill.OnlineConv`'s of the
same plan bit for bit when that plan's tasks run one by one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from futurefill.grouped_kernels import GroupedKernels
from futurefill.plan import TaskShape
from futurefill.state import ConvState

__all__ = ["StridedGroupedKernels", "width_buckets"]

_ALL = slice(None)


def _windows(buf: np.ndarray, width: int, channels: slice = _ALL) -> np.ndarray:
    """Every length-``width`` window of the last axis of ``buf[:, channels, :]``: a writable
    ``(S, c, N - width + 1, width)`` view (built directly on a C-contiguous buffer, which is
    much cheaper than ``as_strided``)."""
    S, C, N = buf.shape
    s0, s1, s2 = buf.strides
    start, stop, _ = channels.indices(C)
    shape, strides = (S, stop - start, N - width + 1, width), (s0, s1, s2, s2)
    if buf.flags.c_contiguous and buf.flags.writeable:
        return np.ndarray(shape, buf.dtype, buffer=buf, offset=start * s1, strides=strides)
    return as_strided(buf[:, channels, :], shape, strides, writeable=True)


class _WorkArrays:
    """The spectrum and inverse of a pool's batched transforms, kept between calls: one flat
    complex and one flat real array, grown to the largest group seen (at most the pool's
    ``max_group_bytes``), of which each call takes a ``(G, C, n // 2 + 1)`` and a ``(G, C, n)``
    view."""

    def __init__(self, dtype: np.dtype) -> None:
        self.real = np.empty(0, dtype)
        self.complex = np.empty(0, np.result_type(dtype, np.complex64))

    def arrays(self, rows: int, channels: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The work arrays of a transform of size ``n`` over ``rows x channels`` rows."""
        half, full = rows * channels * (n // 2 + 1), rows * channels * n
        if self.complex.size < half:
            self.complex = np.empty(half, self.complex.dtype)
        if self.real.size < full:
            self.real = np.empty(full, self.real.dtype)
        return (
            self.complex[:half].reshape(rows, channels, n // 2 + 1),
            self.real[:full].reshape(rows, channels, n),
        )


def _work(state: ConvState) -> _WorkArrays:
    """The work arrays of a pool's state (its ``workspace``, set on first use)."""
    if not isinstance(state.workspace, _WorkArrays):
        state.workspace = _WorkArrays(state.buffer.dtype)
    return state.workspace


def width_buckets(widths: np.ndarray) -> list[tuple[int, int | slice | np.ndarray]]:
    """The distinct values of ``widths`` with where each occurs: ``(width, index)`` pairs, the
    widths ascending; ``index`` is ``slice(None)`` when every entry has the one width, an int
    for a width of one entry, else an int array of positions, ascending. (A Python pass: the
    rows of a pool's call are few, and this runs at every step.)"""
    values = widths.tolist()
    if values.count(values[0]) == len(values):
        return [(values[0], slice(None))]
    where: dict[int, list[int]] = {}
    for i, v in enumerate(values):
        where.setdefault(v, []).append(i)
    return [(w, at[0] if len(at) == 1 else np.asarray(at)) for w, at in sorted(where.items())]


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
        # What a lock-step step computes, row by row and in the same order (so the outputs are
        # the same bit for bit): the window ``start .. slot`` with the input in the slot, one
        # vecdot with the taps (phi[0] times the input included), plus the accumulated future
        # the slot held. Rows are bucketed by window width, so no row reads (or weighs) more
        # columns than its own window; a row alone in its bucket is read and written in place,
        # the others through one gathered copy per bucket, their inputs stored right after
        # the gather (while the buffer's lines are in the cache).
        buf = state.buffer
        taps = state.taps_reversed[channels]
        W = taps.shape[-1]
        y = np.empty(u.shape, buf.dtype)
        for width, index in width_buckets(slots - starts + 1):
            if isinstance(index, int):
                window = buf[rows[index], channels, starts[index] : slots[index] + 1]
                acc = window[..., -1].copy()
                window[..., -1] = u[index]
            else:
                windows = _windows(buf, width, channels)
                window = windows[rows[index], :, starts[index]]
                windows[rows[index], :, starts[index], -1] = u[index]
                acc = window[..., -1].copy()
                window[..., -1] = u[index]
            y[index] = np.vecdot(window, taps[:, W - width :]) + acc
        return y

    def fill_group(
        self, state: ConvState, shape: TaskShape, rows: np.ndarray, src: np.ndarray
    ) -> None:
        # The lock-step task, batched over rows: transform, product in place, inverse, add,
        # the spectrum and the inverse in work arrays kept between calls (no page faults).
        buf = state.buffer
        n, r, k = shape.fft_size, shape.read_start, shape.dst_length
        spectrum, inverse = _work(state).arrays(rows.size, buf.shape[1], n)
        np.fft.rfft(_windows(buf, shape.src_length)[rows, :, src], n, axis=-1, out=spectrum)
        spectrum *= state.spectra[shape.spectrum]
        z = np.fft.irfft(spectrum, n, axis=-1, out=inverse)
        for g, (row, a) in enumerate(zip(rows.tolist(), (src + shape.shift).tolist(), strict=True)):
            buf[row, :, a : a + k] += z[g, :, r : r + k]

    def gather(
        self, state: ConvState, rows: np.ndarray, channels: slice, first: np.ndarray, width: int
    ) -> Any:
        if first.size == 0 or int(first.min()) < 0:
            return super().gather(state, rows, channels, first, width)
        return _windows(state.buffer, width, channels)[rows, :, first]

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
        view = _windows(state.buffer, width, channels)
        if add:
            view[rows, :, first] += values
        else:
            view[rows, :, first] = values
