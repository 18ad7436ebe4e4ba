"""Exact rewind of a slot's last steps: an undo journal of what those steps wrote.

Step ``t`` of a slot changes its buffer in two ways: it overwrites slot ``t`` (which held the
output's accumulated future) with the input ``u_t``, and the tasks run after it add into target
ranges of later slots. The plan says which ranges (``dst_start .. dst_stop`` of the tasks
``task_ptr[t] : task_ptr[t+1]``), so saving slot ``t`` before the step and those ranges before
its tasks, and writing them back newest first, returns the buffer to its earlier content bit
for bit. Subtracting the contributions instead would not be exact.

The cost of keeping a journal is the size of what the journaled steps write: for the
``continuous`` schedule about ``2 log2(L)`` values per channel per step on average (a task of
``2**k`` targets every ``2**k`` steps), more for a step after which a large task runs; a
rewind copies the same amount back and runs no transform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import array_api_extra as xpx

from ..plan import Plan

__all__ = ["StepRecord", "UndoJournal"]

Array = Any


@dataclass
class StepRecord:
    """What one step of one slot overwrote.

    Attributes
    ----------
    step : int
        The step (its buffer slot is ``step``).
    slot_before : array, shape (C,)
        Slot ``step`` before the input was stored (the accumulated future of the output).
    regions : list of (int, array)
        ``(first slot, values (C, k))`` of every target range before the step's tasks ran.
    """

    step: int
    slot_before: Array
    regions: list[tuple[int, Array]] = field(default_factory=list)

    @property
    def values(self) -> int:
        """Values saved per channel."""
        return 1 + sum(int(v.shape[-1]) for _, v in self.regions)


@dataclass
class UndoJournal:
    """The records of a slot's steps since it was marked (oldest first)."""

    records: list[StepRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def copy(self) -> UndoJournal:
        """An independent journal with the same records (saved arrays are never written)."""
        return UndoJournal(
            [StepRecord(r.step, r.slot_before, list(r.regions)) for r in self.records]
        )

    def save_slot(self, xp: Any, buffer: Array, row: int, step: int) -> None:
        """Before step ``step`` of ``row`` stores its input: keep what its slot holds."""
        self.records.append(StepRecord(step, xp.asarray(buffer[row, :, step], copy=True)))

    def save_targets(self, xp: Any, plan: Plan, buffer: Array, row: int, step: int) -> None:
        """Before the tasks after ``step`` run in ``row``: keep their target ranges."""
        record = self.records[-1]
        for i in range(plan.task_ptr.item(step), plan.task_ptr.item(step + 1)):
            c, d = plan.dst_start.item(i), plan.dst_stop.item(i)
            record.regions.append((c, xp.asarray(buffer[row, :, c:d], copy=True)))

    def undo(self, buffer: Array, row: int, k: int) -> tuple[Array, int]:
        """Write back what the newest ``k`` steps of ``row`` overwrote, newest first; return
        the buffer and the step ``row`` is back at."""
        taken = self.records[len(self.records) - k :]
        step = taken[0].step if taken else -1
        for record in reversed(taken):
            for c, saved in reversed(record.regions):
                buffer = xpx.at(buffer)[row, :, c : c + saved.shape[-1]].set(saved)
            buffer = xpx.at(buffer)[row, :, record.step].set(record.slot_before)
        del self.records[len(self.records) - k :]
        return buffer, step
