"""Exact rewind of a slot's last steps: an undo journal of what those steps wrote.

Step ``t`` of a slot changes its buffer in two ways: it overwrites slot ``t`` (which held the
output's accumulated future) with the input ``u_t``, and the tasks run after it add into target
ranges of later slots. The plan says which ranges (``dst_start .. dst_stop`` of the tasks
``task_ptr[t] : task_ptr[t+1]``), so saving slot ``t`` before the step and those ranges before
its tasks, and writing them back newest first, returns the buffer to its earlier content bit
for bit. Subtracting the contributions instead would not be exact.

A step that starts a slot's next segment (a slot longer than the pool's ``length``) rewrites
the slot's whole buffer row: its record keeps the row and the cursor from before
(:class:`SegmentRecord`), ``C x length`` values once per segment.

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

__all__ = ["SegmentRecord", "StepRecord", "UndoJournal"]

Array = Any


@dataclass(frozen=True)
class SegmentRecord:
    """A slot as it was before a step started its next segment.

    Attributes
    ----------
    row : array, shape (C, length)
        The slot's buffer row.
    prompt, limit : int
        Positions before the segment that was done, and its steps (all taken).
    history : int
        Inputs the slot's history held.
    """

    row: Array
    prompt: int
    limit: int
    history: int


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
    segment : SegmentRecord or None
        The slot before this step started a new segment (``None``: it did not).
    """

    step: int
    slot_before: Array
    regions: list[tuple[int, Array]] = field(default_factory=list)
    segment: SegmentRecord | None = None

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
            [StepRecord(r.step, r.slot_before, list(r.regions), r.segment) for r in self.records]
        )

    def save_slot(
        self, xp: Any, buffer: Array, row: int, step: int, segment: SegmentRecord | None = None
    ) -> None:
        """Before step ``step`` of ``row`` stores its input: keep what its slot holds (and
        ``segment``, when the step started a new segment)."""
        saved = xp.asarray(buffer[row, :, step], copy=True)
        self.records.append(StepRecord(step, saved, segment=segment))

    def save_targets(self, xp: Any, plan: Plan, buffer: Array, row: int, step: int) -> None:
        """Before the tasks after ``step`` run in ``row``: keep their target ranges."""
        record = self.records[-1]
        for i in range(plan.task_ptr.item(step), plan.task_ptr.item(step + 1)):
            c, d = plan.dst_start.item(i), plan.dst_stop.item(i)
            record.regions.append((c, xp.asarray(buffer[row, :, c:d], copy=True)))

    def undo(self, buffer: Array, row: int, k: int) -> tuple[Array, int, SegmentRecord | None]:
        """Write back what the newest ``k`` steps of ``row`` overwrote, newest first; return
        the buffer, the step ``row`` is back at and, when the steps crossed into new segments,
        the record of the oldest such crossing (the segment ``row`` is back in)."""
        taken = self.records[len(self.records) - k :]
        for record in reversed(taken):
            for c, saved in reversed(record.regions):
                buffer = xpx.at(buffer)[row, :, c : c + saved.shape[-1]].set(saved)
            buffer = xpx.at(buffer)[row, :, record.step].set(record.slot_before)
            if record.segment is not None:
                buffer = xpx.at(buffer)[row, ...].set(record.segment.row)
        del self.records[len(self.records) - k :]
        if not taken:
            return buffer, -1, None
        crossed = [r.segment for r in taken if r.segment is not None]
        first = taken[0]
        step = first.step if first.segment is None else first.segment.limit
        return buffer, step, crossed[0] if crossed else None
