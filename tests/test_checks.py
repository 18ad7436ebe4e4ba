"""The exactness proof (:func:`futurefill.plan.checks.validate_plan`): every check refuses
the plan it is there for, names what is wrong, and accepts plans at its limit.

Each broken plan breaks one invariant of a plan that validates, so the check that must fire
is the first one that can.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from futurefill import Plan, PlanError, make_plan
from futurefill.plan import TASK_COLUMNS
from futurefill.plan.checks import validate_plan

STORED_TASK_COLUMNS = TASK_COLUMNS[1:]  # after_step is derived from task_ptr


def _with(plan: Plan, **changes: object) -> Plan:
    """``plan`` with fields replaced and nothing checked."""
    return dataclasses.replace(plan, **changes)


def _set(plan: Plan, column: str, index: int, value: int) -> np.ndarray:
    """A writable copy of ``plan.column`` with one entry changed."""
    arr = np.array(getattr(plan, column))
    arr[index] = value
    return arr


def _refused(plan: Plan, match: str) -> None:
    with pytest.raises(PlanError, match=match):
        validate_plan(plan)


# ---------------------------------------------------------------------- the tables
def test_table_shapes() -> None:
    plan = make_plan(16)
    _refused(_with(plan, window_start=plan.window_start[:-1]), "window_start must have")
    _refused(_with(plan, task_ptr=plan.task_ptr[:-1]), "window_start must have")


def test_task_ptr_bounds() -> None:
    plan = make_plan(16)  # no task after the last step: task_ptr[-2] == task_ptr[-1]
    _refused(_with(plan, task_ptr=_set(plan, "task_ptr", 0, 1)), "start at 0 and end")
    last = plan.num_tasks + 1
    _refused(_with(plan, task_ptr=_set(plan, "task_ptr", -1, last)), "start at 0 and end")


def test_task_ptr_must_not_decrease() -> None:
    plan = make_plan(16)
    _refused(_with(plan, task_ptr=_set(plan, "task_ptr", 2, 4)), "non-decreasing")


def test_window_inside_the_kept_inputs() -> None:
    plan = make_plan(16, direct_below=4)
    late = _set(plan, "window_start", 5, 6)  # step 5 (output 5) starts its window at 6
    _refused(_with(plan, window_start=late), "starts after its step")
    prompted = make_plan(8, prompt=3)  # inputs below 3 are dropped at prefill
    early = _set(prompted, "window_start", 0, 2)
    _refused(_with(prompted, window_start=early), "before the kept inputs")


@pytest.mark.parametrize(("prompt", "origin"), [(3, 1), (1, -1)])
def test_a_prompt_is_kept_or_filled_ahead(prompt: int, origin: int) -> None:
    """Part of the prompt kept (origin between 0 and the prompt) is refused."""
    plan = make_plan(4, schedule="naive", prompt=prompt)  # windows from 0: origin 0 kept
    starts = np.maximum(plan.window_start, origin)  # inside the kept inputs
    _refused(_with(plan, origin=origin, window_start=starts), r"must be kept \(origin 0\)")


@pytest.mark.parametrize(("schedule", "prompt"), [("continuous", 1), ("continuous", 5)])
def test_prefill_fft_filled_ahead(schedule: str, prompt: int) -> None:
    """Filling the future of all ``L`` outputs needs ``2P + L - 1`` points."""
    plan = make_plan(6, schedule=schedule, prompt=prompt)
    need = 2 * prompt + 6 - 1
    validate_plan(_with(plan, prefill_fft_size=need))
    _refused(_with(plan, prefill_fft_size=need - 1), "prefill FFT is too short")


@pytest.mark.parametrize("prompt", [1, 5])
def test_prefill_fft_kept_prompt(prompt: int) -> None:
    """A kept prompt only needs its own outputs: ``2P - 1`` points."""
    plan = make_plan(6, schedule="naive", prompt=prompt)
    validate_plan(_with(plan, prefill_fft_size=2 * prompt - 1))
    _refused(_with(plan, prefill_fft_size=2 * prompt - 2), "prefill FFT is too short")


# ---------------------------------------------------------------------- the tasks
# make_plan(16, prompt=3), task 3 runs after step 3: inputs 3..6 -> outputs 7..10, taps 1..7.
def _task3() -> tuple[Plan, tuple[int, ...]]:
    plan = make_plan(16, prompt=3)
    return plan, tuple(int(v) for v in plan.tasks()[3])


def test_task3_is_what_the_tests_below_assume() -> None:
    plan, row = _task3()
    assert row == (3, 3, 7, 7, 11, 1, 8, 8)
    validate_plan(plan)


@pytest.mark.parametrize(
    ("column", "value"),
    [("src_stop", 3), ("dst_stop", 7), ("src_stop", 2), ("dst_stop", 6)],
)
def test_empty_source_or_target(column: str, value: int) -> None:
    plan, _ = _task3()
    _refused(_with(plan, **{column: _set(plan, column, 3, value)}), "non-empty source and target")


def test_writing_a_returned_output() -> None:
    plan, _ = _task3()  # after step 3, output 3 + 3 = 6 was returned
    _refused(_with(plan, dst_start=_set(plan, "dst_start", 3, 6)), "already returned")


def test_reaching_outside_the_kept_positions() -> None:
    plan, _ = _task3()
    _refused(_with(plan, src_start=_set(plan, "src_start", 3, 2)), "outside the kept positions")
    _refused(_with(plan, dst_stop=_set(plan, "dst_stop", 3, 20)), "outside the kept positions")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("filter_start", -1),  # lags start at 0
        ("filter_start", 2),  # lag c - (b - 1) = 1 is needed
        ("filter_stop", 7),  # lag (d - 1) - a = 7 is needed
    ],
)
def test_filter_slice_misses_taps(column: str, value: int) -> None:
    plan, _ = _task3()
    _refused(_with(plan, **{column: _set(plan, column, 3, value)}), "misses taps")


def test_filter_slice_from_tap_0() -> None:
    """A slice may start at tap 0 (a custom plan may not know the smallest lag)."""
    plan, _ = _task3()
    lo = _set(plan, "filter_start", 3, 0)
    n = _set(plan, "fft_size", 3, 16)
    validate_plan(_with(plan, filter_start=lo, fft_size=n))


def test_filter_slice_longer_than_filters_or_fft() -> None:
    plan, _ = _task3()
    hi = _set(plan, "filter_stop", 3, 20)  # the filters have prompt + length = 19 taps
    n = _set(plan, "fft_size", 3, 32)
    _refused(_with(plan, filter_stop=hi, fft_size=n), "longer than the filters or its FFT")
    _refused(_with(plan, fft_size=_set(plan, "fft_size", 3, 6)), "longer than the filters")


def test_fft_size_at_its_limit() -> None:
    """FFT size ``hi - lo`` is exact (its wrap-around only reaches outputs no task reads)."""
    plan, row = _task3()
    lo, hi = row[5], row[6]
    validate_plan(_with(plan, fft_size=_set(plan, "fft_size", 3, hi - lo)))


# ---------------------------------------------------------------------- coverage
def test_missing_first_inputs_name_the_output() -> None:
    plan = make_plan(16)  # the task after step 3 adds inputs 0..3 to outputs 4..7
    keep = np.arange(plan.num_tasks) != 3
    ptr = np.array(plan.task_ptr)
    ptr[4:] -= 1
    cols = {c: getattr(plan, c)[keep] for c in STORED_TASK_COLUMNS}
    _refused(
        _with(plan, task_ptr=ptr, **cols), r"^output 4: input 0 is never added \(inputs missing\)$"
    )


def test_inputs_beyond_a_task_name_the_output() -> None:
    """Windows from 0 overlap every task: the first output that has a task is named, with
    the first input counted twice."""
    plan = make_plan(16, schedule="epoched", epoch=4)
    bad = _with(plan, window_start=np.zeros(16, np.int32))
    _refused(bad, r"^output 4: input 0 is counted twice or more \(2 times\)$")


@pytest.mark.parametrize(
    ("start", "message"),
    [(3, r"input 3 is counted twice or more \(2 times\)"), (5, "input 4 is never added")],
)
def test_gaps_and_overlaps_name_the_output_and_input(start: int, message: str) -> None:
    """Output 5 gets inputs 0..3 from the task after step 3 and 4..5 from its window."""
    plan = make_plan(16, direct_below=4)
    bad = _with(plan, window_start=_set(plan, "window_start", 5, start))
    _refused(bad, f"^output 5: {message}")
