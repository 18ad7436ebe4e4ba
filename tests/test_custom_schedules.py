"""Schedules no executor has seen, defined in this file alone, run exactly on every backend.

Two kinds: a schedule registered here with :func:`futurefill.register_schedule` (window
blocks of an odd size; after each block, one task adds the block's inputs to *every* later
output, so target lengths differ from task to task), and plans written out by hand with
:meth:`futurefill.Plan.from_tasks` (random block partitions). Each runs through ``step``,
``emit``/``advance`` over split channels, ``prefill`` and ``rollout`` (the compiled rollout
on JAX). Tolerance as in ``test_online.py``: 1e-12 of the largest output in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

import futurefill
from futurefill import OnlineConv, Plan, PlanSpec
from futurefill.executor import Executor
from futurefill.plan import Tiling, positive_int, register_schedule

from .conftest import decaying_filters, oracle

RTOL64 = 1e-12


@register_schedule("block_to_rest", params={"block": positive_int}, replace=True)
def block_to_rest(length: int, prompt: int, *, block: int) -> Tiling:
    """Window blocks of ``block`` steps; each finished block fills all later outputs."""
    steps = np.arange(length)
    ends = np.arange(block, length, block)  # first step of every block but the first
    tasks = {
        "after_step": ends - 1,
        "src_start": prompt + ends - block,
        "src_stop": prompt + ends,
        "dst_start": prompt + ends,
        "dst_stop": np.full_like(ends, prompt + length),
    }
    return Tiling(window_start=prompt + (steps // block) * block, tasks=tasks)


def random_partition_plan(rng: np.random.Generator, length: int, prompt: int) -> Plan:
    """Random window blocks; after each block, all inputs so far fill the next block."""
    cuts = np.unique(rng.integers(1, length, size=length // 6)) if length > 1 else np.zeros(0, int)
    firsts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [length]])
    window_start = prompt + np.repeat(firsts, stops - firsts)
    tasks = {
        "after_step": firsts[1:] - 1,
        "src_start": np.full(len(cuts), prompt),
        "src_stop": prompt + firsts[1:],
        "dst_start": prompt + firsts[1:],
        "dst_stop": prompt + stops[1:],
    }
    return Plan.from_tasks(length, prompt=prompt, window_start=window_start, tasks=tasks)


def plans(rng: np.random.Generator, length: int, prompt: int) -> list[Plan]:
    return [
        futurefill.make_plan(length, PlanSpec("block_to_rest", block=7), prompt=prompt),
        futurefill.make_plan(length, "block_to_rest", prompt=prompt, block=1),
        random_partition_plan(rng, length, prompt),
    ]


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_registered_schedule_is_listed_and_validated() -> None:
    assert "block_to_rest" in futurefill.list_schedules()
    plan = futurefill.make_plan(50, "block_to_rest", prompt=3, block=7)
    plan.validate()
    assert plan.spec == PlanSpec("block_to_rest", block=7)
    assert plan.window_block_size == 7
    with pytest.raises(ValueError, match="takes block, not epoch"):
        futurefill.make_plan(50, "block_to_rest", epoch=3, block=7)


@pytest.mark.parametrize("prompt", [0, 5])
# length 64 on JAX (a kernel compiled per task shape of each random plan): nox -s tests_deep
@pytest.mark.parametrize("length", [1, 13, pytest.param(64, marks=pytest.mark.slow_on("jax"))])
def test_step_and_prefill_are_exact(backend: Executor, rng, prompt: int, length: int) -> None:
    B, C = 2, 3
    phi = decaying_filters(rng, C, prompt + length)
    u = rng.standard_normal((B, C, prompt + length))
    want = oracle(u, phi)
    for plan in plans(rng, length, prompt):
        conv = OnlineConv.from_plan(phi, plan, batch=B, backend=backend, dtype="float64")
        got = []
        if prompt:
            got.append(backend.to_numpy(conv.prefill(backend.asarray(u[..., :prompt], "float64"))))
        for t in range(length):
            y = conv.step(backend.asarray(np.ascontiguousarray(u[..., prompt + t]), "float64"))
            got.append(backend.to_numpy(y)[..., None])
        assert _relative_error(np.concatenate(got, -1), want) <= RTOL64, plan


def test_emit_advance_over_split_channels(backend: Executor, rng) -> None:
    P, L, B, C = 4, 40, 1, 5
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((B, C, P + L))
    want = oracle(u, phi)[..., P:]
    for plan in plans(rng, L, P):
        conv = OnlineConv.from_plan(phi, plan, batch=B, backend=backend, dtype="float64")
        for part in (slice(0, 2), slice(2, 5)):  # each layer prefills its own channels
            conv.prefill(backend.asarray(u[:, part, :P], "float64"), channels=part)
        for t in range(L):
            ut = backend.asarray(np.ascontiguousarray(u[..., P + t]), "float64")
            ys = [conv.emit(ut[:, 2:], slice(2, 5)), conv.emit(ut[:, :2], slice(0, 2))]
            conv.advance()
            y = np.concatenate([backend.to_numpy(ys[1]), backend.to_numpy(ys[0])], axis=1)
            np.testing.assert_allclose(y, want[..., t], rtol=0, atol=RTOL64 * np.abs(want).max())


@pytest.mark.slow_on("jax")  # a compiled rollout per plan (nox -s tests_deep)
@pytest.mark.parametrize("prompt", [0, 6])
def test_rollout_with_feedback_is_exact(backend: Executor, rng, prompt: int) -> None:
    """``u[t+1] = tanh(y[t])``, split into rollouts that start and stop inside blocks."""
    L, B, C = 61, 2, 2
    phi = decaying_filters(rng, C, prompt + L) * 0.5
    u_prompt = rng.standard_normal((B, C, prompt))
    u0 = rng.standard_normal((B, C))
    xp = backend.xp
    for plan in plans(rng, L, prompt):
        conv = OnlineConv.from_plan(phi, plan, batch=B, backend=backend, dtype="float64")
        if prompt:
            conv.prefill(backend.asarray(u_prompt, "float64"))
        first = conv.step(backend.asarray(u0, "float64"))
        parts = [backend.to_numpy(first)[..., None]]
        u = xp.tanh(first)
        for steps in (3, 11, None):  # the last one: all remaining steps
            ys = conv.rollout(u, xp.tanh, steps)
            parts.append(backend.to_numpy(ys))
            u = xp.tanh(ys[..., -1])
        got = np.concatenate(parts, -1)
        inputs = np.concatenate([u_prompt, u0[..., None], np.tanh(got[..., :-1])], -1)
        want = oracle(inputs, phi)[..., prompt:]
        assert _relative_error(got, want) <= RTOL64, plan
