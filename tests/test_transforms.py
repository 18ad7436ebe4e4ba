"""The transform program of a plan: shared forward transforms, products, one inverse per target."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from futurefill import OnlineConv, Plan, PlanError, make_plan
from futurefill.plan import TASK_COLUMNS
from futurefill.plan.transforms import (
    FORWARD,
    INVERSE,
    KIND_NAMES,
    PRODUCT,
    TransformProgram,
    check_program,
    transform_program,
)

from .conftest import decaying_filters, oracle


def _replay(plan: Plan, u: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Run the plan on known inputs ``u`` (no feedback) with plain NumPy: the prefill and
    local windows directly, fused steps task by task, the other steps op by op as the program
    says; return every output."""
    T, P = plan.total, plan.prompt
    y = np.zeros(T)
    for j in range(P):
        y[j] = sum(phi[j - s] * u[s] for s in range(j + 1))
    if plan.prefill_fills_future:
        for j in range(P, T):
            y[j] += sum(phi[j - s] * u[s] for s in range(P))
    for t in range(plan.length):
        j = P + t
        y[j] += sum(phi[j - s] * u[s] for s in range(int(plan.window_start[t]), j + 1))
    program = plan.transforms
    registers: dict[int, np.ndarray] = {}
    x, z = u[plan.origin :], y[plan.origin :]  # task offsets are buffer slots
    for t in range(plan.length):
        if program.fused[t]:
            for i in range(plan.task_ptr[t], plan.task_ptr[t + 1]):
                a, b, c, d, r, n, (lo, hi, _) = plan.task_offsets(i)
                spectrum = np.fft.rfft(phi[lo:hi], n)
                block = np.fft.irfft(np.fft.rfft(x[a:b], n) * spectrum, n)
                z[c:d] += block[r : r + d - c]
            continue
        total = None
        for kind, i, reg in program.ops(t).tolist():
            a, b, c, d, r, n, (lo, hi, _) = plan.task_offsets(i)
            if kind == FORWARD:
                registers[reg] = np.fft.rfft(x[a:b], n)
            elif kind == PRODUCT:
                term = registers[reg] * np.fft.rfft(phi[lo:hi], n)
                total = term if total is None else total + term
            else:
                z[c:d] += np.fft.irfft(total, n)[r : r + d - c]
                total = None
    return y


@pytest.mark.parametrize(
    ("length", "prompt", "radix", "direct_below"),
    [(50, 0, 3, 1), (64, 5, 4, 2), (200, 0, 8, 3), (37, 9, 5, 1)],
)
def test_replaying_the_program_is_exact(
    rng, length: int, prompt: int, radix: int, direct_below: int
) -> None:
    plan = make_plan(length, "reuse", prompt=prompt, radix=radix, direct_below=direct_below)
    assert plan.transforms.shares
    u = rng.standard_normal(plan.total)
    phi = rng.standard_normal(plan.total) / math.sqrt(plan.total)
    want = np.convolve(u, phi)[: plan.total]
    np.testing.assert_allclose(_replay(plan, u, phi), want, rtol=0, atol=1e-12)


def test_plans_without_shared_transforms_have_no_ops() -> None:
    for plan in (
        make_plan(1000, "continuous"),
        make_plan(100, "epoched", prompt=3),
        make_plan(40, "naive"),
        make_plan(1000, "reuse", radix=2, direct_below=4),
    ):
        program = plan.transforms
        assert not program.shares
        assert program.fused.all() and program.op_ptr[-1] == 0 and program.num_registers == 0


def test_a_source_shared_across_steps_is_transformed_once() -> None:
    # inputs 0..3 feed outputs 4..7 (after step 3) and, with inputs 4..7, outputs 8..11
    # (after step 7): block 0..3 is transformed once, outputs 8..11 inverted once
    plan = Plan.from_tasks(
        12,
        window_start=[0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8],
        tasks={
            "after_step": [3, 7, 7],
            "src_start": [0, 4, 0],
            "src_stop": [4, 8, 4],
            "dst_start": [4, 8, 8],
            "dst_stop": [8, 12, 12],
            "fft_size": [8, 8, 8],
        },
    )
    program = plan.transforms
    assert program.fused.tolist() == [t not in (3, 7) for t in range(12)]
    names = [[KIND_NAMES[k] for k in program.ops(t)[:, 0]] for t in (3, 7)]
    assert names == [
        ["forward", "product", "inverse"],
        ["forward", "product", "product", "inverse"],
    ]
    first, later = program.ops(3), program.ops(7)
    assert later[2, 1] == 2 and later[2, 2] == first[0, 2]  # step 7 reads step 3's register
    assert later[0, 2] != first[0, 2]  # which is still alive: the new block takes another
    assert program.num_registers == 2


def test_an_inverse_is_shared_only_by_tasks_of_one_read_offset(rng) -> None:
    """Outputs 8..11 from inputs 0..7 in three tasks after step 7, one target, one FFT size:
    blocks 0..1 and 2..3 read the inverse transform from offset 1, block 4..7 from offset 3.
    Two inverses, not one: the plan is valid and replaying its program is exact."""
    plan = Plan.from_tasks(
        12,
        window_start=[0] * 8 + [8] * 4,
        tasks={
            "after_step": [7, 7, 7],
            "src_start": [0, 2, 4],
            "src_stop": [2, 4, 8],
            "dst_start": [8, 8, 8],
            "dst_stop": [12, 12, 12],
            "fft_size": [16, 16, 16],
        },
    )
    names = [KIND_NAMES[k] for k in plan.transforms.ops(7)[:, 0]]
    assert names == ["forward"] * 3 + ["product", "product", "inverse", "product", "inverse"]
    u = rng.standard_normal(plan.total)
    phi = rng.standard_normal(plan.total)
    want = np.convolve(u, phi)[: plan.total]
    np.testing.assert_allclose(_replay(plan, u, phi), want, rtol=0, atol=1e-12)


def test_registers_are_reused_once_free() -> None:
    plan = make_plan(4096, "reuse", radix=4, direct_below=4)
    program = plan.transforms
    # independent count: the most sources alive after any step, per FFT size
    t = plan.after_step.astype(np.int64)
    shared = ~program.fused[t]
    live: dict[tuple[int, int], list[int]] = {}
    for step, a, n in zip(t[shared], plan.src_start[shared], plan.fft_size[shared], strict=True):
        live.setdefault((int(a), int(n)), []).append(int(step))
    most = 0
    for size in {n for _, n in live}:
        spans = [(min(s), max(s)) for (_, n), s in live.items() if n == size]
        most += max(sum(lo <= step <= hi for lo, hi in spans) for step in range(plan.length))
    assert program.num_registers == most
    assert program.num_registers < program.count(FORWARD)


def _broken(program: TransformProgram, **columns: list[int]) -> TransformProgram:
    return dataclasses.replace(program, **{k: np.asarray(v) for k, v in columns.items()})


def test_check_program_refuses_broken_programs() -> None:
    plan = make_plan(64, "reuse", radix=4, direct_below=4)
    good = transform_program(plan)
    check_program(plan, good)
    kind, task, register = good.kind.tolist(), good.task.tolist(), good.register.tolist()
    products = [i for i, k in enumerate(kind) if k == PRODUCT]
    inverses = [i for i, k in enumerate(kind) if k == INVERSE]
    forwards = [i for i, k in enumerate(kind) if k == FORWARD]

    def refused(match: str, **columns: list[int]) -> None:
        with pytest.raises(PlanError, match=match):
            check_program(plan, _broken(good, **columns))

    # a product reading another register than its source's
    p = next(i for i in products if register[i] != register[products[0]])
    bad = register.copy()
    bad[p] = register[products[0]] if register[products[0]] != register[p] else -1
    refused("register not holding its source", register=bad)
    # an inverse of products of other targets (a product moved to another target's inverse)
    two = next(i for i in inverses if kind[i - 1] == PRODUCT and kind[i - 2] == PRODUCT)
    wrong = task.copy()
    wrong[two] = next(task[i] for i in products if task[i] != task[two - 1] and i > two)
    with pytest.raises(PlanError):
        check_program(plan, _broken(good, task=wrong))
    # products left without their inverse
    refused("without their inverse", **_without(good, [inverses[-1]]))
    # an op of a task that runs after another step
    other = task.copy()
    other[forwards[0]] = plan.task_ptr[-1] - 1
    refused("not run after step", task=other)
    # a register written with another FFT size
    sizes = good.register_fft_size.copy()
    sizes[register[forwards[0]]] += 2
    refused("another FFT size", register_fft_size=sizes)
    # an unknown kind
    unknown = kind.copy()
    unknown[forwards[0]] = 7
    refused("unknown kind", kind=unknown)
    # a step said to be fused that has ops, and a task never computed
    fused = good.fused.copy()
    fused[plan.after_step[task[forwards[0]]]] = True
    refused("fused but has transform ops", fused=fused)
    last = int(np.flatnonzero(~good.fused)[-1])  # its registers serve no later step
    refused("never computed", **_without(good, range(good.op_ptr[last], good.op_ptr[last + 1])))


def _without(program: TransformProgram, ops: range | list[int]) -> dict[str, list[int]]:
    """The columns of ``program`` with ``ops`` removed."""
    keep = np.setdiff1d(np.arange(program.kind.shape[0]), np.asarray(list(ops), dtype=np.int64))
    ptr = np.searchsorted(keep, program.op_ptr)
    return {
        "op_ptr": ptr.tolist(),
        "kind": program.kind[keep].tolist(),
        "task": program.task[keep].tolist(),
        "register": program.register[keep].tolist(),
    }


def test_cost_counts_each_shared_transform_once() -> None:
    """Transform FLOPs: one forward per distinct (source, FFT size) and one inverse per
    distinct (step, target, FFT size, read offset) over all tasks: an independent count."""
    for plan in (make_plan(3000, "reuse", radix=4, direct_below=8), make_plan(3000, "continuous")):
        a, b, c, d = (x.tolist() for x in (plan.src_start, plan.src_stop, plan.dst_start,
                                            plan.dst_stop))  # fmt: skip
        n, lo, t = plan.fft_size.tolist(), plan.filter_start.tolist(), plan.after_step.tolist()
        sources = set(zip(a, b, n, strict=True))
        targets = {(t[i], c[i], d[i], n[i], c[i] - a[i] - lo[i]) for i in range(plan.num_tasks)}
        fft = lambda m: 2.5 * m * math.log2(max(m, 2))  # noqa: E731
        want = sum(fft(s[2]) for s in sources) + sum(fft(s[3]) for s in targets)
        assert plan.cost(channels=3).transform_flops == pytest.approx(3 * want, rel=1e-12)


def test_reuse_costs_fewer_transforms_than_continuous() -> None:
    continuous = make_plan(32768, "continuous", direct_below=32).cost()
    reuse = make_plan(32768, "reuse", radix=4, direct_below=32).cost()
    assert reuse.transform_vs_floor < 0.75 * continuous.transform_vs_floor
    assert reuse.total_vs_floor < continuous.total_vs_floor


def test_registers_follow_restores_and_resets(rng, backend) -> None:
    """A register written before a snapshot must not serve after the stream changed: the
    spectra are transformed again from the restored inputs (every backend)."""
    phi = decaying_filters(rng, 2, 48)
    u = rng.standard_normal((1, 2, 48))
    conv = OnlineConv(
        backend.asarray(phi, dtype="float64"), 48, schedule="reuse", radix=4, direct_below=2,
        backend=backend, dtype="float64",
    )  # fmt: skip
    assert conv.plan.transforms.shares

    def step(x: np.ndarray) -> np.ndarray:
        return backend.to_numpy(conv.step(backend.asarray(x, dtype="float64")))

    for t in range(21):  # registers of levels 0 and 1 now hold blocks of these inputs
        step(u[..., t])
    saved = conv.state_dict()
    conv.reset()
    for t in range(21):
        step(u[..., t] - 2.0)
    conv.load_state_dict(saved)
    ys = np.stack([step(u[..., t]) for t in range(21, 48)], -1)
    np.testing.assert_allclose(ys, oracle(u, phi)[..., 21:], atol=1e-12, rtol=0)


def test_sharing_can_be_turned_off() -> None:
    tables = make_plan(300, "reuse", radix=4, direct_below=2)
    kwargs = dict(
        window_start=tables.window_start,
        tasks={name: tables.tasks()[:, i] for i, name in enumerate(TASK_COLUMNS)},
    )
    shared = Plan.from_tasks(300, **kwargs)
    alone = Plan.from_tasks(300, **kwargs, share_transforms=False)
    assert shared.transforms.shares and not alone.transforms.shares
    assert alone.transforms.fused.all() and alone.transforms.op_ptr[-1] == 0
    assert shared != alone and shared.fingerprint != alone.fingerprint
    assert alone.cost().transform_flops > shared.cost().transform_flops
