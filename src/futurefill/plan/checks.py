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
    Time O(n log n) and memory O(n) in the plan's size ``n = tasks + length`` (the coverage is
    proved from the corners of the pieces, never pair by pair).
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
    a, b, c, d, lo, hi, n = (getattr(plan, col) for col in TASK_COLUMNS[1:])
    t = plan.after_step
    wide = np.int64  # sums of two columns may pass 2**31: one int64 temporary at a time
    if np.any(a >= b) or np.any(c >= d):
        raise PlanError("every task needs a non-empty source and target range")
    if np.any(b > np.add(t, P + 1, dtype=wide)):
        raise PlanError("a task reads an input that is not known after its step")
    if np.any(c < np.add(t, P + 1, dtype=wide)):
        raise PlanError("a task writes an output that was already returned")
    if np.any(a < plan.origin) or np.any(d > plan.total):
        raise PlanError("a task reaches outside the kept positions")
    if (
        np.any(lo < 0)
        or np.any(lo > np.subtract(c, b, dtype=wide) + 1)
        or np.any(hi < np.subtract(d, a, dtype=wide))
    ):
        raise PlanError("a task's filter slice misses taps it needs")
    if np.any(hi > plan.total) or np.any(np.subtract(hi, lo, dtype=wide) > n):
        raise PlanError("a task's filter slice is longer than the filters or its FFT")
    if np.any(n < np.add(b, hi, dtype=wide) - c - 1) or np.any(
        n < np.subtract(d, a, dtype=wide) - lo
    ):
        raise PlanError("a task's FFT is too short: circular wrap-around reaches its outputs")


def _check_coverage(plan: PlanTables) -> None:
    """Prove that the prefill, the local windows and the tasks cover every pair (input ``s``,
    output ``j``) with ``s <= j`` of the online outputs exactly once.

    Each piece is a rectangle of pairs: a task ``[src_start, src_stop) x [dst_start,
    dst_stop)``, a window ``[window_start, j + 1) x [j, j + 1)``, the prefill ``[0, prompt) x
    [prompt, total)``. Summed, their indicator functions must equal that of the triangle. A
    function that vanishes far away is the sum of its mixed differences below and to the
    left of a point, and the mixed difference of a rectangle is ``+1`` at two opposite corners
    and ``-1`` at the other two: the sum equals the triangle exactly when the corners counted
    ``+1`` (pieces' and the triangle's ``-1`` ones) and those counted ``-1`` are the same
    multiset. Two sorts of ``2 * tasks + length + 1`` keys: O(n log n) time, 16 bytes a key.

    The first corner (by output, then input) where the two differ is the first pair covered
    ``1 + difference`` times instead of once: the error names it.
    """
    L, P, T, total = plan.length, plan.prompt, plan.num_tasks, plan.total
    width = total + 1  # key of the point (s, j): j * width + s, s and j in 0 .. total
    corners = ((plan.src_start, plan.dst_start), (plan.src_stop, plan.dst_stop))
    crossed = ((plan.src_stop, plan.dst_start), (plan.src_start, plan.dst_stop))
    window = plan.window_start
    outputs = np.arange(P, total, dtype=np.int64)
    corner = P if plan.prefill_fills_future else 0  # where the prefill meets the triangle
    plus = _keys(corners, (window, outputs), (corner, total), width, T + T + L + 1)
    minus = _keys(crossed, (window, outputs + 1), (corner, P), width, T + T + L + 1)
    del outputs
    plus.sort()
    minus.sort()
    differ = np.flatnonzero(plus != minus)
    if differ.size == 0:
        return
    i = int(differ[0])
    key = int(min(plus[i], minus[i]))
    times = 1 + int(
        np.searchsorted(plus, key, "right")
        - np.searchsorted(plus, key)
        - np.searchsorted(minus, key, "right")
        + np.searchsorted(minus, key)
    )
    j, s = divmod(key, width)
    if times > 1:
        raise PlanError(f"output {j}: input {s} is counted twice or more ({times} times)")
    raise PlanError(f"output {j}: input {s} is never added (inputs missing)")


def _keys(
    pairs: tuple[tuple[np.ndarray, np.ndarray], ...],
    row: tuple[np.ndarray, np.ndarray],
    extra: tuple[int, int],
    width: int,
    size: int,
) -> np.ndarray:
    """``j * width + s`` of the task corners ``pairs`` (``(s, j)`` columns), then of the
    window corners ``row`` and of one more point ``extra``, in one int64 array."""
    keys = np.empty(size, np.int64)
    at = 0
    for s, j in (*pairs, row):
        view = keys[at : at + s.shape[0]]
        np.multiply(j, width, out=view, dtype=np.int64)
        view += s
        at += s.shape[0]
    keys[at] = extra[1] * width + extra[0]
    return keys
