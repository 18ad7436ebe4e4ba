"""The batched kernels of a stream pool against a per-row loop of the single-stream kernels.

For random rows, slots, window starts and task sources, :meth:`GroupedKernels.emit_rows` and
:meth:`GroupedKernels.fill_group` must give the same results with ``fancy_indexing`` on (one
integer-array gather and scatter) and off (one slice per row), and both must equal a loop over
the rows of :meth:`ArrayAPIExecutor.emit` (one row as a batch of one) and
:func:`futurefill.ops.fill_future` added at each row's own target. Rows not named are left
untouched, bit for bit, and so is everything outside each row's target.

The loop and the batched kernel sum the window in different orders and run FFTs over
different batch shapes, so their float64 results agree to rounding: 1e-12 of the largest
|value| (a few ulps per FFT round trip of length <= 64, as in ``test_pool.py``). Stored inputs
are copies and compared exactly, as are the two ``fancy_indexing`` variants of one kernel.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest

from futurefill import interpreter, make_plan, ops
from futurefill.executor import ArrayAPIExecutor, Executor
from futurefill.state import ConvState

from .conftest import decaying_filters

C, L, ROWS = 3, 40, 6
TOL = 1e-12
EMIT_PLANS = [("naive", {}), ("continuous", {"direct_below": 4})]  # windows of L and of 4
FILL_PLANS = [("continuous", {"direct_below": 1}), ("epoched", {"epoch": 5})]  # have tasks


def cases(ex: Executor, many: int) -> int:
    """Random cases per test: JAX compiles every new shape eagerly, so it gets one."""
    return 1 if ex.name == "jax" else many


def host(ex: Executor, x: Any) -> np.ndarray:
    return np.asarray(ex.to_numpy(x), dtype=np.float64)


def variants(ex: Executor) -> list[Executor]:
    """``ex`` with ``fancy_indexing`` off, and on when its namespace declares it."""
    flags = [False, True] if type(ex).fancy_indexing else [False]
    out = []
    for flag in flags:
        each = copy.copy(ex)
        each.fancy_indexing = flag  # type: ignore[misc]
        out.append(each)
    return out


def pool_state(ex: Executor, rng: np.random.Generator, plan_args: tuple) -> ConvState:
    """A state of ``ROWS`` rows of ``plan_args``' plan (each case sets its own buffer)."""
    plan = make_plan(L, plan_args[0], **plan_args[1])
    phi = decaying_filters(rng, C, L)
    state = interpreter.new_state(
        ex, plan, phi, batch=ROWS, dtype=ex.resolve_dtype("float64"), prepare=False
    )
    return state


def with_buffer(ex: Executor, state: ConvState, buffer: np.ndarray) -> ConvState:
    """``state`` sharing filters and spectra, with its own copy of ``buffer``."""
    return dataclasses.replace(state, buffer=ex.asarray(buffer.copy(), dtype="float64"))


def check_close(got: np.ndarray, want: np.ndarray) -> None:
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * scale)


def emit_case(rng: np.random.Generator, state: ConvState) -> tuple:
    """Random distinct rows (unsorted), slots, window starts and a channel range."""
    G = int(rng.integers(1, ROWS + 1))
    rows = rng.permutation(ROWS)[:G].astype(np.int64)
    W = int(state.taps_reversed.shape[-1])
    slots = rng.integers(0, state.buffer.shape[-1], G).astype(np.int64)
    widths = rng.integers(1, W + 1, G)
    starts = np.maximum(slots - widths + 1, 0).astype(np.int64)
    a = int(rng.integers(0, C))
    return rows, slots, starts, slice(a, int(rng.integers(a + 1, C + 1)))


@pytest.mark.parametrize("plan_args", EMIT_PLANS, ids=lambda p: p[0])
def test_emit_rows_equals_a_loop_of_single_stream_emits(backend, rng, plan_args):
    state = pool_state(backend, rng, plan_args)
    for _ in range(cases(backend, 4)):
        buffer = rng.standard_normal(state.buffer.shape)
        rows, slots, starts, ch = emit_case(rng, state)
        u = rng.standard_normal((rows.size, ch.stop - ch.start))
        want_y = np.empty_like(u)
        want_buffer = buffer.copy()
        for g, r in enumerate(rows.tolist()):
            one = with_buffer(backend, state, buffer[r : r + 1])
            u_g = backend.asarray(u[g : g + 1], dtype="float64")
            y = ArrayAPIExecutor.emit(backend, one, u_g, ch, int(slots[g]), int(starts[g]))  # type: ignore[arg-type]
            want_y[g] = host(backend, y)[0]
            want_buffer[r] = host(backend, one.buffer)[0]
        results = []
        for ex in variants(backend):
            mine = with_buffer(ex, state, buffer)
            y = ex.emit_rows(mine, rows, ex.asarray(u, dtype="float64"), ch, slots, starts)
            results.append((host(ex, y), host(ex, mine.buffer)))
            check_close(results[-1][0], want_y)
            np.testing.assert_array_equal(results[-1][1], want_buffer)  # inputs stored, exact
        for y, buf in results[1:]:
            np.testing.assert_array_equal(y, results[0][0])
            np.testing.assert_array_equal(buf, results[0][1])


@pytest.mark.parametrize("plan_args", FILL_PLANS, ids=lambda p: p[0])
def test_fill_group_equals_a_loop_of_fill_future(backend, rng, plan_args):
    state = pool_state(backend, rng, plan_args)
    shapes = state.plan.step_patterns.shapes
    N = int(state.buffer.shape[-1])
    for k in rng.permutation(len(shapes))[: cases(backend, len(shapes))].tolist():
        shape = shapes[k]
        buffer = rng.standard_normal(state.buffer.shape)
        G = int(rng.integers(1, ROWS + 1))
        rows = rng.permutation(ROWS)[:G].astype(np.int64)
        room = N - max(shape.src_length, shape.shift + shape.dst_length)
        src = rng.integers(0, room + 1, G).astype(np.int64)
        want = buffer.copy()
        spectrum = state.spectra[shape.spectrum]
        r0 = shape.read_start
        for r, a in zip(rows.tolist(), src.tolist(), strict=True):
            block = backend.asarray(buffer[r, :, a : a + shape.src_length], dtype="float64")
            z = ops.fill_future(block, spectrum, shape.fft_size, r0, r0 + shape.dst_length)
            b = a + shape.shift
            want[r, :, b : b + shape.dst_length] += host(backend, z)
        results = []
        for ex in variants(backend):
            mine = with_buffer(ex, state, buffer)
            ex.fill_group(mine, shape, rows, src)
            results.append(host(ex, mine.buffer))
            check_close(results[-1], want)
            untouched = np.ones(buffer.shape, bool)
            for r, a in zip(rows.tolist(), src.tolist(), strict=True):
                untouched[r, :, a + shape.shift : a + shape.shift + shape.dst_length] = False
            np.testing.assert_array_equal(results[-1][untouched], buffer[untouched])
        for got in results[1:]:
            np.testing.assert_array_equal(got, results[0])
