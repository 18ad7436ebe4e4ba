"""The stream pool's batched kernels on JAX: compiled, with static shapes.

Eagerly, every call of a pool kernel with a new number of rows or a new window width would
build a new XLA program, and every functional update would copy the whole ``(S, C, N)``
buffer. Here each kernel is one jitted function whose buffer argument is donated (updated in
place) and whose shapes are padded: the rows of a call up to the next power of two (1, 2, 4,
..., as serving engines pad batches to captured sizes) and a window to the plan's widest
(:data:`FIXED_WIDTH` or narrower) or else up to the next power of two of the call's widest;
the first channel of a call is traced. Padding rows repeat the last row -- with its own
input in a window sum, so that the repeated store writes the same values, and with a zero
contribution in a task group -- so admitting or releasing slots never compiles anything
new: programs exist per (padded row count, window width or task shape) only, and layers of
equal width share them.

A pool step is two programs: the window sums of the stepped rows (above), then every task
due, whatever its shape, in one program compiled once per pool
(:meth:`JittedGroupedKernels.fill_groups`): for every task shape of the plan, a loop over the
rows due in batches of a fixed size (one batched transform pair each). The rows due of each
shape come in one packed index table whose size is fixed by the pool (its capacity times the
most tasks of the shape one step has) and the counts are traced, so the program is the same
whatever slots are due, admitted or released; a shape no stepped row has due runs no
iteration. The batch of a shape is about the number of rows it has due when the capacity's
slots are spread evenly over the plan (one for the rare large transforms, more for the
frequent small ones), at most ``max_elements`` values per transform; a batch's unused rows
are masked. A pool's counters (:class:`futurefill.pool.PoolStats`) count the groups the core
formed, not these batches.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from futurefill.grouped_kernels import GroupedKernels, TaskGroup
from futurefill.plan import Plan, TaskShape
from futurefill.pool.grouping import task_lanes
from futurefill.state import ConvState

from ._kernels import after

__all__ = ["JittedGroupedKernels", "TickTable", "tick_table"]

Array = Any


def _padded(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _pad_rows(values: np.ndarray, size: int) -> np.ndarray:
    """``values`` followed by copies of its last entry, ``size`` entries in all."""
    return np.concatenate([values, np.repeat(values[-1:], size - values.shape[0], axis=0)])


#: Plans whose windows are at most this wide sum every call over the widest window (one window
#: program per padded row count); wider windows are summed over the call's widest, rounded up
#: to a power of two (a program per width met).
FIXED_WIDTH = 64


def _emit_body(buf, taps, index, u, first, *, count, width):  # type: ignore[no-untyped-def]
    """Window sums of channels ``first .. first + count - 1`` (``first`` traced: layers of
    equal width share the program); ``index`` ``(3, G)`` holds the rows, their slots and their
    window starts (one transfer per call)."""
    rows, slots, starts = index[0], index[1], index[2]
    cols = slots[:, None] - (width - 1) + jnp.arange(width)
    inside = cols >= starts[:, None]
    ch = first + jnp.arange(count)
    window = buf[rows[:, None, None], ch[None, :, None], jnp.maximum(cols, 0)[:, None, :]]
    W = taps.shape[-1]
    taps = lax.dynamic_slice_in_dim(taps, first, count, axis=0)
    weights = taps[:, W - width :]
    weights = weights.at[:, -1].set(1)  # the slot holds everything filled ahead of time
    y = jnp.einsum(
        "gcw,cw->gc",
        window * inside[:, None, :],
        weights,
        precision=jax.lax.Precision.HIGHEST,
    )
    y = y + taps[:, -1] * u
    # the store's index computed from the sums: XLA orders it after the window's read and
    # updates the donated buffer in place (otherwise it copies the whole buffer twice a call)
    buf = buf.at[rows[:, None], ch[None, :], after(slots, y)[:, None]].set(u)
    return buf, y


def _fill_body(buf, spectrum, rows, src, live, *, shape):  # type: ignore[no-untyped-def]
    C = buf.shape[1]
    ch = jnp.arange(C)[None, :, None]
    cols = src[:, None, None] + jnp.arange(shape.src_length)[None, None, :]
    block = buf[rows[:, None, None], ch, cols]
    n, r = shape.fft_size, shape.read_start
    z = jnp.fft.irfft(jnp.fft.rfft(block, n, axis=-1) * spectrum, n, axis=-1)
    z = jnp.where(live[:, None, None], z[..., r : r + shape.dst_length], 0)
    target = src[:, None, None] + shape.shift + jnp.arange(shape.dst_length)[None, None, :]
    return buf.at[rows[:, None, None], ch, target].add(z)


_emit = jax.jit(_emit_body, static_argnames=("count", "width"), donate_argnums=0)
_fill = jax.jit(_fill_body, static_argnames=("shape",), donate_argnums=0)


@dataclass(frozen=True)
class TickTable:
    """How a tick runs the tasks of a plan: per task shape, its batch size and its entries in
    the packed index table (static: a tick's program is compiled for one table).

    Attributes
    ----------
    shapes : tuple of TaskShape
        The plan's task shapes.
    batches : tuple of int
        Rows per batched transform of each shape.
    offsets, sizes : tuple of int
        First entry and number of entries (a multiple of the batch) of each shape.
    """

    shapes: tuple[TaskShape, ...]
    batches: tuple[int, ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]

    @property
    def entries(self) -> int:
        """Entries of the packed table."""
        return self.offsets[-1] + self.sizes[-1] if self.sizes else 0

    @functools.cached_property
    def index(self) -> dict[TaskShape, int]:
        """The position of each shape in :attr:`shapes`."""
        return {shape: j for j, shape in enumerate(self.shapes)}


@functools.lru_cache(maxsize=16)
def tick_table(plan: Plan, capacity: int, channels: int, max_elements: int | None) -> TickTable:
    """The :class:`TickTable` of a pool of ``capacity`` slots of ``channels`` channels whose
    batched transforms hold at most ``max_elements`` values (``None``: no bound)."""
    shapes = plan.step_patterns.shapes
    which = plan.step_patterns.shape_of_task.astype(np.int64)
    tasks = np.bincount(which, minlength=len(shapes))
    lanes = np.zeros(len(shapes), np.int64)
    np.maximum.at(lanes, which, task_lanes(plan))
    batches, offsets, sizes, offset = [], [], [], 0
    for shape, n_tasks, lane in zip(shapes, tasks.tolist(), lanes.tolist(), strict=True):
        most = capacity * (lane + 1)  # rows are distinct within a lane
        spread = -(-capacity * n_tasks // plan.length)  # due per tick, slots spread evenly
        batch = min(_padded(spread), _padded(most))
        if max_elements is not None:  # the largest power of two that fits
            fits = max(1, max_elements // (channels * shape.fft_size))
            batch = min(batch, 1 << (fits.bit_length() - 1))
        size = -(-most // batch) * batch
        batches.append(batch)
        offsets.append(offset)
        sizes.append(size)
        offset += size
    return TickTable(tuple(shapes), tuple(batches), tuple(offsets), tuple(sizes))


def _pack(table: TickTable, groups: Sequence[TaskGroup]) -> tuple[np.ndarray, np.ndarray]:
    """The rows and sources of ``groups`` as the packed ``(entries, 2)`` table of ``table``
    (unused entries 0) and the count of each shape."""
    packed = np.zeros((max(table.entries, 1), 2), np.int32)
    counts = np.zeros(max(len(table.shapes), 1), np.int32)
    for group in groups:
        j = table.index[group.shape]
        at = table.offsets[j] + int(counts[j])
        packed[at : at + len(group), 0] = group.rows
        packed[at : at + len(group), 1] = group.src
        counts[j] += len(group)
    return packed, counts


@functools.partial(jax.jit, static_argnames=("table",), donate_argnums=0)
def _tasks(buf, spectra, packed, counts, *, table):  # type: ignore[no-untyped-def]
    """Every task of a step: for each shape, its rows due in batches (module docstring)."""
    for j, shape in enumerate(table.shapes):
        batch, offset = table.batches[j], table.offsets[j]

        def run(i, buf, j=j, shape=shape, batch=batch, offset=offset):  # type: ignore[no-untyped-def]
            entries = lax.dynamic_slice_in_dim(packed, offset + i * batch, batch, axis=0)
            live = i * batch + jnp.arange(batch) < counts[j]
            return _fill_body(buf, spectra[j], entries[:, 0], entries[:, 1], live, shape=shape)

        buf = lax.fori_loop(0, (counts[j] + batch - 1) // batch, run, buf)
    return buf


def _padded_rows(
    state: ConvState, rows: np.ndarray, u: Array, slots: np.ndarray, starts: np.ndarray
) -> tuple[int, Array, Array]:
    """The static window width of a call and its operands padded to a power of two: the
    rows, slots and starts as one ``(3, size)`` index array (one host-to-device transfer:
    each costs about 0.1 ms eagerly), and the inputs. Padding rows repeat the last row."""
    G = rows.shape[0]
    size = _padded(G)
    W = int(state.taps_reversed.shape[-1])
    width = W if W <= FIXED_WIDTH else min(_padded(int((slots - starts).max()) + 1), W)
    u_pad = jnp.pad(u, ((0, size - G), (0, 0)), mode="edge") if size > G else u
    index = np.stack([_pad_rows(a, size) for a in (rows, slots, starts)])
    return width, jnp.asarray(index.astype(np.int32)), u_pad


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
        width, index, u_pad = _padded_rows(state, rows, u, slots, starts)
        start, stop, _ = channels.indices(int(state.buffer.shape[1]))
        state.buffer, y = _emit(
            state.buffer, state.taps_reversed, index, u_pad, start, count=stop - start, width=width
        )
        return y[: rows.shape[0]]

    def fill_groups(
        self, state: ConvState, groups: Sequence[TaskGroup], *, max_elements: int | None = None
    ) -> None:
        """Every task of ``groups`` in one compiled program (see the module docstring)."""
        if not groups:
            return
        capacity, channels = int(state.buffer.shape[0]), int(state.buffer.shape[1])
        table = tick_table(state.plan, capacity, channels, max_elements)
        packed, counts = _pack(table, groups)
        spectra = tuple(state.spectra[shape.spectrum] for shape in table.shapes)
        state.buffer = _tasks(
            state.buffer, spectra, jnp.asarray(packed), jnp.asarray(counts), table=table
        )

    def fill_group(
        self, state: ConvState, shape: TaskShape, rows: np.ndarray, src: np.ndarray
    ) -> None:
        G = rows.shape[0]
        size = _padded(G)
        live = np.arange(size) < G
        state.buffer = _fill(
            state.buffer,
            state.spectra[shape.spectrum],
            jnp.asarray(_pad_rows(rows, size)),
            jnp.asarray(_pad_rows(src, size)),
            jnp.asarray(live),
            shape=shape,
        )
