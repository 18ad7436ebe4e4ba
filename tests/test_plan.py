"""Plans: exactly-once coverage, causality, caching, cost and the worked schedule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from futurefill import Plan, PlanError, PlanSpec, make_plan
from futurefill.plan import SCHEDULES, TASK_COLUMNS, default_epoch

LENGTHS = [1, 2, 3, 5, 16, 17, 100, 1000, 4097]
STORED_TASK_COLUMNS = TASK_COLUMNS[1:]  # after_step is derived from task_ptr


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("prompt", [0, 1, 7])
def test_every_plan_validates(schedule: str, length: int, prompt: int) -> None:
    make_plan(length, schedule=schedule, prompt=prompt).validate()


@settings(max_examples=150, deadline=None)
@given(
    length=st.integers(1, 600),
    prompt=st.integers(0, 50),
    log_direct=st.integers(0, 9),
)
def test_continuous_coverage_property(length: int, prompt: int, log_direct: int) -> None:
    plan = make_plan(length, schedule="continuous", prompt=prompt, direct_below=1 << log_direct)
    plan.validate()
    # Brute-force cross-check of the tiling on the full (input, output) grid.
    assert _coverage_matrix(plan).max() == 1


@settings(max_examples=150, deadline=None)
@given(length=st.integers(1, 600), prompt=st.integers(0, 50), epoch=st.integers(1, 700))
def test_epoched_coverage_property(length: int, prompt: int, epoch: int) -> None:
    plan = make_plan(length, schedule="epoched", prompt=prompt, epoch=epoch)
    plan.validate()
    assert _coverage_matrix(plan).max() == 1


def _coverage_matrix(plan: Plan) -> np.ndarray:
    """Independent O(T^2) count of how often each (output j, input s) pair is added."""
    T, P = plan.total, plan.prompt
    cover = np.zeros((T, T), dtype=np.int64)
    if P:
        cover[:P, :P] += np.tril(np.ones((P, P), dtype=np.int64))
        if plan.prefill_fills_future:
            cover[P:, :P] += 1
    for t in range(plan.length):
        j = P + t
        cover[j, plan.window_start[t] : j + 1] += 1
    for a, b, c, d in zip(
        plan.src_start, plan.src_stop, plan.dst_start, plan.dst_stop, strict=True
    ):
        cover[c:d, a:b] += 1
    lower = np.tril(np.ones((T, T), dtype=bool))
    assert np.all(cover[lower] == 1), "some pair (s <= j) is not covered exactly once"
    assert np.all(cover[~lower] == 0), "a future input is used"
    return cover


def test_worked_schedule_l16() -> None:
    """docs/algorithm.md, continuous: after step t the block of size lowbit(t+1) is filled."""
    plan = make_plan(16, schedule="continuous")
    rows = [tuple(int(v) for v in r[:5]) for r in plan.tasks()]
    assert rows[:7] == [
        (0, 0, 1, 1, 2),
        (1, 0, 2, 2, 4),
        (2, 2, 3, 3, 4),
        (3, 0, 4, 4, 8),
        (4, 4, 5, 5, 6),
        (5, 4, 6, 6, 8),
        (6, 6, 7, 7, 8),
    ]
    assert rows[7] == (7, 0, 8, 8, 16)
    assert [r[0] for r in rows] == list(range(15))  # nothing after t = 15: beyond L
    assert plan.spectrum_keys == ((1, 2, 2), (1, 4, 4), (1, 8, 8), (1, 16, 16))


def test_direct_below_moves_small_blocks_into_the_window() -> None:
    plan = make_plan(64, schedule="continuous", direct_below=8)
    assert plan.fft_size.min() == 16  # blocks of size >= 8, FFT size 2k
    assert plan.window_length == 8
    assert list(plan.window_start[:10]) == [0] * 8 + [8, 8]


def test_prompt_shifts_positions_and_drops_prompt_inputs() -> None:
    plan = make_plan(8, schedule="continuous", prompt=5)
    assert plan.origin == 5 and plan.buffer_length == 8 and plan.prefill_fills_future
    assert plan.src_start.min() >= 5
    naive = make_plan(8, schedule="naive", prompt=5)
    assert naive.origin == 0 and naive.buffer_length == 13 and not naive.prefill_fills_future


def test_epoched_default_is_reported() -> None:
    plan = make_plan(1000, schedule="epoched")
    assert plan.spec.get("epoch") == default_epoch(1000) == 99
    assert "default" in str(plan)
    assert "default" not in str(make_plan(1000, schedule="epoched", epoch=99))
    assert len(make_plan(1000, schedule="epoched").spectrum_keys) == 1


def test_equal_arguments_give_the_same_plan() -> None:
    a = make_plan(100, schedule="epoched", prompt=3, epoch=10)
    assert a is make_plan(100, schedule="epoched", prompt=3, epoch=10)
    assert a == make_plan(100, schedule="epoched", prompt=3, epoch=10)
    assert a != make_plan(100, schedule="epoched", prompt=3, epoch=11)
    assert hash(a) == hash(make_plan(100, schedule="epoched", prompt=3, epoch=10))


def test_plan_is_read_only() -> None:
    plan = make_plan(32)
    with pytest.raises(ValueError, match="read-only"):
        plan.src_start[0] = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.length = 3  # type: ignore[misc]


def test_large_plan_is_compact() -> None:
    plan = make_plan(1 << 20, schedule="continuous")
    columns = ["window_start", "task_ptr", *STORED_TASK_COLUMNS]
    assert sum(getattr(plan, c).nbytes for c in columns) < 48 * 2**20
    assert plan.num_tasks == (1 << 20) - 1


# ---------------------------------------------------------------------- validate can fail
def _broken(plan: Plan, **columns: np.ndarray) -> Plan:
    return dataclasses.replace(plan, **columns)


def test_validate_detects_a_missing_task() -> None:
    plan = make_plan(16)
    ptr = np.array(plan.task_ptr)
    ptr[4:] -= 1  # drop the task after step 3
    cols = {c: np.delete(getattr(plan, c), 3) for c in STORED_TASK_COLUMNS}
    with pytest.raises(PlanError, match="inputs"):
        _broken(plan, task_ptr=ptr, **cols).validate()


def test_validate_detects_double_counting() -> None:
    plan = make_plan(16, schedule="epoched", epoch=4)
    with pytest.raises(PlanError, match=r"twice|beyond"):
        _broken(plan, window_start=np.zeros(16, np.int32)).validate()


def test_validate_detects_reading_the_future() -> None:
    plan = make_plan(16)
    src_stop = np.array(plan.src_stop)
    src_stop[3] += 1
    with pytest.raises(PlanError, match="not known"):
        _broken(plan, src_stop=src_stop).validate()


def test_validate_detects_a_short_fft() -> None:
    plan = make_plan(16)
    with pytest.raises(PlanError, match=r"FFT is too short|filter slice"):
        _broken(plan, fft_size=np.asarray(plan.fft_size) // 2).validate()


# ---------------------------------------------------------------------- cost
def test_cost_orders_the_schedules() -> None:
    L = 4096
    naive, epoched, cont = (
        make_plan(L, schedule=s).cost(channels=8) for s in ("naive", "epoched", "continuous")
    )
    assert naive.online_flops == pytest.approx(8 * L * (L + 1))  # 2 FLOPs per tap, t+1 taps
    assert cont.online_flops < epoched.online_flops < naive.online_flops
    assert naive.state_values == cont.state_values == 8 * L
    assert cont.worst_step == L // 2 - 1  # the largest block, t + 1 = L/2
    text = str(cont)
    assert "FFT size" in text and "worst step" in text and str(L) in text


def test_prompt_cost_keeps_only_the_future() -> None:
    cost = make_plan(4096, schedule="continuous", prompt=65536).cost(channels=256)
    assert cost.state_values == 4096 * 256
    naive = make_plan(4096, schedule="naive", prompt=65536).cost(channels=256)
    assert naive.state_values == (65536 + 4096) * 256


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"length": 0}, ValueError),
        ({"length": 2.5}, TypeError),
        ({"length": 8, "prompt": -1}, ValueError),
        ({"length": 8, "schedule": "dyadic"}, ValueError),
        ({"length": 8, "schedule": "naive", "epoch": 3}, ValueError),
        ({"length": 8, "schedule": "epoched", "epoch": 0}, ValueError),
        ({"length": 8, "direct_below": 3}, ValueError),
        ({"length": 8, "schedule": "epoched", "direct_below": 4}, ValueError),
        ({"length": 1 << 30, "prompt": 1}, ValueError),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception]) -> None:
    length = kwargs.pop("length")
    with pytest.raises(error):
        make_plan(length, **kwargs)


def test_task_offsets_are_buffer_slots() -> None:
    plan = make_plan(16, schedule="continuous", prompt=5)
    task = plan.task_offsets(3)  # after step 3: inputs 0..3 -> outputs 4..7 (online positions)
    assert (task.src_start, task.src_stop, task.dst_start, task.dst_stop) == (0, 4, 4, 8)
    assert task.read_start == 4 - 0 - 1 and task.spectrum == (1, 8, 8) and task.fft_size == 8


def test_plans_and_specs_pickle() -> None:
    import pickle

    plan = make_plan(50, PlanSpec("epoched", epoch=7), prompt=3)
    again = pickle.loads(pickle.dumps(plan))
    assert again == plan and again.spec == plan.spec and again.spec.get("epoch") == 7
    np.testing.assert_array_equal(again.src_start, plan.src_start)
