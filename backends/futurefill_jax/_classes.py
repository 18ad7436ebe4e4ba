"""Kernel classes: the plan's task shapes grouped into as few static XLA kernels as possible.

XLA compiles static shapes. A plan's :attr:`~futurefill.Plan.step_patterns` gives each task a
static shape and a dynamic offset; tasks that share a filter spectrum are served by one kernel
(one compilation) whose source and target windows are the largest of the group:

* ``uniform`` classes (every task reads ``k`` slots, writes ``m`` slots at the same shift,
  except tasks cut at the end of the buffer) read a fixed slice of the convolution;
* the others mask their source window to ``[a, b)`` and their target window to ``[c, d)`` and
  read the circular convolution at a dynamic offset, which is exact because the plan's FFT
  sizes leave no wrap-around on the outputs a task writes (:meth:`futurefill.Plan.validate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from futurefill.plan import Plan

__all__ = ["Kernel", "TaskClass", "classify"]


class Kernel(NamedTuple):
    """The static sizes of a kernel class (hashable: a jit static argument).

    Attributes
    ----------
    spectrum : tuple of int
        ``(filter_start, filter_stop, fft_size)`` of the filter spectrum.
    k, m : int
        Static source and target window lengths.
    shift : int
        Target start minus source start (meaningful when ``uniform``).
    uniform : bool
        Every task reads exactly ``k`` slots and writes ``m`` slots at ``shift`` (a task cut
        at the end of the buffer writes its tail past the end, where nothing is read).
    """

    spectrum: tuple[int, int, int]
    k: int
    m: int
    shift: int
    uniform: bool

    @property
    def fft_size(self) -> int:
        return self.spectrum[2]

    @property
    def filter_start(self) -> int:
        return self.spectrum[0]

    @property
    def read_start(self) -> int:
        """Where the first target sits in the convolution of a uniform task's block."""
        return self.shift - self.filter_start


@dataclass(frozen=True, eq=False)
class TaskClass:
    """One kernel and the tasks it runs.

    Attributes
    ----------
    kernel : Kernel
        The static sizes.
    rows : ndarray of int32, shape (n, 4)
        ``(a, b, c, d)`` slots of the class's tasks, in plan order.
    steps : ndarray of int32, shape (n,)
        The step after which each of those tasks runs.
    """

    kernel: Kernel
    rows: np.ndarray
    steps: np.ndarray

    def pointers(self, length: int) -> np.ndarray:
        """``ptr[t]`` = number of the class's tasks run after steps ``< t``, for ``t <= length``."""
        counts = np.bincount(self.steps, minlength=length)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)


def classify(plan: Plan, skip: np.ndarray | None = None) -> tuple[list[TaskClass], np.ndarray]:
    """The kernel classes of ``plan`` and the class of every task (plan order); tasks where
    ``skip`` is true are left out (run elsewhere), and classes left without tasks dropped."""
    patterns = plan.step_patterns
    o = plan.origin
    rows = (
        np.stack([plan.src_start, plan.src_stop, plan.dst_start, plan.dst_stop], axis=1).astype(
            np.int64
        )
        - o
    )
    steps = plan.after_step
    keys = sorted({shape.spectrum for shape in patterns.shapes})
    class_of_shape = np.array([keys.index(s.spectrum) for s in patterns.shapes], np.int64)
    class_of_task = class_of_shape[patterns.shape_of_task] if plan.num_tasks else np.zeros(0, int)
    classes = []
    for j, key in enumerate(keys):
        mine = np.flatnonzero((class_of_task == j) & (True if skip is None else ~skip))
        if mine.size == 0:
            continue
        r = rows[mine]
        src, dst, shift = r[:, 1] - r[:, 0], r[:, 3] - r[:, 2], r[:, 2] - r[:, 0]
        k, m = int(src.max()), int(dst.max())
        cut_at_end = (dst == m) | (r[:, 3] == plan.buffer_length)
        uniform = bool(np.all(src == k) and np.all(shift == shift[0]) and np.all(cut_at_end))
        classes.append(
            TaskClass(
                kernel=Kernel(spectrum=key, k=k, m=m, shift=int(shift[0]), uniform=uniform),
                rows=r.astype(np.int32),
                steps=steps[mine].astype(np.int32),
            )
        )
    return classes, class_of_task
