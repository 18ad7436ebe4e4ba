"""The stream pool's batched kernels on JAX: compiled, with static shapes.

Eagerly, every call of a pool kernel with a new number of rows or a new window width would
build a new XLA program, and every functional update would copy the whole ``(S, C, N)``
buffer. Here each kernel is one jitted function whose buffer argument is donated (updated in
place) and whose shapes are padded: the rows of a call up to the next power of two (1, 2, 4,
..., as serving engines pad batches to captured sizes) and a window up to the next power of
two of its width. Padding rows repeat the first row -- with its own input in a window sum, so
that the repeated store writes the same values, and with a zero contribution in a task group
-- so admitting or releasing slots never compiles anything new: programs exist per (padded
row count, window width or task shape) only.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from futurefill.grouped_kernels import GroupedKernels
from futurefill.plan import TaskShape
from futurefill.state import ConvState

__all__ = ["JittedGroupedKernels"]

Array = Any


def _padded(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _pad_rows(values: np.ndarray, size: int) -> np.ndarray:
    """``values`` followed by copies of its first entry, ``size`` entries in all."""
    return np.concatenate([values, np.repeat(values[:1], size - values.shape[0], axis=0)])


@functools.partial(jax.jit, static_argnames=("start", "stop", "width"), donate_argnums=0)
def _emit(buf, taps, rows, u, slots, starts, *, start, stop, width):  # type: ignore[no-untyped-def]
    cols = slots[:, None] - (width - 1) + jnp.arange(width)
    inside = cols >= starts[:, None]
    ch = jnp.arange(start, stop)
    window = buf[rows[:, None, None], ch[None, :, None], jnp.maximum(cols, 0)[:, None, :]]
    W = taps.shape[-1]
    weights = taps[start:stop, W - width :]
    weights = weights.at[:, -1].set(1)  # the slot holds everything filled ahead of time
    y = jnp.einsum(
        "gcw,cw->gc",
        window * inside[:, None, :],
        weights,
        precision=jax.lax.Precision.HIGHEST,
    )
    y = y + taps[start:stop, -1] * u
    buf = buf.at[rows[:, None], ch[None, :], slots[:, None]].set(u)
    return buf, y


@functools.partial(jax.jit, static_argnames=("shape",), donate_argnums=0)
def _fill(buf, spectrum, rows, src, live, *, shape):  # type: ignore[no-untyped-def]
    C = buf.shape[1]
    ch = jnp.arange(C)[None, :, None]
    cols = src[:, None, None] + jnp.arange(shape.src_length)[None, None, :]
    block = buf[rows[:, None, None], ch, cols]
    n, r = shape.fft_size, shape.read_start
    z = jnp.fft.irfft(jnp.fft.rfft(block, n, axis=-1) * spectrum, n, axis=-1)
    z = z[..., r : r + shape.dst_length] * live[:, None, None]
    target = src[:, None, None] + shape.shift + jnp.arange(shape.dst_length)[None, None, :]
    return buf.at[rows[:, None, None], ch, target].add(z)


class JittedGroupedKernels(GroupedKernels):
    """:class:`~futurefill.grouped_kernels.GroupedKernels` as compiled programs with padded
    shapes (see the module docstring)."""

    def emit_rows(
        self,
        state: ConvState,
        rows: np.ndarray,
        u: Array,
        channels: slice,
        slots: np.ndarray,
        starts: np.ndarray,
    ) -> Array:
        G = rows.shape[0]
        size = _padded(G)
        W = int(state.taps_reversed.shape[-1])
        width = min(_padded(int((slots - starts).max()) + 1), W)
        start, stop, _ = channels.indices(int(state.buffer.shape[1]))
        u_pad = jnp.concatenate([u, jnp.repeat(u[:1], size - G, axis=0)]) if size > G else u
        state.buffer, y = _emit(
            state.buffer,
            state.taps_reversed,
            jnp.asarray(_pad_rows(rows, size)),
            u_pad,
            jnp.asarray(_pad_rows(slots, size)),
            jnp.asarray(_pad_rows(starts, size)),
            start=start,
            stop=stop,
            width=width,
        )
        return y[:G]

    def fill_group(
        self, state: ConvState, shape: TaskShape, rows: np.ndarray, src: np.ndarray
    ) -> None:
        G = rows.shape[0]
        size = _padded(G)
        live = np.zeros(size, state.buffer.dtype)
        live[:G] = 1
        state.buffer = _fill(
            state.buffer,
            state.spectra[shape.spectrum],
            jnp.asarray(_pad_rows(rows, size)),
            jnp.asarray(_pad_rows(src, size)),
            jnp.asarray(live),
            shape=shape,
        )
