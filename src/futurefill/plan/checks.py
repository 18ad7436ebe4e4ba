"""The proof that a plan is exact and causal: :func:`validate_plan`."""

from __future__ import annotations

import numpy as np

from ._tables import TASK_COLUMNS, PlanError, PlanTables

__all__ = ["validate_plan"]


def validate_plan(plan: PlanTables) -> None:
    """Prove ``plan`` exact and causal, or raise :class:`~futurefill.plan.PlanError`.

    Checks that (1) every pair (input ``s``, output ``j``) with ``s <= j`` is covered exactly
    once, by the prefill, the local window of ``j`` or one task; (2) no task reads an input
    not yet known or writes an output already returned; (3) every FFT task has enough filter
    taps and an FFT long enough that circular wrap-around cannot reach the outputs it reads.
    The coverage check tiles each output's inputs with intervals: O(sum of task output
    lengths) time and memory, i.e. O(L log L) for the continuous schedule.
    """
    _check_tables(plan)
    _check_tasks(plan)
    _check_coverage(plan)


def _check_tables(plan: PlanTables) -> None:
    L = plan.length
    pos = plan.prompt + np.arange(L, dtype=np.int64)
    if plan.window_start.shape != (L,) or plan.task_ptr.shape != (L + 1,):
        raise PlanError("window_start must have `length` entries and task_ptr `length+1`")
    if plan.task_ptr[0] != 0 or plan.task_ptr[-1] != plan.num_tasks:
        raise PlanError("task_ptr must start at 0 and end at the number of tasks")
    if np.any(np.diff(plan.task_ptr) < 0):
        raise PlanError("task_ptr must be non-decreasing")
    if np.any(plan.window_start > pos) or np.any(plan.window_start < plan.origin):
        raise PlanError("a local window starts after its step or before the kept inputs")
    if plan.prompt > 0 and not plan.prefill_fills_future and plan.origin != 0:
        raise PlanError("a prompt that is not filled ahead must be kept (origin 0)")
    if plan.prompt > 0:
        P, L = plan.prompt, plan.length
        need = (2 * P + L - 1) if plan.prefill_fills_future else (2 * P - 1)
        if plan.prefill_fft_size < need:
            raise PlanError("the prefill FFT is too short")


def _check_tasks(plan: PlanTables) -> None:
    P = plan.prompt
    a, b, c, d, lo, hi, n = (getattr(plan, col).astype(np.int64) for col in TASK_COLUMNS[1:])
    t = plan.after_step.astype(np.int64)
    if np.any(a >= b) or np.any(c >= d):
        raise PlanError("every task needs a non-empty source and target range")
    if np.any(b > P + t + 1):
        raise PlanError("a task reads an input that is not known after its step")
    if np.any(c < P + t + 1):
        raise PlanError("a task writes an output that was already returned")
    if np.any(a < plan.origin) or np.any(d > plan.total):
        raise PlanError("a task reaches outside the kept positions")
    if np.any(lo < 0) or np.any(lo > c - b + 1) or np.any(hi < d - a):
        raise PlanError("a task's filter slice misses taps it needs")
    if np.any(hi > plan.total) or np.any(hi - lo > n):
        raise PlanError("a task's filter slice is longer than the filters or its FFT")
    if np.any(n < b + hi - c - 1) or np.any(n < d - a - lo):
        raise PlanError("a task's FFT is too short: circular wrap-around reaches its outputs")


def _check_coverage(plan: PlanTables) -> None:
    """For every online output j, the intervals [window_start, j+1), the tasks' [src_start,
    src_stop) with j in [dst_start, dst_stop) and, if the prompt was filled ahead,
    [0, prompt) must tile [0, j+1) exactly."""
    L, P = plan.length, plan.prompt
    pos = P + np.arange(L, dtype=np.int64)
    a, b, c, d = (getattr(plan, col).astype(np.int64) for col in TASK_COLUMNS[1:5])
    counts = d - c
    js = np.repeat(c, counts) + (
        np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    iv_j = np.concatenate([pos, js])
    iv_lo = np.concatenate([plan.window_start.astype(np.int64), np.repeat(a, counts)])
    iv_hi = np.concatenate([pos + 1, np.repeat(b, counts)])
    if plan.prefill_fills_future:
        iv_j = np.concatenate([iv_j, pos])
        iv_lo = np.concatenate([iv_lo, np.zeros(L, np.int64)])
        iv_hi = np.concatenate([iv_hi, np.full(L, P, np.int64)])
    order = np.lexsort((iv_lo, iv_j))
    iv_j, iv_lo, iv_hi = iv_j[order], iv_lo[order], iv_hi[order]
    first = np.ones(iv_j.shape, bool)
    first[1:] = iv_j[1:] != iv_j[:-1]
    last = np.ones(iv_j.shape, bool)
    last[:-1] = first[1:]
    if not np.array_equal(iv_j[first], pos):
        raise PlanError("some output is covered by no interval")
    if np.any(iv_lo[first] != 0):
        bad = int(iv_j[first][np.argmax(iv_lo[first] != 0)])
        raise PlanError(f"output {bad}: the first inputs are never added")
    if np.any(iv_hi[last] != iv_j[last] + 1):
        bad = int(iv_j[last][np.argmax(iv_hi[last] != iv_j[last] + 1)])
        raise PlanError(f"output {bad}: inputs are missing or counted beyond the output")
    gap = iv_lo[~first] != iv_hi[np.flatnonzero(~first) - 1]
    if np.any(gap):
        bad = int(iv_j[~first][np.argmax(gap)])
        raise PlanError(f"output {bad}: inputs counted twice or skipped")
