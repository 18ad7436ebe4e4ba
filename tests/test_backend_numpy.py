"""NumPy executor specifics: the per-block accumulator fast path and its fallback."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from futurefill import OnlineConv, Plan, PlanSpec, interpreter, make_plan
from futurefill.plan import SCHEDULES
from futurefill_numpy import NumpyExecutor

from .conftest import decaying_filters, oracle

BLOCKED = {
    "naive": {},
    "epoched": {"epoch": 8},
    "continuous": {"direct_below": 8},
    "deadline": {"direct_below": 4},
    "reuse": {"direct_below": 2, "radix": 3},
}


def _mid_block_plan() -> Plan:
    """A valid plan whose second task writes output 2 inside the window block {1, 2} after
    that block has started (step 1): the accumulators are not final at the block's start."""
    return Plan.from_tasks(
        3,
        window_start=[0, 1, 1],
        tasks={
            "after_step": [0, 1],
            "src_start": [0, 0],
            "src_stop": [1, 1],
            "dst_start": [1, 2],
            "dst_stop": [2, 3],
        },
    )


def test_plans_of_make_plan_take_the_fast_path() -> None:
    ex = NumpyExecutor()
    for schedule in SCHEDULES:
        plan = make_plan(100, schedule=schedule, prompt=3)
        assert plan.tasks_start_windows
        state = interpreter.new_state(ex, plan, np.ones((1, 103)), batch=1, dtype=np.float64)
        assert ex.compile(state, np.tanh) is not None  # the hoisted rollout loop


def test_fallback_when_tasks_write_into_a_started_block(rng) -> None:
    plan = _mid_block_plan()
    assert not plan.tasks_start_windows
    ex = NumpyExecutor()
    phi = decaying_filters(rng, 2, 3)
    u = rng.standard_normal((1, 2, 3))
    state = interpreter.new_state(ex, plan, phi, batch=1, dtype=np.float64)
    assert ex.compile(state, np.tanh) is None  # no block copy: the generic loop
    got = [interpreter.step(ex, state, np.ascontiguousarray(u[..., t])) for t in range(3)]
    np.testing.assert_allclose(np.stack(got, -1), oracle(u, phi), rtol=0, atol=1e-13)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_block_copies_survive_reset_and_reload(rng, schedule: str) -> None:
    """The copied accumulators must follow reset() and a restored snapshot mid-block."""
    phi = decaying_filters(rng, 3, 40)
    u = rng.standard_normal((2, 3, 40))
    want = oracle(u, phi)
    conv = OnlineConv(phi, 40, schedule=schedule, batch=2, backend="numpy", **BLOCKED[schedule])
    for t in range(13):  # into the middle of a block
        conv.step(u[..., t].copy())
    saved = conv.state_dict()
    conv.reset()
    # Other inputs up to the same step, so the copy is of the *same* block, then rewind.
    for t in range(13):
        conv.step(u[..., t] + 1.0)
    conv.load_state_dict(saved)
    for t in range(13, 40):
        np.testing.assert_allclose(conv.step(u[..., t].copy()), want[..., t], rtol=0, atol=1e-12)


def test_reset_inside_the_first_block_forgets_the_copy(rng) -> None:
    P, L = 5, 24
    phi = decaying_filters(rng, 2, P + L)
    u = rng.standard_normal((1, 2, P + L))
    conv = OnlineConv(phi, L, prompt=P, backend="numpy", direct_below=8)
    conv.prefill(u[..., :P] * 3.0)  # another prompt: another cache
    for t in range(3):  # copy block 0's accumulators, stay inside block 0
        conv.step(u[..., P + t].copy())
    conv.reset()
    conv.prefill(u[..., :P])
    want = oracle(u, phi)[..., P:]
    for t in range(L):
        np.testing.assert_allclose(conv.step(u[..., P + t].copy()), want[..., t], atol=1e-12)


def test_device_is_the_cpu() -> None:
    assert NumpyExecutor(device="cpu").device is None
    with pytest.raises(ValueError, match="CPU"):
        NumpyExecutor(device="cuda")


def test_float32_rollout_stays_float32(rng) -> None:
    """The hoisted rollout loop writes its outputs in the state's dtype."""
    L = 48
    phi = decaying_filters(rng, 2, L).astype(np.float32) * np.float32(0.5)
    conv = OnlineConv(phi, L, batch=2, backend="numpy", direct_below=4)
    u0 = np.ones((2, 2), np.float32)
    ys = conv.rollout(u0, np.tanh)
    assert ys.dtype == np.float32 and ys.shape == (2, 2, L)
    inputs = np.concatenate([u0[..., None], np.tanh(ys[..., :-1])], axis=-1)
    want = oracle(inputs.astype(np.float64), phi.astype(np.float64))
    # float32 FFTs: ~1e-7 relative per level, a handful of levels at L = 48
    np.testing.assert_allclose(ys, want, rtol=0, atol=1e-5 * np.abs(want).max())


# ---------------------------------------------------------------------- deferred tasks
def _deadline(phi: np.ndarray, length: int, **kwargs) -> OnlineConv:
    spec = PlanSpec("deadline", direct_below=2, slack_from=4)
    return OnlineConv(phi, length, schedule=spec, backend="numpy", **kwargs)


def test_deadline_tasks_run_on_the_worker_and_stay_exact(rng) -> None:
    B, C, P, L = 2, 3, 5, 300
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((B, C, P + L))
    conv = _deadline(phi, L, prompt=P, batch=B)
    deferred, plan = conv.state.workspace.deferred, conv.plan
    slack = plan.dst_start - P - (plan.after_step + 1)
    assert deferred is not None and np.array_equal(deferred.defer, slack > 0)
    assert deferred.defer.any() and not deferred.defer.all()  # the levels below 4 run at once
    ys = [conv.prefill(u[..., :P])]
    ys += [conv.step(u[..., P + t].copy())[..., None] for t in range(L)]
    assert not deferred.pending  # the last outputs waited for everything due before them
    got = np.concatenate(ys, axis=-1)
    np.testing.assert_allclose(got, oracle(u, phi), rtol=0, atol=1e-12 * np.abs(got).max())


def test_tasks_due_later_stay_on_the_worker_where_transforms_are_shared(rng, monkeypatch) -> None:
    """In ``deadline`` an S x S tile due at once and a larger tile due later read the same
    block: the plan shares that forward transform, but the NumPy executor runs such steps
    task by task, so that the task due later still goes whole to the worker thread."""
    from futurefill_numpy.executor import NumpyExecutor

    phi = decaying_filters(rng, 2, 300)
    u = rng.standard_normal((1, 2, 300))
    conv = _deadline(phi, 300)
    plan, ws = conv.plan, conv.state.workspace
    assert plan.transforms.shares
    later = np.flatnonzero(ws.deferred.defer)
    assert np.any(~plan.transforms.fused[plan.after_step[later]])  # in steps that share
    seen: list[int] = []
    run_task = NumpyExecutor._run_task

    def spy(self, state, task: int) -> None:
        seen.append(task)
        run_task(self, state, task)

    monkeypatch.setattr(NumpyExecutor, "_run_task", spy)
    ys = [conv.step(u[..., t].copy()) for t in range(300)]
    assert set(later.tolist()) <= set(seen)
    np.testing.assert_allclose(np.stack(ys, -1), oracle(u, phi), rtol=0, atol=1e-12)


def test_snapshots_settle_the_deferred_work(rng) -> None:
    """A snapshot taken mid-step (some channels emitted) holds what the worker computed."""
    B, C, L = 1, 3, 200
    phi = decaying_filters(rng, C, L)
    u = rng.standard_normal((B, C, L))
    want = oracle(u, phi)
    conv = _deadline(phi, L, batch=B)
    for t in range(77):
        conv.step(u[..., t].copy())
    y0 = conv.emit(u[:, :1, 77].copy(), slice(0, 1))
    snapshot = conv.state_dict()
    assert (
        not conv.state.workspace.deferred.pending and not conv.state.workspace.deferred.later.any()
    )
    resumed = _deadline(phi, L, batch=B)
    resumed.load_state_dict(snapshot)
    for stream in (conv, resumed):
        y = stream.emit(u[:, 1:, 77].copy(), slice(1, None))
        stream.advance()
        np.testing.assert_allclose(np.concatenate([y0, y], 1), want[..., 77], atol=1e-12)
        for t in range(78, L):
            np.testing.assert_allclose(stream.step(u[..., t].copy()), want[..., t], atol=1e-12)
        stream.reset()  # with work pending: settled, then cleared
        for t in range(10):
            np.testing.assert_allclose(stream.step(u[..., t].copy()), want[..., t], atol=1e-12)


def test_pieces_add_into_the_worker_buffer_one_at_a_time(rng) -> None:
    """Two pieces may target the same values (tiles of one level overlap in their outputs)
    and run at once, one on the worker, one taken over by the stepping thread: a piece
    computes its transforms freely but adds only while holding the deferred work's lock."""
    from futurefill_numpy._deferred import _Piece

    block = rng.standard_normal((1, 2, 8))
    spectrum = np.fft.rfft(rng.standard_normal((2, 8)), 16, axis=-1)
    out = np.zeros((1, 2, 8))
    lock = threading.Lock()
    piece = _Piece(block, spectrum, 16, 0, out, lock)
    with lock:  # another piece adding
        thread = threading.Thread(target=piece)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and not out.any()  # transformed, waiting to add
    thread.join(10)
    want = np.fft.irfft(np.fft.rfft(block, 16, axis=-1) * spectrum, 16, axis=-1)[..., :8]
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-12)


def test_a_failing_deferred_task_is_reported(rng, monkeypatch: pytest.MonkeyPatch) -> None:
    import futurefill_numpy._deferred as deferred_work

    class BrokenFFT:
        def rfft(self, *args, **kwargs):
            raise FloatingPointError("broken FFT")

        irfft = rfft

    phi = decaying_filters(rng, 2, 40)
    conv = _deadline(phi, 40)
    monkeypatch.setattr(deferred_work, "_threaded_fft", BrokenFFT())
    with pytest.raises(FloatingPointError, match="broken FFT"):
        for _ in range(40):
            conv.step(np.ones((1, 2)))
    assert not conv.state.workspace.deferred.pending


def test_without_a_threaded_fft_tasks_run_in_step(rng, monkeypatch: pytest.MonkeyPatch) -> None:
    import futurefill_numpy._deferred as deferred_work

    monkeypatch.setattr(deferred_work, "_threaded_fft", None)
    phi = decaying_filters(rng, 2, 64)
    u = rng.standard_normal((1, 2, 64))
    conv = _deadline(phi, 64)
    assert conv.state.workspace.deferred is None
    np.testing.assert_allclose(conv.run(u), oracle(u, phi), atol=1e-12)


def test_continuous_defers_nothing() -> None:
    conv = OnlineConv(np.ones((1, 64)), 64, backend="numpy", direct_below=2)
    assert conv.state.workspace.deferred is None  # every task due at the next step
