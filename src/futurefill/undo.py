"""What a failed call leaves: the state exactly as it was before, or a poisoned stream.

A kernel can fail halfway through a call: a ``MemoryError`` inside an FFT, a
``KeyboardInterrupt``, or the failure of work an executor deferred to another thread, delivered
a step later. The buffer may then hold half a step, or miss a task's contribution: a retry would
read an input where a sum of future contributions should be, or add a task twice. So every call
that runs kernels either puts back exactly what it touched or *poisons* the state: every later
call refuses with an error saying so, until ``reset()`` or a loaded snapshot.

* Rollouts keep an :class:`Undo` record, taken once the deferred work is settled: the cursor and
  a copy of the buffer slots their steps can write (the steps' own slots and their tasks'
  targets, :func:`touched`). A failed rollout (its feedback raising, or a kernel) is undone.
* ``step``, ``emit``, ``advance``, ``run`` and ``prefill`` keep nothing (a record would cost as
  much as a short call) and poison the state when a kernel fails.
* A failure while undoing, or of deferred work being joined into the buffer, poisons too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import array_api_extra as xpx
import numpy as np

from .executor import Executor
from .plan import Plan
from .state import ConvState

__all__ = [
    "Undo",
    "check_usable",
    "poison",
    "poison_on_failure",
    "record",
    "settle",
    "settle_to_overwrite",
    "touched",
]

Array = Any


def check_usable(state: ConvState) -> None:
    """Raise unless ``state`` is usable (not poisoned by a failed call)."""
    if state.poisoned is not None:
        raise RuntimeError(
            f"this stream is poisoned: {state.poisoned}, leaving its state unknown; call "
            "reset() or load_state_dict() to go on"
        )


def poison(state: ConvState, call: str, error: BaseException) -> None:
    """Mark ``state`` unusable: ``call`` failed with ``error`` midway."""
    lines = str(error).splitlines()
    detail = f": {lines[0]}" if lines else ""
    state.poisoned = f"{call} failed ({type(error).__name__}{detail})"


class poison_on_failure:  # noqa: N801 - a context manager, used as a function
    """A context in which any exception poisons ``state`` (``call`` failed) and goes on."""

    __slots__ = ("call", "state")

    def __init__(self, state: ConvState, call: str) -> None:
        self.state, self.call = state, call

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, _: Any) -> Literal[False]:
        if error is not None:
            poison(self.state, self.call, error)
        return False


def settle(executor: Executor, state: ConvState, call: str) -> None:
    """Join the executor's deferred work into the buffer; poison ``state`` if that fails (the
    work's contribution is lost)."""
    with poison_on_failure(state, call):
        executor.settle(state)


def settle_to_overwrite(executor: Executor, state: ConvState) -> None:
    """Settle before the touched part of the buffer is overwritten (reset, a restored
    snapshot, an undo): what the deferred work computed no longer matters, only that none is
    left running. A failure of the work is retried once (an executor's ``settle`` finishes all
    of it, failing pieces included, before it raises); an interrupt is not."""
    try:
        executor.settle(state)
    except Exception:
        executor.settle(state)


def touched(plan: Plan, step: int, steps: int) -> tuple[int, int]:
    """The buffer slots ``lo .. hi - 1`` that steps ``step .. step + steps - 1`` write: their
    own slots (the inputs they store) and the targets of the tasks run after them."""
    lo = plan.slot.item(step)
    hi = plan.slot.item(step + steps - 1) + 1
    first, last = plan.task_ptr.item(step), plan.task_ptr.item(step + steps)
    if last > first:
        hi = max(hi, int(plan.dst_stop[first:last].max()) - plan.origin)
    return lo, hi


@dataclass(frozen=True)
class Undo:
    """What a call may change, to put it back: the cursor and ``buffer[..., lo:lo + n]``."""

    state: ConvState
    step: int
    num_emitted: int
    prefilled: np.ndarray
    emitted: np.ndarray
    lo: int
    slots: Array

    def restore(self, executor: Executor, call: str, error: BaseException) -> None:
        """Put the state back as it was; poison it if that fails (``call`` failed with
        ``error``)."""
        s = self.state
        try:
            settle_to_overwrite(executor, s)  # deferred work of the failed call: discarded
            stop = self.lo + int(self.slots.shape[-1])
            s.buffer = xpx.at(s.buffer)[..., self.lo : stop].set(self.slots)
            s.step, s.num_emitted = self.step, self.num_emitted
            s.prefilled[:] = self.prefilled
            s.emitted[:] = self.emitted
            s.revision += 1  # executors drop what they derived from the buffer
            s.poisoned = None
        except BaseException:
            poison(s, call, error)


def record(executor: Executor, state: ConvState, steps: int, call: str) -> Undo:
    """An :class:`Undo` of the next ``steps`` steps of ``state`` (its deferred work settled
    first, so that nothing outside the record changes the buffer meanwhile)."""
    settle(executor, state, call)
    lo, hi = touched(state.plan, state.step, steps)
    slots = executor.xp.asarray(state.buffer[..., lo:hi], copy=True)
    return Undo(
        state,
        state.step,
        state.num_emitted,
        state.prefilled.copy(),
        state.emitted.copy(),
        lo,
        slots,
    )
