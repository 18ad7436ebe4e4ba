"""The work of one call of a stream pool, grouped: which FFT tasks of which slots run together.

A plan is a function of the step index only, so slots at steps ``t_1 .. t_S`` need the tasks
``task_ptr[t_s] : task_ptr[t_s + 1]`` of the one plan they share. Every task has a *shape*
(:class:`futurefill.plan.TaskShape`: source length, target length, shift, filter slice, FFT
size) and an offset; tasks of equal shape use one filter spectrum, so the tasks of equal shape
due in all the stepped slots are one batched transform: gather their source blocks, one
forward FFT over the stack, one product with the shared spectrum, one inverse FFT, and add each
row into its own slot at its own offset.

Two tasks of one slot may have the same shape after the same step (an epoched plan's blocks);
their targets may overlap, so each task also has a *lane* -- how many tasks of its shape come
before it in its step -- and a group holds one lane of one shape: its rows are distinct slots,
and a scatter-add over them never writes one place twice. Exactness is that of the plan: each
slot still runs exactly its own plan's tasks; only the call that computes them is shared.
"""

from __future__ import annotations

import functools

import numpy as np

from ..grouped_kernels import TaskGroup
from ..plan import Plan

__all__ = ["TaskGroup", "due_groups", "task_lanes"]


@functools.lru_cache(maxsize=16)
def task_lanes(plan: Plan) -> np.ndarray:
    """For every task of ``plan``, how many tasks of the same shape run before it after the
    same step (``0`` for most tasks)."""
    if plan.num_tasks == 0:
        return np.zeros(0, np.int64)
    shape = plan.step_patterns.shape_of_task.astype(np.int64)
    key = plan.after_step.astype(np.int64) * (int(shape.max()) + 1) + shape
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.ones(sorted_key.shape, bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    run_start = np.maximum.accumulate(np.where(first, np.arange(key.size), 0))
    lanes = np.empty_like(key)
    lanes[order] = np.arange(key.size) - run_start
    return lanes


def due_groups(
    plan: Plan,
    rows: np.ndarray,
    steps: np.ndarray,
    *,
    channels: int,
    max_elements: int | None = None,
) -> list[TaskGroup]:
    """The tasks due after ``steps`` in ``rows``, grouped by shape and lane.

    Parameters
    ----------
    plan : Plan
        The plan every row runs (prompt-free: buffer slot = position - prompt of the row).
    rows : ndarray of int, shape (S,)
        Distinct buffer rows being stepped.
    steps : ndarray of int, shape (S,)
        The step each row has just taken (``0 <= steps < plan.length``).
    channels : int
        Channels per row, to size the groups.
    max_elements : int, optional
        Largest ``rows x channels x fft_size`` of one group: a larger group is split into
        several of at most that size (at least one row each), which bounds the scratch memory
        of a call whatever the number of slots that coincide.

    Returns
    -------
    list of TaskGroup
        Ordered by shape, then lane; rows ascending within a group.
    """
    rows = np.asarray(rows, np.int64)
    steps = np.asarray(steps, np.int64)
    ptr = plan.task_ptr
    first, count = ptr[steps].astype(np.int64), (ptr[steps + 1] - ptr[steps]).astype(np.int64)
    total = int(count.sum())
    if total == 0:
        return []
    # every due task: (row, task id), tasks of a row in plan order
    owner = np.repeat(np.arange(rows.size), count)
    task = np.arange(total) - np.repeat(np.cumsum(count) - count, count) + first[owner]
    patterns = plan.step_patterns
    shape = patterns.shape_of_task[task].astype(np.int64)
    lane = task_lanes(plan)[task]
    order = np.lexsort((rows[owner], lane, shape))
    shape, lane, owner, task = shape[order], lane[order], owner[order], task[order]
    starts = np.flatnonzero(np.r_[True, (shape[1:] != shape[:-1]) | (lane[1:] != lane[:-1])])
    stops = np.r_[starts[1:], total]
    groups = []
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        task_shape = patterns.shapes[int(shape[a])]
        per_group = b - a
        if max_elements is not None:
            per_group = max(1, max_elements // (channels * task_shape.fft_size))
        for lo in range(a, b, per_group):
            hi = min(b, lo + per_group)
            groups.append(
                TaskGroup(
                    shape=task_shape,
                    rows=rows[owner[lo:hi]],
                    src=patterns.offsets[task[lo:hi]].astype(np.int64),
                )
            )
    return groups
