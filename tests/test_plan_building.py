"""Building plans: the proof of exact coverage from corners, its cost, and refused tables."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from futurefill import Plan, PlanError, make_plan, memory
from futurefill.plan import TASK_COLUMNS, register_schedule, schedule_info
from futurefill.plan import registry as registry_module
from futurefill.plan.schedules.deadline import _max_tasks

STORED = TASK_COLUMNS[1:]


def _counts(plan: Plan) -> np.ndarray:
    """Independent count of how often each (output j, input s) pair of the online outputs is
    added by the prefill, the windows and the tasks (rows: outputs ``prompt ..``)."""
    T, P = plan.total, plan.prompt
    cover = np.zeros((T, T), dtype=np.int64)
    if plan.prefill_fills_future:
        cover[P:, :P] += 1
    for t in range(plan.length):
        cover[P + t, plan.window_start[t] : P + t + 1] += 1
    for a, b, c, d in zip(
        plan.src_start, plan.src_stop, plan.dst_start, plan.dst_stop, strict=True
    ):
        cover[c:d, a:b] += 1
    return cover[P:]


def _first_wrong(plan: Plan) -> tuple[int, int, int] | None:
    """``(output, input, times)`` of the first pair (by output, then input) not added once."""
    cover, P = _counts(plan), plan.prompt
    for row, counts in enumerate(cover):
        j = P + row
        wrong = np.flatnonzero(counts[: j + 1] != 1)
        if wrong.size:
            return j, int(wrong[0]), int(counts[wrong[0]])
    return None


def _with_moved_task(plan: Plan, task: int, column: str, by: int) -> Plan:
    values = np.array(getattr(plan, column))
    values[task] += by
    return dataclasses.replace(plan, **{column: values})


@settings(max_examples=120, deadline=None)
@given(
    schedule=st.sampled_from(["continuous", "deadline", "reuse", "epoched"]),
    length=st.integers(2, 70),
    prompt=st.integers(0, 9),
    column=st.sampled_from(["src_start", "src_stop", "dst_start", "dst_stop", "window_start"]),
    pick=st.integers(0, 10**6),
    by=st.sampled_from([-2, -1, 1, 2]),
)
def test_the_proof_agrees_with_counting_every_pair(
    schedule: str, length: int, prompt: int, column: str, pick: int, by: int
) -> None:
    """A table shifted by one or two: the proof fails exactly when some pair is not added
    once, and names the first such pair (by output, then input) with its count."""
    plan = make_plan(length, schedule, prompt=prompt)
    size = plan.length if column == "window_start" else plan.num_tasks
    if size == 0:
        return
    broken = _with_moved_task(plan, pick % size, column, by)
    try:  # only tables that pass the causality checks reach the coverage proof
        from futurefill.plan.checks import _check_tables, _check_tasks

        _check_tables(broken)
        _check_tasks(broken)
    except PlanError:
        return
    wrong = _first_wrong(broken)
    if wrong is None:
        broken.validate()
        return
    j, s, times = wrong
    with pytest.raises(PlanError, match=rf"^output {j}: input {s} is ") as info:
        broken.validate()
    assert (f"({times} times)" in str(info.value)) == (times > 1)
    assert ("never added" in str(info.value)) == (times == 0)


@pytest.fixture
def fresh_plans() -> Iterator[None]:
    """An empty plan cache, so that every make_plan builds."""
    registry_module._build.cache_clear()
    yield
    registry_module._build.cache_clear()


@pytest.mark.parametrize(
    ("schedule", "params"),
    [
        ("continuous", {}),
        ("deadline", {}),
        ("deadline", {"slack_from": 1}),
        ("deadline", {"direct_below": 4, "slack_from": 8}),
        ("reuse", {}),
        ("epoched", {}),
        ("naive", {}),
    ],
)
@pytest.mark.parametrize("length", [3000, 2**14 + 5])
def test_building_a_plan_stays_within_its_estimate(fresh_plans, schedule, params, length) -> None:
    """The estimate make_plan checks bounds what building, proving and deriving the transform
    program allocate (NumPy reports its arrays to tracemalloc)."""
    tracemalloc.start()
    try:
        plan = make_plan(length, schedule, prompt=3, **params)
        plan.validate()  # proved again, the transform program checked too
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    info = schedule_info(schedule)
    bound = memory.plan_bytes(length, info.max_tasks(length, 3, **dict(plan.spec.params)))
    assert plan.num_tasks <= info.max_tasks(length, 3, **dict(plan.spec.params))
    assert peak <= bound, (peak, bound)


def test_the_proof_is_refused_a_plan_larger_than_the_limit(fresh_plans) -> None:
    memory.set_memory_limit(8 << 20)
    try:
        with pytest.raises(MemoryError, match="a plan of 65536 steps"):
            make_plan(2**16, "deadline", slack_from=1)
    finally:
        memory.set_memory_limit(None)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 16, 17, 100, 1000, 1024, 4097])
def test_the_deadline_task_count_is_exact(length: int) -> None:
    for k0, slack in [(1, 1), (1, 2), (1, 512), (2, 4), (8, 8), (8, 64), (16, 4)]:
        plan = make_plan(length, "deadline", direct_below=k0, slack_from=slack)
        assert plan.num_tasks == _max_tasks(length, k0, slack)


# ---------------------------------------------------------------------- refused tables
def test_values_beyond_int32_are_refused_not_wrapped() -> None:
    one = {"after_step": [0], "src_start": [0], "src_stop": [1], "dst_start": [1], "dst_stop": [2]}
    for name in ("dst_start", "dst_stop", "src_stop"):
        tasks = dict(one, **{name: [one[name][0] + 2**32]})
        with pytest.raises(PlanError, match=rf"task column '{name}' holds 42949672"):
            Plan.from_tasks(4, window_start=np.arange(4), tasks=tasks, validate=False)
    with pytest.raises(PlanError, match="window_start holds 4294967299"):
        Plan.from_tasks(4, window_start=np.arange(4) + 2**32)
    with pytest.raises(PlanError, match="'fft_size' holds 4294967296"):
        Plan.from_tasks(4, window_start=np.arange(4), tasks=dict(one, fft_size=[2**32]))


def test_omitted_fft_sizes_are_the_smallest_powers_of_two() -> None:
    tasks = {"after_step": [0, 1], "src_start": [0, 0], "src_stop": [1, 2], "dst_start": [1, 2]}
    plan = Plan.from_tasks(5, window_start=[0, 1, 2, 2, 2], tasks=dict(tasks, dst_stop=[2, 5]))
    # task 0: one input, one output, taps 1..1 -> 1; task 1: inputs 0..1, outputs 2..4,
    # taps 1..4 -> need max(2 + 5 - 2 - 1, 5 - 0 - 1, 4) = 4 -> 4
    assert plan.fft_size.tolist() == [1, 4]


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    registry_module._build.cache_clear()
    yield
    registry_module._build.cache_clear()


@pytest.mark.parametrize("result", [None, (np.zeros(4, int),), {"window_start": [0, 1, 2, 3]}])
def test_a_builder_that_returns_no_tiling_is_named(registry, result) -> None:
    register_schedule("forgetful")(lambda length, prompt: result)
    with pytest.raises(PlanError, match=r"builder of schedule 'forgetful' returned \w+, not"):
        make_plan(4, "forgetful")


# ---------------------------------------------------------------------- the cost table
def test_the_cost_table_says_whose_figures_it_gives() -> None:
    """A printed plan counts one channel and batch row and says so; a stream's width, given,
    is named and multiplies the figures."""
    plan = make_plan(64)
    table = str(plan).splitlines()
    assert table[1].split(":", 1)[1].strip().startswith("per channel and batch row")
    assert not any("1 x 1" in line for line in table)
    stream = plan.cost(channels=64, batch=2)
    assert "channels x batch = 64 x 2" in str(stream).splitlines()[1]
    assert stream.online_flops == pytest.approx(128 * plan.cost().online_flops, rel=1e-12)
    assert str(plan.cost(channels=1, batch=1)).splitlines()[1].endswith("= 1 x 1")
