"""The stored tables of a plan: what the proof and the cost model read (its task columns,
its error type and :class:`PlanTables`, the base of :class:`~futurefill.plan.Plan`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .spec import PlanSpec

__all__ = ["TASK_COLUMNS", "IntArray", "PlanError", "PlanTables", "readonly"]

#: Task columns, in the order of :meth:`Plan.tasks` and :meth:`Plan.from_tasks`.
TASK_COLUMNS = (
    "after_step",
    "src_start",
    "src_stop",
    "dst_start",
    "dst_stop",
    "filter_start",
    "filter_stop",
    "fft_size",
)

IntArray = npt.NDArray[np.int32]


class PlanError(ValueError):
    """A plan breaks one of its invariants (coverage, causality or FFT sizing).

    Examples
    --------
    >>> from futurefill import Plan
    >>> Plan.from_tasks(4, window_start=[0, 0, 2, 2])  # nothing adds inputs 0, 1 to y[2:]
    Traceback (most recent call last):
    ...
    futurefill.plan._tables.PlanError: output 2: input 0 is never added (inputs missing)
    """


def readonly(a: npt.ArrayLike, dtype: npt.DTypeLike = np.int32) -> IntArray:
    """A contiguous copy (int32 unless told) that cannot be written."""
    arr = np.ascontiguousarray(a, dtype=dtype)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False, repr=False)
class PlanTables:
    """The stored tables of a plan and the sizes derived from them (see
    :class:`~futurefill.plan.Plan`, which adds construction, identity, patterns, the proof
    and the cost)."""

    spec: PlanSpec | None
    length: int
    prompt: int
    origin: int
    window_start: IntArray
    task_ptr: IntArray
    src_start: IntArray
    src_stop: IntArray
    dst_start: IntArray
    dst_stop: IntArray
    filter_start: IntArray
    filter_stop: IntArray
    fft_size: IntArray
    prefill_fft_size: int
    defaulted: frozenset[str] = frozenset()
    share_transforms: bool = True
    key: tuple[Any, ...] = field(default=())

    @property
    def schedule(self) -> str:
        """Name of the schedule (``"custom"`` for a plan built from explicit tables)."""
        return "custom" if self.spec is None else self.spec.schedule

    @property
    def total(self) -> int:
        """Number of positions, ``prompt + length``; filters need at least this many taps."""
        return self.prompt + self.length

    @property
    def prefill_fills_future(self) -> bool:
        """Whether prefill also fills the prompt's contribution to all later outputs."""
        return self.prompt > 0 and self.origin == self.prompt

    @property
    def buffer_length(self) -> int:
        """Length of the per-channel state buffer (inputs kept plus outputs filled ahead)."""
        return self.total - self.origin

    @property
    def num_tasks(self) -> int:
        """Number of FutureFill tasks."""
        return int(self.src_start.shape[0])

    @functools.cached_property
    def slot(self) -> IntArray:
        """Buffer slot of the output (and then the input) of each online step."""
        return readonly(self.prompt - self.origin + np.arange(self.length))

    @functools.cached_property
    def window_slot(self) -> IntArray:
        """Buffer slot of the first input of each step's local window."""
        return readonly(self.window_start.astype(np.int64) - self.origin)

    @property
    def window_length(self) -> int:
        """Longest local window of any step (number of taps summed directly)."""
        return int((self.slot.astype(np.int64) - self.window_slot).max()) + 1

    @property
    def after_step(self) -> IntArray:
        """The online step after which each task runs (derived from :attr:`task_ptr`)."""
        return np.repeat(np.arange(self.length, dtype=np.int32), np.diff(self.task_ptr))

    @functools.cached_property
    def spectrum_keys(self) -> tuple[tuple[int, int, int], ...]:
        """Distinct ``(filter_start, filter_stop, fft_size)`` triples; one spectrum each."""
        if self.num_tasks == 0:
            return ()
        triples = np.stack([self.filter_start, self.filter_stop, self.fft_size], axis=1)
        return tuple((int(lo), int(hi), int(n)) for lo, hi, n in np.unique(triples, axis=0))
