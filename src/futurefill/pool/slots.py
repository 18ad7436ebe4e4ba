"""Which slots of a pool are in use, where each stands, and the checks of slot arguments.

The host-side half of a :class:`futurefill.StreamPool`: small NumPy arrays indexed by slot (in
use, steps taken, steps allowed, prompt length, channels emitted at the current step), the
prompts still being given, the undo journals, and the slots left inconsistent by a failed call.
Nothing here touches the backend's arrays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..executor import Executor
from ..memory import check_memory
from ..plan import Plan
from .journal import UndoJournal
from .prompt import PromptInputs

__all__ = ["PoolStats", "SlotTable", "channel_range", "check_pool_size", "check_taps"]


@dataclass
class PoolStats:
    """Counters of the work a pool ran (they only grow; :meth:`StreamPool.stats` resets).

    Attributes
    ----------
    calls : int
        Calls that ran tasks (``step`` and ``advance``).
    slot_steps : int
        Steps taken, summed over slots.
    tasks : int
        FutureFill tasks run.
    transforms : int
        Batched transform pairs (kernel calls) that ran them.
    """

    calls: int = 0
    slot_steps: int = 0
    tasks: int = 0
    transforms: int = 0

    def count(self, slot_steps: int, groups: Sequence[Any]) -> None:
        """Count one call that stepped ``slot_steps`` slots and ran ``groups`` (task groups)."""
        self.calls += 1
        self.slot_steps += slot_steps
        self.tasks += sum(len(g) for g in groups)
        self.transforms += len(groups)


class SlotTable:
    """The cursor of every slot of a pool of ``capacity`` slots and ``channels`` channels.

    A slot runs the pool's plan of ``length`` steps in *segments*: its first segment starts
    after its prompt, and a slot allowed more steps than ``length`` (``wanted`` larger, or 0:
    open-ended, until the filters' ``taps`` run out) starts another segment when one is done,
    with every position so far as the new segment's prompt (its *history*, kept for such slots
    only). ``prompt`` is the positions before the current segment, ``step`` the steps taken in
    it, ``limit`` the steps it has; ``admitted`` is the prompt the slot was admitted with.
    """

    def __init__(self, capacity: int, channels: int, *, length: int, taps: int) -> None:
        self.length = length
        self.taps = taps
        self.active = np.zeros(capacity, bool)
        self.step = np.zeros(capacity, np.int64)
        self.limit = np.zeros(capacity, np.int64)
        self.prompt = np.zeros(capacity, np.int64)
        self.admitted = np.zeros(capacity, np.int64)
        self.wanted = np.zeros(capacity, np.int64)  # steps asked for at admission; 0: open
        self.closed = np.zeros(capacity, bool)  # the prompt was folded in: no more prefill
        self.emitted = np.zeros((capacity, channels), bool)
        self.pending: dict[int, PromptInputs] = {}
        self.history: dict[int, PromptInputs] = {}
        self.journal: dict[int, UndoJournal] = {}
        self.poisoned: dict[int, str] = {}

    @property
    def capacity(self) -> int:
        """Number of slots."""
        return int(self.active.size)

    def in_use(self) -> list[int]:
        """Slots in use, ascending."""
        return np.flatnonzero(self.active).tolist()

    def free_row(self, why: str) -> int:
        """The lowest free slot; ``RuntimeError`` (saying ``why`` a slot was wanted) if none."""
        free = np.flatnonzero(~self.active)
        if free.size == 0:
            raise RuntimeError(f"all {self.capacity} slots are in use: {why}")
        return int(free[0])

    def claim(self, row: int, wanted: int) -> None:
        """Mark ``row`` in use at step 0, allowed ``wanted`` steps (0: open-ended), with nothing
        pending, journaled or emitted."""
        for kept in (self.journal, self.pending, self.history, self.poisoned):
            kept.pop(row, None)
        self.active[row] = True
        self.step[row] = 0
        self.prompt[row] = 0
        self.admitted[row] = 0
        self.wanted[row] = wanted
        self.limit[row] = min(self.length, self.end(row))
        self.closed[row] = False
        self.emitted[row] = False

    def copy_row(self, row: int, new: int, xp: Any) -> None:
        """Give the claimed row ``new`` the cursor, prompt, history and journal of ``row``."""
        for cursor in (self.step, self.limit, self.prompt, self.admitted, self.wanted):
            cursor[new] = cursor[row]
        self.closed[new] = self.closed[row]
        for kept in (self.pending, self.history):
            if row in kept:
                kept[new] = kept[row].copy(xp)
        if row in self.journal:
            self.journal[new] = self.journal[row].copy()

    def free(self, row: int) -> None:
        """Mark ``row`` free."""
        self.claim(row, 1)
        self.active[row] = False

    def end(self, row: int) -> int:
        """The position ``row`` stops at: its admission prompt plus the steps it asked for, or
        the filters' taps for an open-ended slot."""
        wanted = int(self.wanted[row])
        return self.admission_prompt(row) + wanted if wanted else self.taps

    def admission_prompt(self, row: int) -> int:
        """The prompt ``row`` was admitted with (given so far, while it is pending)."""
        pending = self.pending.get(row)
        return int(pending.lengths.max()) if pending is not None else int(self.admitted[row])

    def check_room(self, row: int, prompt: int) -> None:
        """Raise unless a prompt of ``prompt`` inputs leaves ``row`` the steps it asked for (an
        open-ended slot: one step)."""
        check_taps(self.taps, prompt, int(self.wanted[row]) or 1)

    def prompt_inputs(self, row: int, executor: Executor, dtype: Any) -> PromptInputs:
        """The prompt ``row`` is being given (an empty one the first time)."""
        pending = self.pending.get(row)
        if pending is None:
            pending = self.pending[row] = PromptInputs.empty(executor, self.emitted.shape[1], dtype)
        return pending

    def save_targets(self, xp: Any, plan: Plan, buffer: Any, rows: np.ndarray) -> None:
        """Journal, for the marked rows of ``rows``, what the tasks of their step add to."""
        for row in self.noted(rows, pending=False):
            journal = self.journal.get(row)
            if journal is not None:
                journal.save_targets(xp, plan, buffer, row, int(self.step[row]))

    def noted(self, rows: np.ndarray, *, pending: bool = True) -> list[int]:
        """The rows of ``rows`` with an undo journal or (with ``pending``) a pending prompt, in
        order: with :meth:`segment_ends`, the only ones a step has per-slot work for (none,
        without a Python loop over ``rows``, when no slot has either)."""
        kept = [self.journal] + ([self.pending] if pending else [])
        if not any(kept):
            return []
        return [row for row in rows.tolist() if any(row in d for d in kept)]

    def check_prompts(self, rows: np.ndarray) -> None:
        """Raise, before anything changes, unless every pending prompt of ``rows`` has the
        same length in every channel (it is folded in at their next step)."""
        if not self.pending:
            return
        for row in rows.tolist():
            pending = self.pending.get(row)
            if pending is not None:
                pending.length()

    def position(self, row: int) -> int:
        """Position of the next output of ``row``."""
        pending = self.pending.get(row)
        if pending is not None:
            return int(pending.lengths.max())
        return int(self.prompt[row] + self.step[row])

    def segment_ends(self, rows: np.ndarray) -> np.ndarray:
        """The rows of ``rows`` whose segment is done (they start the next one at this step)."""
        return rows[self.closed[rows] & (self.step[rows] >= self.limit[rows])]

    def row(self, slot: int, *, whole: bool = False) -> int:
        """``slot`` checked: an int naming a slot in use, not poisoned (``whole``: not inside
        a step)."""
        if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)):
            raise TypeError(f"a slot is an int, got {type(slot).__name__}")
        return int(self.rows([slot], whole=whole, finished=True)[0])

    def rows(
        self, slots: Sequence[int], *, whole: bool = False, finished: bool = False
    ) -> np.ndarray:
        """``slots`` checked as :meth:`row` does, all at once, and distinct; unless
        ``finished``, each with a step left."""
        rows = np.asarray(slots)
        if rows.ndim != 1 or rows.size == 0:
            raise ValueError(f"slots must be a non-empty sequence of ints, got {slots!r}")
        if rows.dtype.kind not in "iu":
            raise TypeError(f"slots must be ints, got {rows.dtype}")
        rows = rows.astype(np.int64)
        bad = (rows < 0) | (rows >= self.capacity)
        bad[~bad] = ~self.active[rows[~bad]]
        if bad.any():
            raise ValueError(f"slot {int(rows[bad][0])} is not in use (active: {self.in_use()})")
        if self.poisoned:
            for row in rows.tolist():
                if row in self.poisoned:
                    raise RuntimeError(
                        f"slot {row} was left inconsistent by an error in an earlier call "
                        f"({self.poisoned[row]}): release() it"
                    )
        if whole and self.emitted[rows].any():
            inside = rows[self.emitted[rows].any(axis=1)]
            raise RuntimeError(f"slot {int(inside[0])} is inside a step (emitted, not advanced)")
        if len(set(rows.tolist())) != rows.size:
            raise ValueError(f"slots must be distinct, got {rows.tolist()}")
        ends = np.where(self.wanted[rows] > 0, self.admitted[rows] + self.wanted[rows], self.taps)
        done = rows[self.closed[rows] & (self.prompt[rows] + self.step[rows] >= ends)]
        if done.size and not finished:
            raise RuntimeError(
                f"slots {done.tolist()} took all their steps (the length they were admitted "
                "with, or as many as the filters' taps allow); release() them"
            )
        return rows

    @contextlib.contextmanager
    def guard(self, rows: Sequence[int] | np.ndarray) -> Iterator[None]:
        """Poison ``rows`` if a kernel raises: their state may be half-updated."""
        try:
            yield
        except BaseException as error:
            for row in np.asarray(rows).tolist():
                self.poisoned[int(row)] = f"{type(error).__name__}: {error}"
            raise


def channel_range(channels: slice, total: int) -> slice:
    """``channels`` as a non-empty contiguous ``slice(start, stop)`` of ``total`` channels."""
    if not isinstance(channels, slice):
        raise TypeError(f"channels must be a slice, got {type(channels).__name__}")
    start, stop, stride = channels.indices(total)
    if stride != 1 or start >= stop:
        raise ValueError(f"channels must be a non-empty contiguous slice, got {channels}")
    return slice(start, stop)


def check_taps(taps: int, prompt: int, limit: int) -> None:
    """Raise unless filters of ``taps`` taps cover a prompt of ``prompt`` plus ``limit`` steps."""
    if prompt + limit > taps:
        raise ValueError(
            f"filters have {taps} taps but a prompt of {prompt} plus {limit} steps needs "
            f"{prompt + limit}: admit the slot with length={taps - prompt} or fewer"
        )


def check_pool_size(capacity: int, channels: int, length: int, taps: int, itemsize: int) -> None:
    """Raise :class:`MemoryError`, naming the pool, unless its buffers and filters (twice: the
    construction's copies) fit in the memory available."""
    need = itemsize * (capacity * channels * length + 2 * channels * taps)
    check_memory(f"a pool of {capacity} slots x {channels} channels x {length} steps", 2 * need)
