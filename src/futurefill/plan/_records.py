"""The small records of plans: a task in an executor's buffer (:class:`TaskOffsets`), a task
shape and the step patterns compiled backends read (:class:`TaskShape`, :class:`StepPatterns`),
and what a schedule builder returns (:class:`Tiling`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy.typing as npt

from ._tables import IntArray

__all__ = ["StepPatterns", "TaskOffsets", "TaskShape", "Tiling"]


class TaskOffsets(NamedTuple):
    """One task in the coordinates of an executor's buffer (slot = position - origin).

    ``fill_future(buffer[..., src_start:src_stop], spectra[spectrum], fft_size, read_start,
    read_start + dst_stop - dst_start)`` is added to ``buffer[..., dst_start:dst_stop]``.

    Examples
    --------
    >>> import futurefill
    >>> futurefill.make_plan(8, "continuous").task_offsets(0)
    TaskOffsets(src_start=0, src_stop=1, dst_start=1, dst_stop=2, read_start=0, fft_size=2,
                spectrum=(1, 2, 2))
    """

    src_start: int
    src_stop: int
    dst_start: int
    dst_stop: int
    read_start: int
    fft_size: int
    spectrum: tuple[int, int, int]


class TaskShape(NamedTuple):
    """A task up to where it sits: a source block of ``src_length`` slots starting at some
    offset ``a`` adds to ``dst_length`` slots starting at ``a + shift``.

    Examples
    --------
    >>> import futurefill
    >>> shape = futurefill.make_plan(8, "continuous").step_patterns.shapes[0]
    >>> shape
    TaskShape(src_length=1, dst_length=1, shift=1, filter_start=1, filter_stop=2, fft_size=2)
    >>> shape.read_start, shape.spectrum
    (0, (1, 2, 2))
    """

    src_length: int
    dst_length: int
    shift: int
    filter_start: int
    filter_stop: int
    fft_size: int

    @property
    def read_start(self) -> int:
        """Where the first target sits in the linear convolution of the block."""
        return self.shift - self.filter_start

    @property
    def spectrum(self) -> tuple[int, int, int]:
        """The ``(filter_start, filter_stop, fft_size)`` key of the filter spectrum used."""
        return (self.filter_start, self.filter_stop, self.fft_size)


@dataclass(frozen=True)
class StepPatterns:
    """The plan as compiled backends want it: static task shapes, dynamic offsets.

    Attributes
    ----------
    shapes : tuple of TaskShape
        The distinct task shapes of the plan.
    shape_of_task : ndarray of int32, shape (num_tasks,)
        Index into :attr:`shapes` of every task, in plan order.
    offsets : ndarray of int32, shape (num_tasks,)
        Source slot ``a`` of every task (its target starts at ``a + shape.shift``).
    patterns : tuple of tuple of int
        Pattern ``p`` is the list of shape indices of the tasks run after a step, in order;
        pattern 0 is the empty list.
    pattern_of_step : ndarray of int32, shape (length,)
        The pattern run after each step; its tasks are ``task_ptr[t]:task_ptr[t+1]``.

    Examples
    --------
    The continuous schedule over 8 steps has three task shapes (FFT sizes 2, 4, 8), each
    step running at most one task:

    >>> import futurefill
    >>> patterns = futurefill.make_plan(8, "continuous").step_patterns
    >>> [s.fft_size for s in patterns.shapes], patterns.patterns
    ([2, 4, 8], ((), (0,), (1,), (2,)))
    >>> patterns.pattern_of_step.tolist()  # step 3 runs shape 2, step 7 nothing
    [1, 2, 1, 3, 1, 2, 1, 0]
    """

    shapes: tuple[TaskShape, ...]
    shape_of_task: IntArray
    offsets: IntArray
    patterns: tuple[tuple[int, ...], ...]
    pattern_of_step: IntArray


class Tiling(NamedTuple):
    """What a schedule builder returns: the tables :meth:`Plan.from_tasks` takes.

    Attributes
    ----------
    window_start : array-like of int, shape (length,)
        First input position summed directly by each online step.
    tasks : mapping, optional
        Task columns by name (see :meth:`Plan.from_tasks`); no tasks when omitted.
    keep_prompt : bool
        Keep the prompt inputs instead of filling their future at prefill.

    Examples
    --------
    >>> import futurefill
    >>> from futurefill.plan import Tiling
    >>> tiling = Tiling(window_start=[0, 0, 2, 2], tasks={
    ...     "after_step": [1], "src_start": [0], "src_stop": [2], "dst_start": [2],
    ...     "dst_stop": [4]})
    >>> futurefill.Plan.from_tasks(4, window_start=tiling.window_start, tasks=tiling.tasks)
    Plan('custom', length=4, prompt=0, tasks=1)
    """

    window_start: npt.ArrayLike
    tasks: Mapping[str, npt.ArrayLike] | None = None
    keep_prompt: bool = False
