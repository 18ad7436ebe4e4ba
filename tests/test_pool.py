"""StreamPool: slots at their own positions, checked against numpy.convolve per sequence.

Every sequence's outputs are compared with float64 direct sums (``numpy.convolve``) of that
sequence's own inputs -- its prompt and the inputs it stepped -- whatever the other slots did.
Tolerance 1e-12 of the largest |output| (float64 FFT round trips: ~log2(L) transforms of
~1e-16 each, as in ``test_online.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import futurefill
from futurefill import PlanSpec, StreamPool
from futurefill.executor import Executor
from futurefill.pool import due_groups

from .conftest import decaying_filters

C, N, L = 3, 160, 64
TOL = 1e-12
SPECS = [
    PlanSpec("naive"),
    PlanSpec("epoched", epoch=5),
    PlanSpec("continuous", direct_below=1),
    PlanSpec("continuous", direct_below=4),
    PlanSpec("deadline", direct_below=1),
    PlanSpec("reuse", radix=4, direct_below=2),
]


class Sequences:
    """The oracle: every slot's inputs so far (prompt first), kept on the host."""

    def __init__(self, phi: np.ndarray) -> None:
        self.phi = phi
        self.inputs: dict[int, list[np.ndarray]] = {}

    def expected(self, slot: int) -> np.ndarray:
        u = np.concatenate(self.inputs[slot], axis=-1)
        return np.stack([np.convolve(u[c], self.phi[c])[: u.shape[-1]] for c in range(C)])


def host(ex: Executor, y: Any) -> np.ndarray:
    return np.asarray(ex.to_numpy(y), dtype=np.float64)


def check_close(got: np.ndarray, want: np.ndarray) -> None:
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * scale)


#: Schedules run on JAX, where every new array shape compiles a program (seconds each here).
JAX_SPECS = {str(PlanSpec("naive")), str(PlanSpec("continuous", direct_below=4))}


def skip_on_jax(backend: Executor, spec: PlanSpec) -> None:
    if backend.name == "jax" and str(spec) not in JAX_SPECS:
        pytest.skip("JAX runs two schedules here (each pool shape compiles its programs)")


def make_pool(backend: Executor, rng: np.random.Generator, spec: PlanSpec, **kw: Any) -> Any:
    phi = decaying_filters(rng, C, N)
    kw.setdefault("capacity", 4)
    return StreamPool(phi, L, schedule=spec, backend=backend, dtype="float64", **kw), phi


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_slots_at_scattered_positions_are_exact(backend, rng, spec):
    skip_on_jax(backend, spec)
    pool, phi = make_pool(backend, rng, spec)
    ex = pool.backend
    seqs = Sequences(phi)
    outputs: dict[int, list[np.ndarray]] = {}
    prompts = [0, 7, 1, 19]
    for P in prompts:
        prompt = rng.standard_normal((C, P))
        slot = pool.admit(prompt=ex.asarray(prompt) if P else None)
        seqs.inputs[slot] = [prompt]
        outputs[slot] = []
    for t in range(L):
        # a changing subset, so the slots drift apart
        chosen = [s for s in pool.active_slots if (t * (s + 1)) % 3 != 1]
        u = rng.standard_normal((len(chosen), C))
        y = host(ex, pool.step(chosen, ex.asarray(u)))
        for i, s in enumerate(chosen):
            seqs.inputs[s].append(u[i][:, None])
            outputs[s].append(y[i])
    for s, P in zip(pool.active_slots, prompts, strict=True):
        assert pool.position(s) == P + len(outputs[s])
        check_close(np.stack(outputs[s], axis=-1), seqs.expected(s)[:, P:])


def test_a_released_slot_leaks_nothing_into_the_next_occupant(backend, rng):
    pool, phi = make_pool(backend, rng, PlanSpec("continuous", direct_below=1), capacity=1)
    ex = pool.backend
    first = pool.admit(prompt=ex.asarray(rng.standard_normal((C, 9))))
    for _ in range(30):
        pool.step([first], ex.asarray(rng.standard_normal((1, C))))
    pool.release(first)
    again = pool.admit()
    assert again == first
    u = rng.standard_normal((20, C))
    got = np.stack([host(ex, pool.step([again], ex.asarray(u[t : t + 1])))[0] for t in range(20)])
    want = np.stack([np.convolve(u[:, c], phi[c])[:20] for c in range(C)], axis=-1)
    check_close(got, want)


def test_a_hundred_requests_through_four_slots(rng):
    pool, phi = make_pool("numpy", rng, PlanSpec("continuous", direct_below=2))
    seqs = Sequences(phi)
    todo = [(int(rng.integers(0, 12)), int(rng.integers(1, 9))) for _ in range(100)]
    left: dict[int, int] = {}
    outputs: dict[int, list[np.ndarray]] = {}
    done = 0
    while todo or left:
        while todo and pool.free_slots:
            P, steps = todo.pop()
            prompt = rng.standard_normal((C, P))
            slot = pool.admit(prompt=prompt, length=steps)
            seqs.inputs[slot], outputs[slot], left[slot] = [prompt], [], steps
        chosen = sorted(left)
        u = rng.standard_normal((len(chosen), C))
        y = pool.step(chosen, u)
        for i, s in enumerate(chosen):
            seqs.inputs[s].append(u[i][:, None])
            outputs[s].append(y[i])
            left[s] -= 1
            if not left[s]:
                P = seqs.inputs[s][0].shape[-1]
                check_close(np.stack(outputs[s], axis=-1), seqs.expected(s)[:, P:])
                pool.release(s)
                del left[s]
                done += 1
    assert done == 100 and pool.free_slots == pool.capacity


def test_a_forked_slot_diverges_exactly(backend, rng):
    pool, phi = make_pool(backend, rng, PlanSpec("continuous", direct_below=1))
    ex = pool.backend
    seqs = Sequences(phi)
    prompt = rng.standard_normal((C, 11))
    a = pool.admit(prompt=ex.asarray(prompt))
    seqs.inputs[a] = [prompt]
    for _ in range(13):
        u = rng.standard_normal((1, C))
        pool.step([a], ex.asarray(u))
        seqs.inputs[a].append(u.T)
    b = pool.fork(a)
    seqs.inputs[b] = list(seqs.inputs[a])
    assert pool.position(b) == pool.position(a) == 24
    got: dict[int, list[np.ndarray]] = {a: [], b: []}
    for _ in range(20):
        u = rng.standard_normal((2, C))
        y = host(ex, pool.step([a, b], ex.asarray(u)))
        for i, s in enumerate((a, b)):
            seqs.inputs[s].append(u[i][:, None])
            got[s].append(y[i])
    for s in (a, b):
        check_close(np.stack(got[s], axis=-1), seqs.expected(s)[:, 24:])


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_rewind_then_restep_equals_never_taking_the_steps(backend, rng, spec):
    skip_on_jax(backend, spec)
    pool, _ = make_pool(backend, rng, spec)
    ex = pool.backend
    a = pool.admit(prompt=ex.asarray(rng.standard_normal((C, 5))))
    for _ in range(9):
        pool.step([a], ex.asarray(rng.standard_normal((1, C))))
    twin = pool.fork(a)  # never takes the drafted steps
    pool.mark(a)
    for _ in range(int(rng.integers(1, 20))):  # drafted steps, some with large tasks
        pool.step([a], ex.asarray(rng.standard_normal((1, C))))
    pool.rewind(a, pool.steps(a) - 9)
    assert pool.position(a) == pool.position(twin) == 14
    # the journal restores the buffer bit for bit
    np.testing.assert_array_equal(pool.state_dict(a)["buffer"], pool.state_dict(twin)["buffer"])
    for _ in range(25):
        u = ex.asarray(np.repeat(rng.standard_normal((1, C)), 2, axis=0))
        y = host(ex, pool.step([a, twin], u))
        # one batched call: XLA may round two rows of one sum differently (1 ulp)
        check_close(y[0], y[1])


def test_rewind_needs_a_mark_and_stays_within_it(rng):
    pool, _ = make_pool("numpy", rng, PlanSpec("continuous", direct_below=1))
    a = pool.admit()
    pool.step([a], rng.standard_normal((1, C)))
    with pytest.raises(RuntimeError, match="not marked"):
        pool.rewind(a, 1)
    pool.mark(a)
    pool.step([a], rng.standard_normal((1, C)))
    with pytest.raises(ValueError, match="k must"):
        pool.rewind(a, 2)
    pool.rewind(a, 1)
    assert pool.steps(a) == 1
    pool.commit(a)
    with pytest.raises(RuntimeError, match="not marked"):
        pool.rewind(a, 0)


@pytest.mark.parametrize("cuts", [(20,), (1, 19), (7, 7, 6), (3, 0, 17)])
def test_chunked_prefill_equals_one_prefill(backend, rng, cuts):
    pool, phi = make_pool(backend, rng, PlanSpec("continuous", direct_below=1))
    ex = pool.backend
    prompt = rng.standard_normal((C, sum(cuts)))
    whole, chunked = pool.admit(), pool.admit()
    y_whole = host(ex, pool.prefill(whole, ex.asarray(prompt)))
    parts, start = [], 0
    for cut in cuts:
        parts.append(host(ex, pool.prefill(chunked, ex.asarray(prompt[:, start : start + cut]))))
        start += cut
    want = np.stack([np.convolve(prompt[c], phi[c])[: prompt.shape[1]] for c in range(C)])
    check_close(y_whole, want)
    check_close(np.concatenate(parts, axis=-1), want)
    u = ex.asarray(np.repeat(rng.standard_normal((1, C)), 2, axis=0))
    y = host(ex, pool.step([whole, chunked], u))
    np.testing.assert_array_equal(y[0], y[1])
    np.testing.assert_array_equal(
        pool.state_dict(whole)["buffer"], pool.state_dict(chunked)["buffer"]
    )


def test_layers_emit_their_channels_then_advance_once(backend, rng):
    pool, phi = make_pool(backend, rng, PlanSpec("continuous", direct_below=1))
    ex = pool.backend
    seqs = Sequences(phi)
    prompt = rng.standard_normal((C, 4))
    a, b = pool.admit(), pool.admit(prompt=ex.asarray(prompt))
    seqs.inputs = {a: [np.zeros((C, 0))], b: [prompt]}
    got: dict[int, list[np.ndarray]] = {a: [], b: []}
    for _ in range(12):
        u = rng.standard_normal((2, C))
        y1 = host(ex, pool.emit([a, b], ex.asarray(u[:, :1]), channels=slice(0, 1)))
        with pytest.raises(RuntimeError, match="not emitted"):
            pool.advance([a, b])
        y2 = host(ex, pool.emit([b, a], ex.asarray(u[::-1, 1:].copy()), channels=slice(1, C)))
        pool.advance([a, b])
        for i, s in enumerate((a, b)):
            seqs.inputs[s].append(u[i][:, None])
            got[s].append(np.concatenate([y1[i], y2[1 - i]]))
    assert pool.position(a) == 12 and pool.position(b) == 16
    check_close(np.stack(got[a], axis=-1), seqs.expected(a))
    check_close(np.stack(got[b], axis=-1), seqs.expected(b)[:, 4:])


def test_state_dict_moves_a_slot_to_another_pool(rng):
    phi = decaying_filters(rng, C, N)
    spec = PlanSpec("continuous", direct_below=1)
    pool = StreamPool(phi, L, capacity=2, schedule=spec)
    other = StreamPool(phi, L, capacity=3, schedule=spec)
    a = pool.admit(prompt=rng.standard_normal((C, 6)))
    for _ in range(10):
        pool.step([a], rng.standard_normal((1, C)))
    moved = other.load_state_dict(pool.state_dict(a))
    for _ in range(15):
        u = rng.standard_normal((1, C))
        np.testing.assert_array_equal(pool.step([a], u), other.step([moved], u))
    pending = pool.admit()
    pool.prefill(pending, rng.standard_normal((C, 3)))
    assert other.position(other.load_state_dict(pool.state_dict(pending))) == 3


def test_a_state_of_other_filters_or_plan_is_refused(rng):
    phi = decaying_filters(rng, C, N)
    pool = StreamPool(phi, L, capacity=2, schedule="continuous", direct_below=1)
    state = pool.state_dict(pool.admit())
    for other, match in [
        (StreamPool(phi * 2, L, capacity=1, schedule="continuous", direct_below=1), "filters"),
        (StreamPool(phi, L, capacity=1, schedule="continuous", direct_below=2), "plan"),
    ]:
        with pytest.raises(ValueError, match=match):
            other.load_state_dict(state)
        assert other.free_slots == 1
    broken = {**state, "step": L + 1}
    with pytest.raises(ValueError, match="step"):
        pool.load_state_dict(broken)


def test_bad_calls_raise_and_change_nothing(rng):
    pool, _ = make_pool("numpy", rng, PlanSpec("continuous", direct_below=1), capacity=2)
    a = pool.admit(length=2)
    b = pool.admit()
    with pytest.raises(RuntimeError, match="in use"):
        pool.admit()
    before = pool.state_dict(a)
    for call, error, match in [
        (lambda: pool.step([a, a], np.ones((2, C))), ValueError, "distinct"),
        (lambda: pool.step([a], np.ones((2, C))), ValueError, "shape"),
        (lambda: pool.step([5], np.ones((1, C))), ValueError, "not in use"),
        (lambda: pool.step([a], np.ones((1, C), complex)), TypeError, "real"),
        (lambda: pool.prefill(a, np.full((C, 2), np.nan)), ValueError, "NaN"),
        (lambda: pool.admit(length=N + 1), ValueError, "taps"),
        (lambda: pool.prefill(b, np.ones((C, N))), ValueError, "taps"),
        (lambda: pool.release(7), ValueError, "not in use"),
    ]:
        with pytest.raises(error, match=match):
            call()
    after = pool.state_dict(a)
    assert all(np.array_equal(before[k], after[k]) for k in ("buffer", "step", "prompt"))
    pool.step([a], np.ones((1, C)))
    pool.step([a], np.ones((1, C)))
    with pytest.raises(RuntimeError, match="all their steps"):
        pool.step([a], np.ones((1, C)))
    with pytest.raises(RuntimeError, match="prompt is closed"):
        pool.prefill(a, np.ones((C, 1)))


def test_a_failing_kernel_poisons_only_the_slots_it_touched(rng, monkeypatch):
    pool, _ = make_pool("numpy", rng, PlanSpec("continuous", direct_below=1), capacity=3)
    a, b, c = pool.admit(), pool.admit(), pool.admit()
    ex = pool.backend

    def boom(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("no room for the transform")

    monkeypatch.setattr(ex, "fill_group", boom)
    with pytest.raises(MemoryError):
        pool.step([a, b], np.ones((2, C)))
    monkeypatch.undo()
    for s in (a, b):
        with pytest.raises(RuntimeError, match=r"MemoryError.*release"):
            pool.step([s], np.ones((1, C)))
    pool.step([c], np.ones((1, C)))
    pool.release(a)
    assert pool.admit() == a


def test_a_pool_that_would_not_fit_is_refused_naming_its_size():
    from futurefill import memory

    phi = np.ones((64, 4096))
    memory.set_memory_limit(1 << 20)
    try:
        with pytest.raises(MemoryError, match="pool of 64 slots x 64 channels x 4096 steps"):
            StreamPool(phi, 4096, capacity=64)
    finally:
        memory.set_memory_limit(None)


def test_groups_hold_distinct_slots_and_every_due_task_once():
    plan = futurefill.make_plan(300, "epoched", epoch=7)
    rng = np.random.default_rng(1)
    rows = rng.permutation(40)[:25]
    steps = rng.integers(0, 300, 25)
    groups = due_groups(plan, rows, steps, channels=2)
    seen = []
    for g in groups:
        assert len(set(g.rows.tolist())) == len(g)
        for r, a in zip(g.rows.tolist(), g.src.tolist(), strict=True):
            seen.append((r, a, g.shape))
    want = []
    for r, t in zip(rows.tolist(), steps.tolist(), strict=True):
        for i in range(plan.task_ptr[t], plan.task_ptr[t + 1]):
            sid = plan.step_patterns.shape_of_task[i]
            want.append((r, int(plan.step_patterns.offsets[i]), plan.step_patterns.shapes[sid]))
    assert sorted(seen, key=repr) == sorted(want, key=repr)
    split = due_groups(plan, rows, steps, channels=2, max_elements=2 * 512 * 3)
    assert sum(len(g) for g in split) == len(seen) and max(len(g) for g in split) <= 3


def test_one_transform_per_fft_size_due_however_many_slots():
    phi = np.ones((2, 1024))
    pool = StreamPool(phi, 1024, capacity=64, schedule="continuous", direct_below=1)
    slots = [pool.admit() for _ in range(64)]
    offsets = np.random.default_rng(2).integers(0, 512, 64)
    for k in range(int(offsets.max())):  # scatter the positions
        behind = [s for s, o in zip(slots, offsets.tolist(), strict=True) if o > k]
        pool.step(behind, np.zeros((len(behind), 2)))
    plan = pool.plan
    for _ in range(50):
        before = pool.stats.transforms
        steps = np.array([pool.steps(s) for s in slots])
        sizes = {int(plan.fft_size[i]) for t in steps for i in range(*plan.task_ptr[t : t + 2])}
        pool.step(slots, np.zeros((64, 2)))
        assert pool.stats.transforms - before == len(sizes)


def test_the_serving_guide_example_runs():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "serving.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, Any] = {}
    exec(compile(code, "docs/serving.md", "exec"), scope)
    pool = scope["pool"]
    assert pool.position(scope["c"]) == 103 and pool.position(scope["d"]) == 101


def _lane_plans() -> list[futurefill.Plan]:
    """Hand-written plans of length 16: two tasks of one shape after step 3 whose targets
    overlap (lanes 0 and 1: they may not be one scatter-add), and a one-task plan."""
    ws = np.zeros(16, np.int64)
    ws[8:10], ws[10:14] = 2, 4
    lanes = {  # after step 3: [0,2) -> [8,12) and [2,4) -> [10,14) (same shape), [0,2) -> [12,14)
        "after_step": [3, 3, 3],
        "src_start": [0, 2, 0],
        "src_stop": [2, 4, 2],
        "dst_start": [8, 10, 12],
        "dst_stop": [12, 14, 14],
    }
    one = np.zeros(16, np.int64)
    one[8:12] = 2
    single = {
        "after_step": [5],
        "src_start": [0],
        "src_stop": [2],
        "dst_start": [8],
        "dst_stop": [12],
    }
    return [
        futurefill.Plan.from_tasks(16, window_start=ws, tasks=lanes),
        futurefill.Plan.from_tasks(16, window_start=one, tasks=single),
    ]


@pytest.mark.parametrize("which", [0, 1], ids=["two_lanes", "one_task"])
def test_tasks_of_one_shape_after_one_step_run_in_lanes(backend, rng, which):
    plan = _lane_plans()[which]
    if which == 0:
        from futurefill.pool.grouping import task_lanes

        assert sorted(task_lanes(plan).tolist()) == [0, 0, 1]
    phi = decaying_filters(rng, C, 16)
    pool = StreamPool(phi, 16, schedule=plan, capacity=3, backend=backend, dtype="float64")
    ex = pool.backend
    seqs = Sequences(phi)
    outputs: dict[int, list[np.ndarray]] = {}
    for t in range(16 + 4):
        if t in (0, 2, 4) and t // 2 < 3:  # slots two steps apart: step 3 due together, then apart
            slot = pool.admit()
            seqs.inputs[slot], outputs[slot] = [np.zeros((C, 0))], []
        chosen = [s for s in pool.active_slots if pool.steps(s) < 16 and (t + s) % 5 != 4]
        u = rng.standard_normal((len(chosen), C))
        y = host(ex, pool.step(chosen, ex.asarray(u)))
        for i, s in enumerate(chosen):
            seqs.inputs[s].append(u[i][:, None])
            outputs[s].append(y[i])
    for s, ys in outputs.items():
        check_close(np.stack(ys, axis=-1), seqs.expected(s))
