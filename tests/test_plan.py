"""Plans: exactly-once coverage, causality, caching, cost and the worked schedule."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import futurefill
from futurefill import Plan, PlanError, PlanSpec, make_plan
from futurefill.plan import (
    SCHEDULES,
    TASK_COLUMNS,
    Tiling,
    default_epoch,
    positive_int,
    register_schedule,
    resolve_spec,
    schedule_info,
)
from futurefill.plan.cost import plan_cost
from futurefill.plan.transforms import FORWARD, INVERSE, PRODUCT

from .conftest import examples
from .test_custom_schedules import block_to_rest

LENGTHS = [1, 2, 3, 5, 16, 17, 100, 1000, 4097]
STORED_TASK_COLUMNS = TASK_COLUMNS[1:]  # after_step is derived from task_ptr


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("prompt", [0, 1, 7])
def test_every_plan_validates(schedule: str, length: int, prompt: int) -> None:
    make_plan(length, schedule=schedule, prompt=prompt).validate()


@settings(max_examples=examples(150), deadline=None)
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


@settings(max_examples=examples(150), deadline=None)
@given(
    length=st.integers(1, 600),
    prompt=st.integers(0, 50),
    log_direct=st.integers(0, 9),
    log_slack=st.integers(0, 10),
)
def test_deadline_coverage_and_slack_property(
    length: int, prompt: int, log_direct: int, log_slack: int
) -> None:
    k0, S = 1 << log_direct, 1 << log_slack
    plan = make_plan(length, schedule="deadline", prompt=prompt, direct_below=k0, slack_from=S)
    plan.validate()
    assert _coverage_matrix(plan).max() == 1
    # a task is due at once (as in continuous) only if it is no larger than slack_from;
    # the others are due at least as many steps after their last input as they read inputs
    ready = plan.after_step.astype(np.int64) + 1  # the first step that may see its result
    due = plan.dst_start.astype(np.int64) - prompt
    size = (plan.src_stop - plan.src_start).astype(np.int64)
    slack = due > ready
    assert np.all(size[~slack] <= max(S, k0))
    assert np.all(due[slack] - ready[slack] >= size[slack])
    assert np.all(size[slack] >= max(S, k0))
    assert plan.tasks_start_windows  # NumPy's block accumulators stay valid


@settings(max_examples=examples(150), deadline=None)
@given(
    length=st.integers(1, 600),
    prompt=st.integers(0, 50),
    radix=st.integers(2, 9),
    direct_below=st.integers(1, 40),
)
def test_reuse_coverage_and_sharing_property(
    length: int, prompt: int, radix: int, direct_below: int
) -> None:
    plan = make_plan(length, "reuse", prompt=prompt, radix=radix, direct_below=direct_below)
    plan.validate()  # the transform program included
    assert _coverage_matrix(plan).max() == 1
    assert plan.tasks_start_windows
    a, c, n = (x.astype(np.int64) for x in (plan.src_start, plan.dst_start, plan.fft_size))
    size = plan.src_stop.astype(np.int64) - a
    # square tiles of a radix hierarchy, FFT size twice the block, read offset B - 1
    assert np.array_equal(n, 2 * size)
    assert np.array_equal(c - a - plan.filter_start, size - 1)
    assert set(np.unique(size).tolist()) <= {direct_below * radix**k for k in range(20)}
    assert np.all((a - prompt) % size == 0) and np.all((c - prompt) % size == 0)
    # steps that share: one forward transform per distinct source block and one inverse per
    # target block; the other steps (nothing to share) run their tasks one by one
    program = plan.transforms
    t = plan.after_step.astype(np.int64)
    shared = ~program.fused[t]
    sources = set(zip(a[shared].tolist(), n[shared].tolist(), strict=True))
    targets = set(zip(t[shared].tolist(), c[shared].tolist(), n[shared].tolist(), strict=True))
    assert program.count(FORWARD) == len(sources)
    assert program.count(INVERSE) == len(targets)
    assert program.count(PRODUCT) == np.count_nonzero(shared)
    alone = set(zip(t[~shared].tolist(), c[~shared].tolist(), strict=True))
    assert len(alone) == np.count_nonzero(~shared)
    assert program.shares == (radix > 2 and bool(shared.any()))


@pytest.mark.parametrize("log_direct", [0, 2, 5])
@pytest.mark.parametrize("length", [1, 17, 1000])
def test_reuse_radix_2_is_continuous(length: int, log_direct: int) -> None:
    k0 = 1 << log_direct
    reuse = make_plan(length, "reuse", prompt=3, radix=2, direct_below=k0)
    continuous = make_plan(length, "continuous", prompt=3, direct_below=k0)
    assert np.array_equal(reuse.window_start, continuous.window_start)
    key = np.lexsort(reuse.tasks()[:, :5].T[::-1])
    assert np.array_equal(reuse.tasks()[key][:, :5], continuous.tasks()[:, :5])
    assert not reuse.transforms.shares


@settings(max_examples=examples(150), deadline=None)
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


def _fft_flops(n: int) -> float:
    return 2.5 * n * math.log2(max(n, 2))  # sizes below 2 count as size 2


@pytest.mark.parametrize(
    "plan",
    [
        make_plan(64, schedule="continuous"),  # FFT sizes from 2, one unique worst step
        make_plan(50, schedule="continuous", prompt=5, direct_below=4),
        make_plan(40, schedule="epoched", prompt=3, epoch=6),  # equal epochs: the first worst
        make_plan(9, schedule="naive", prompt=2),  # no tasks, the prompt kept
        make_plan(3, schedule="naive", prompt=1),  # a prefill FFT of size 1
        make_plan(2, schedule="epoched", prompt=1, epoch=1),  # a task FFT of size 1
        make_plan(1, schedule="continuous"),  # one step
    ],
    ids=repr,
)
@pytest.mark.parametrize(("channels", "batch"), [(1, 1), (3, 2)])
def test_cost_follows_its_flop_model(plan: Plan, channels: int, batch: int) -> None:
    """The documented model, summed task by task and step by step: a task of FFT size n costs
    two FFTs (2.5 n log2 n each), a spectrum product 6 (n/2 + 1) and one addition per target;
    a window of w taps 2 w; the prefill a forward and inverse FFT of the prompt, the filters'
    FFT and the product."""
    bc = channels * batch
    P = plan.prompt
    task_flops = [0.0] * plan.length
    by_size: dict[int, tuple[int, float]] = {}
    for t, _, _, c, d, _, _, n in plan.tasks().tolist():
        flops = 2 * _fft_flops(n) + 6 * (n // 2 + 1) + (d - c)
        task_flops[t] += flops
        count, total = by_size.get(n, (0, 0.0))
        by_size[n] = (count + 1, total + flops * bc)
    widths = [P + t - int(w) + 1 for t, w in enumerate(plan.window_start)]
    steps = [(2 * w + f) * bc for w, f in zip(widths, task_flops, strict=True)]
    m = plan.prefill_fft_size
    spectra = {(lo, hi, n) for _, _, _, _, _, lo, hi, n in plan.tasks().tolist()}

    cost = plan.cost(channels=channels, batch=batch) if bc > 1 else plan.cost()
    if bc == 1:  # the module function has the same defaults as the method
        assert plan_cost(plan) == cost
    assert (cost.plan, cost.channels, cost.batch) == (plan, channels, batch)
    assert cost.online_flops == pytest.approx(sum(steps), rel=1e-12)
    assert cost.flops_per_step == pytest.approx(sum(steps) / plan.length, rel=1e-12)
    assert cost.worst_step == steps.index(max(steps))
    assert cost.worst_step_flops == pytest.approx(max(steps), rel=1e-12)
    prefill = (3 * _fft_flops(m) + 6 * (m // 2 + 1)) * bc if P else 0.0
    assert cost.prefill_flops == pytest.approx(prefill, rel=1e-12)
    assert cost.state_values == (plan.total - plan.origin) * bc
    assert cost.spectrum_values == channels * sum(n // 2 + 1 for _, _, n in spectra)
    assert cost.window_values == channels * max(widths)
    assert cost.tasks_by_fft_size.keys() == by_size.keys()
    for n, (count, total) in by_size.items():
        assert cost.tasks_by_fft_size[n][0] == count
        assert cost.tasks_by_fft_size[n][1] == pytest.approx(total, rel=1e-12)


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


def test_plan_identity() -> None:
    """Schedule names, and fingerprints that tell plans apart (snapshots rely on them)."""
    built = make_plan(16, schedule="epoched", epoch=4)
    assert built.schedule == "epoched"
    assert built.fingerprint == make_plan(16, schedule="epoched", epoch=4).fingerprint
    assert built.fingerprint != make_plan(16, schedule="epoched", epoch=5).fingerprint
    tables = {"window_start": built.window_start, "tasks": built.tasks()}
    custom = Plan.from_tasks(16, **tables)
    assert custom.schedule == "custom" and custom == Plan.from_tasks(16, **tables)
    assert custom.fingerprint == Plan.from_tasks(16, **tables).fingerprint
    other = Plan.from_tasks(16, window_start=np.zeros(16, np.int64))
    assert custom.fingerprint != other.fingerprint != built.fingerprint
    assert repr(custom) == "Plan('custom', length=16, prompt=0, tasks=3)"
    assert repr(built) == "Plan('epoched(epoch=4)', length=16, prompt=0, tasks=3)"
    assert repr(make_plan(4, schedule="naive")) == "Plan('naive', length=4, prompt=0, tasks=0)"
    assert repr(built.spec) == "PlanSpec('epoched', epoch=4)"


def _smallest_fft(a: int, b: int, c: int, d: int, lo: int, hi: int) -> int:
    """The smallest power of two exact for a task (see futurefill.ops.fill_future)."""
    need = max(b + hi - c - 1, d - a - lo, hi - lo, 1)
    return 1 << (need - 1).bit_length()


@pytest.mark.parametrize("epoch", [None, 1, 5])
@pytest.mark.parametrize("length", [2, 3, 5, 16, 17, 100])
def test_epoched_fft_is_the_smallest_that_serves_every_task(epoch: int | None, length: int) -> None:
    """One filter spectrum for all epochs: the smallest FFT exact for every task."""
    plan = make_plan(length, schedule="epoched", prompt=3, epoch=epoch)
    smallest = max((_smallest_fft(*row[1:7]) for row in plan.tasks().tolist()), default=None)
    assert set(plan.fft_size.tolist()) == ({smallest} if plan.num_tasks else set())


def test_default_epoch_is_between_1_and_the_length() -> None:
    assert [default_epoch(L) for L in (1, 2, 3, 4)] == [1, 1, 2, 2]
    assert default_epoch(1000) == int(math.sqrt(1000 * math.log2(1000)))


def test_tuned_direct_below_asks_for_the_dtype() -> None:
    """The continuous schedule's crossover comes from the executor, per batch, width, dtype."""

    class Measured:
        def default_direct_below(self, batch, channels, dtype):
            return {"float32": 8, "float64": 32}[dtype] * batch * channels

    spec = resolve_spec("continuous", Measured(), batch=1, channels=2, dtype="float32")
    assert spec == futurefill.PlanSpec("continuous", direct_below=16)
    spec = resolve_spec("continuous", Measured(), batch=2, channels=1, dtype="float64")
    assert spec == futurefill.PlanSpec("continuous", direct_below=64)


def _custom_windows(starts: list[int], prompt: int = 0) -> Plan:
    """Window tables alone (no tasks, not validated): what the window properties read."""
    return Plan.from_tasks(
        len(starts), prompt=prompt, keep_prompt=True, window_start=starts, validate=False
    )


@pytest.mark.parametrize(
    ("plan", "block"),
    [
        (make_plan(8, schedule="naive"), 8),  # one block: the windows never move
        (make_plan(20, schedule="epoched", epoch=6), 6),  # the last block is shorter
        (make_plan(20, schedule="continuous", prompt=3, direct_below=4), 4),
        (make_plan(8, schedule="naive", prompt=3), None),  # windows start in the prompt
        # a kept prompt: blocks are counted from the first online step, not from slot 0
        (_custom_windows([3, 3, 3, 3, 7, 7, 7, 7], prompt=3), 4),
        (_custom_windows([0, 0, 2, 2, 2, 5, 5, 5]), None),  # blocks of unequal sizes
    ],
    ids=repr,
)
def test_window_block_size(plan: Plan, block: int | None) -> None:
    assert plan.window_block_size == block


# ---------------------------------------------------------------------- derived tables
def test_tables_by_step_and_their_types() -> None:
    plan = _one_or_two_tasks_per_step()
    for t in range(plan.length):
        np.testing.assert_array_equal(plan.tasks(t), plan.tasks()[plan.after_step == t])
    assert [len(plan.tasks(t)) for t in range(plan.length)] == [1, 2, 1, 2, 1, 2, 1, 0]
    for name in ("window_start", "task_ptr", *STORED_TASK_COLUMNS, "after_step", "slot"):
        assert getattr(plan, name).dtype == np.int32, name
    assert plan.window_slot.dtype == plan.tasks().dtype == np.int32


def _one_or_two_tasks_per_step() -> Plan:
    """Windows of one input; the tasks after step 1 run again, shifted, after step 5."""
    tasks = [  # (after_step, src_start, src_stop, dst_start, dst_stop)
        (0, 0, 1, 1, 2),
        (1, 1, 2, 2, 4),
        (1, 0, 1, 2, 4),
        (2, 2, 3, 3, 4),  # the shape of the task after step 0
        (3, 0, 2, 4, 8),
        (3, 2, 4, 4, 8),
        (4, 4, 5, 5, 6),
        (5, 5, 6, 6, 8),  # the shapes of the tasks after step 1
        (5, 4, 5, 6, 8),
        (6, 6, 7, 7, 8),
    ]
    return Plan.from_tasks(8, window_start=np.arange(8), tasks=np.array(tasks))


@pytest.mark.parametrize(
    "plan",
    [
        make_plan(100, schedule="continuous", prompt=3),
        make_plan(100, schedule="continuous", direct_below=4),
        make_plan(50, schedule="epoched", prompt=2, epoch=7),
        make_plan(20, schedule="naive", prompt=4),
        _one_or_two_tasks_per_step(),
    ],
    ids=repr,
)
def test_step_patterns_describe_every_task(plan: Plan) -> None:
    """Rebuilt task by task: each task's shape and offset, each step's pattern of shapes."""
    sp = plan.step_patterns
    assert sp.patterns[0] == ()
    assert len(set(sp.shapes)) == len(sp.shapes) and len(set(sp.patterns)) == len(sp.patterns)
    for i, (_, a, b, c, d, lo, hi, n) in enumerate(plan.tasks()):
        shape = sp.shapes[sp.shape_of_task[i]]
        assert shape == (b - a, d - c, c - a, lo, hi, n)
        assert shape.read_start == c - a - lo and shape.spectrum == (lo, hi, n)
        assert sp.offsets[i] == a - plan.origin
    for t in range(plan.length):
        run = tuple(int(s) for s in sp.shape_of_task[plan.task_ptr[t] : plan.task_ptr[t + 1]])
        assert sp.patterns[sp.pattern_of_step[t]] == run
    assert sp.pattern_of_step.shape == (plan.length,)
    assert sp.shape_of_task.shape == sp.offsets.shape == (plan.num_tasks,)
    assert set(sp.shape_of_task.tolist()) == set(range(len(sp.shapes)))  # every shape is used
    if plan.schedule == "custom":  # (), (A,), (B, C), (D, E)
        assert len(sp.patterns) == 4 and len(sp.shapes) == 5


# ---------------------------------------------------------------------- the registry
@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch):
    """A scratch copy of the schedule registry (and an empty plan cache) for one test."""
    from futurefill.plan import registry as module

    monkeypatch.setattr(module, "_REGISTRY", dict(module._REGISTRY))
    module._build.cache_clear()
    yield module
    module._build.cache_clear()


def _block_to_rest(length: int, prompt: int, *, block: int) -> Tiling:
    """Window blocks of ``block`` steps; each block then fills all later outputs.

    (Only the first line is the description.)
    """
    return block_to_rest(length, prompt, block=block)


def _overlapping(length: int, prompt: int) -> Tiling:
    """Every window from 0 and a task: inputs counted twice."""
    tasks = {
        "after_step": [0],
        "src_start": [0],
        "src_stop": [1],
        "dst_start": [1],
        "dst_stop": [2],
    }
    return Tiling(window_start=np.zeros(length, np.int64), tasks=tasks, keep_prompt=True)


def test_register_schedule_at_run_time(registry) -> None:
    max_tasks = lambda length, prompt, block: length // block  # noqa: E731
    decorate = register_schedule(
        "scratch",
        params={"block": positive_int},
        defaults={"block": lambda length, prompt: 3},
        max_tasks=max_tasks,
    )
    assert decorate(_block_to_rest) is _block_to_rest
    assert "scratch" in futurefill.list_schedules()
    info = schedule_info("scratch")
    assert (info.name, info.build, info.max_tasks, info.validate) == (
        "scratch",
        _block_to_rest,
        max_tasks,
        True,
    )
    assert info.description == (
        "Window blocks of ``block`` steps; each block then fills all later outputs."
    )
    assert dict(info.params) == {"block": positive_int} and set(info.defaults) == {"block"}
    assert dict(info.tuned) == {}
    with pytest.raises(TypeError):
        info.params["epoch"] = positive_int  # type: ignore[index]
    plan = make_plan(20, "scratch", prompt=2)
    assert plan.spec == futurefill.PlanSpec("scratch", block=3) and plan.defaulted == {"block"}
    assert plan.window_block_size == 3 and plan.num_tasks == 6
    assert make_plan(20, "scratch", block=5).num_tasks == 3


def test_registered_defaults(registry) -> None:
    """Without ``max_tasks``, at most one task per step is assumed; a description given wins
    over the docstring; no parameters at all is fine."""
    register_schedule("plain", description="one line")(_overlapping)
    info = schedule_info("plain")
    assert info.description == "one line" and info.max_tasks(10, 3) == 10
    assert dict(info.params) == dict(info.defaults) == dict(info.tuned) == {}
    register_schedule("undocumented")(lambda length, prompt: Tiling(np.zeros(length, int)))
    assert schedule_info("undocumented").description == ""


def test_registered_schedules_are_validated_unless_told(registry) -> None:
    register_schedule("overlapping")(_overlapping)
    with pytest.raises(PlanError, match=r"twice|beyond"):
        make_plan(4, "overlapping")
    register_schedule("trusted", validate=False)(_overlapping)
    assert make_plan(4, "trusted").num_tasks == 1


def test_tuned_parameters(registry) -> None:
    """A tuned default comes from the executor; an explicit value wins."""

    def rule(executor, batch, channels, dtype) -> int:
        return batch * channels

    register_schedule("tuned", params={"block": positive_int}, tuned={"block": rule})(
        _block_to_rest
    )
    ex = futurefill.get_backend("numpy")
    spec = resolve_spec("tuned", ex, batch=2, channels=3, dtype="float64")
    assert spec == futurefill.PlanSpec("tuned", block=6)
    given = futurefill.PlanSpec("tuned", block=4)
    assert resolve_spec(given, ex, batch=2, channels=3, dtype="float64") == given


@pytest.mark.parametrize("name", ["two words", "", "9lives", 3])
def test_schedule_names_are_identifiers(registry, name) -> None:
    with pytest.raises(ValueError, match="identifier"):
        register_schedule(name)
    assert name not in registry._REGISTRY


def test_a_name_is_registered_once_unless_replaced(registry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_schedule("continuous")(_overlapping)
    assert schedule_info("continuous").build is not _overlapping
    register_schedule("scratch", params={"block": positive_int})(_block_to_rest)
    before = make_plan(12, "scratch", block=4)
    with pytest.raises(ValueError, match="already registered"):
        register_schedule("scratch", params={"block": positive_int})(_block_to_rest)

    def every_step(length: int, prompt: int, *, block: int) -> Tiling:
        return _block_to_rest(length, prompt, block=1)

    register_schedule("scratch", params={"block": positive_int}, replace=True)(every_step)
    after = make_plan(12, "scratch", block=4)  # the cache of plans forgot the old builder
    assert (before.num_tasks, after.num_tasks) == (2, 11)


@pytest.mark.parametrize("table", ["defaults", "tuned"])
def test_defaults_of_undeclared_parameters_are_refused(registry, table: str) -> None:
    rules = {"block": lambda *args: 1}
    with pytest.raises(ValueError, match=r"undeclared parameters \['block'\]"):
        register_schedule("scratch", params={"epoch": positive_int}, **{table: rules})(
            _block_to_rest
        )
    with pytest.raises(ValueError, match="undeclared"):
        register_schedule("scratch", **{table: rules})(_block_to_rest)
    assert "scratch" not in registry._REGISTRY
