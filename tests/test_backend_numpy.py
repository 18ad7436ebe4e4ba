"""NumPy executor specifics: the per-block accumulator fast path and its fallback."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from futurefill import make_plan
from futurefill.plan import SCHEDULES
from futurefill_numpy import NumpyExecutor

from .conftest import decaying_filters, oracle


def _run(executor: NumpyExecutor, plan, phi: np.ndarray, u: np.ndarray) -> np.ndarray:
    state = executor.prepare(plan, phi, batch=u.shape[0], dtype=np.float64)
    ys = []
    for t in range(plan.length):
        ys.append(executor.emit(state, np.ascontiguousarray(u[..., t]), slice(None)))
        executor.advance(state)
    return np.stack(ys, axis=-1)


def _mid_block_plan():
    """A valid plan whose second task writes output 2 inside the window block {1, 2} after
    that block has started (step 1): the accumulators are not final at the block's start."""
    base = make_plan(3, schedule="continuous")  # any 3-step plan, columns replaced below
    plan = dataclasses.replace(
        base,
        window_start=np.array([0, 1, 1], np.int32),
        task_ptr=np.array([0, 1, 2, 2], np.int32),
        src_start=np.array([0, 0], np.int32),
        src_stop=np.array([1, 1], np.int32),
        dst_start=np.array([1, 2], np.int32),
        dst_stop=np.array([2, 3], np.int32),
        filter_start=np.array([1, 1], np.int32),
        filter_stop=np.array([2, 3], np.int32),
        fft_size=np.array([2, 4], np.int32),
    )
    plan.validate()
    return plan


def test_plans_of_make_plan_take_the_fast_path() -> None:
    for schedule in SCHEDULES:
        plan = make_plan(100, schedule=schedule, prompt=3)
        assert plan.tasks_start_windows
        state = NumpyExecutor().prepare(plan, np.ones((1, 103)), batch=1, dtype=np.float64)
        assert state.extra["fast"]


def test_fallback_when_tasks_write_into_a_started_block(rng) -> None:
    plan = _mid_block_plan()
    assert not plan.tasks_start_windows
    phi = decaying_filters(rng, 2, 3)
    u = rng.standard_normal((1, 2, 3))
    got = _run(NumpyExecutor(), plan, phi, u)
    np.testing.assert_allclose(got, oracle(u, phi), rtol=0, atol=1e-13)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_block_copies_survive_reset_and_reload(rng, schedule: str) -> None:
    """The copied accumulators must follow reset() and a replaced buffer mid-block."""
    ex = NumpyExecutor()
    plan = make_plan(
        40,
        schedule=schedule,
        prompt=0,
        **(
            {"epoch": 8}
            if schedule == "epoched"
            else {"direct_below": 8}
            if schedule == "continuous"
            else {}
        ),
    )
    phi = decaying_filters(rng, 3, 40)
    u = rng.standard_normal((2, 3, 40))
    want = oracle(u, phi)
    state = ex.prepare(plan, phi, batch=2, dtype=np.float64)
    for t in range(13):  # into the middle of a block
        ex.emit(state, u[..., t].copy(), slice(None))
        ex.advance(state)
    saved, step = state.buffer.copy(), state.step
    ex.reset(state)
    # Other inputs up to the same step, so the copy is of the *same* block, then rewind by
    # replacing the buffer: only the buffer's identity tells the copy is stale.
    for t in range(13):
        ex.emit(state, u[..., t] + 1.0, slice(None))
        ex.advance(state)
    state.buffer, state.step = saved, step
    for t in range(13, 40):
        y = ex.emit(state, u[..., t].copy(), slice(None))
        ex.advance(state)
        np.testing.assert_allclose(y, want[..., t], rtol=0, atol=1e-12)


def test_reset_inside_the_first_block_forgets_the_copy(rng) -> None:
    ex = NumpyExecutor()
    P, L = 5, 24
    plan = make_plan(L, schedule="continuous", prompt=P, direct_below=8)
    phi = decaying_filters(rng, 2, P + L)
    u = rng.standard_normal((1, 2, P + L))
    state = ex.prepare(plan, phi, batch=1, dtype=np.float64)
    ex.prefill(state, u[..., :P] * 3.0, slice(None))  # another prompt: another cache
    for t in range(3):  # copy block 0's accumulators, stay inside block 0
        ex.emit(state, u[..., P + t].copy(), slice(None))
        ex.advance(state)
    ex.reset(state)
    ex.prefill(state, u[..., :P], slice(None))
    want = oracle(u, phi)[..., P:]
    for t in range(L):
        y = ex.emit(state, u[..., P + t].copy(), slice(None))
        ex.advance(state)
        np.testing.assert_allclose(y, want[..., t], rtol=0, atol=1e-12)
