"""Snapshots of a stream: ``state_dict`` / ``load_state_dict``, their digest, cursor copies.

A snapshot holds a copy of the buffer and the cursor (position, prefilled and emitted
channels), fingerprints of what it belongs to (the plan and the filters) and a digest of all
of it, so that a snapshot loaded into another stream, or edited, is refused with the state
unchanged. Open-ended streams add the prompt length, the segment and the history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ._checks import check_int
from .executor import Executor
from .open_length import segment_length
from .plan import Plan, PlanSpec, make_plan
from .state import ConvState
from .undo import check_usable, poison_on_failure, settle, settle_to_overwrite

__all__ = [
    "OPEN_KEYS",
    "SNAPSHOT_KEYS",
    "Cursor",
    "Stream",
    "copy_cursor",
    "digest",
    "load_state_dict",
    "restore_cursor",
    "state_dict",
]

Array = Any
#: A copy of a state's cursor: buffer, step, prefilled and emitted masks, emitted count.
Cursor = tuple[Array, int, np.ndarray, np.ndarray, int]
#: ``check(array, shape, what)`` raises unless ``array`` is the backend's, of ``shape`` and
#: of the working dtype (``OnlineConv`` checks its arguments so).
CheckArray = Callable[[Array, tuple[int, ...], str], None]

SNAPSHOT_KEYS = ("plan", "filters", "buffer", "position", "prefilled", "emitted", "digest")
OPEN_KEYS = ("prompt", "segment", "history")


class Stream(Protocol):
    """What a snapshot is taken of and loaded into (:class:`futurefill.segments.Segments`)."""

    executor: Executor
    state: ConvState
    spec: PlanSpec
    taps: int
    open: bool
    prompt: int
    history: Array | None

    def replace(self, plan: Plan) -> None:
        """Run ``plan`` from now on, with a new empty state."""


# ---------------------------------------------------------------------- cursor copies
def copy_cursor(executor: Executor, state: ConvState) -> Cursor:
    """A copy of ``state``'s buffer and cursor (deferred work joined first); a poisoned state
    is refused."""
    check_usable(state)
    settle(executor, state, "state_dict()")  # work running in the background joins the buffer
    buffer = executor.xp.asarray(state.buffer, copy=True)
    return buffer, state.step, state.prefilled.copy(), state.emitted.copy(), state.num_emitted


def restore_cursor(executor: Executor, state: ConvState, cursor: Cursor) -> None:
    """Put a :func:`copy_cursor` back (the buffer array itself: pass a copy to keep one); a
    poisoned state is usable again (or stays poisoned if the deferred work cannot be
    finished)."""
    with poison_on_failure(state, "load_state_dict()"):
        settle_to_overwrite(executor, state)
    buffer, state.step, prefilled, emitted, state.num_emitted = cursor
    state.buffer = buffer
    state.prefilled[:] = prefilled
    state.emitted[:] = emitted
    state.revision += 1
    state.poisoned = None


# ---------------------------------------------------------------------- snapshots
def digest(
    executor: Executor,
    filters: str,
    plan: str,
    buffer: Array,
    position: int,
    prefilled: Any,
    emitted: Any,
    *extra: Any,
) -> str:
    """The checksum of a snapshot's entries (``filters`` and ``plan``: their fingerprints)."""
    h = hashlib.sha256(f"{plan}/{filters}/{position}".encode())
    h.update(np.asarray(prefilled, dtype=bool).tobytes())
    h.update(np.asarray(emitted, dtype=bool).tobytes())
    for array in (buffer, *extra):
        if array is None or isinstance(array, int):
            h.update(repr(array).encode())
        else:
            h.update(np.ascontiguousarray(executor.to_numpy(array)).tobytes())
    return h.hexdigest()


def state_dict(stream: Stream, filters: str) -> dict[str, Any]:
    """The snapshot of ``stream`` (see :meth:`futurefill.OnlineConv.state_dict`); ``filters``
    is the fingerprint of its filters."""
    executor = stream.executor
    buffer, position, prefilled, emitted, _ = copy_cursor(executor, stream.state)
    extra: dict[str, Any] = {}
    if stream.open:
        history = stream.history
        extra = {
            "prompt": stream.prompt,
            "segment": stream.state.plan.prompt,
            "history": None if history is None else executor.xp.asarray(history, copy=True),
        }
    fingerprint = stream.state.plan.fingerprint
    return {
        "plan": fingerprint,
        "filters": filters,
        "buffer": buffer,
        "position": position,
        "prefilled": prefilled,
        "emitted": emitted,
        **extra,
        "digest": digest(
            executor, filters, fingerprint, buffer, position, prefilled, emitted, *extra.values()
        ),
    }


def load_state_dict(
    stream: Stream, snapshot: dict[str, Any], filters: str, check: CheckArray
) -> None:
    """Load ``snapshot`` into ``stream`` (see :meth:`futurefill.OnlineConv.load_state_dict`);
    anything that does not belong to it is refused before anything changes."""
    if not isinstance(snapshot, dict):
        raise TypeError(f"a state dict is a dict, got {type(snapshot).__name__}")
    keys = SNAPSHOT_KEYS + (OPEN_KEYS if stream.open else ())
    missing = set(keys) - set(snapshot)
    if missing:
        raise KeyError(f"state dict lacks {sorted(missing)}")
    unknown = set(snapshot) - set(keys)
    if unknown:
        raise ValueError(f"state dict has unknown entries {sorted(unknown)}")
    s = stream.state
    plan, extra = s.plan, ()  # type: tuple[Plan, tuple[Any, ...]]
    if stream.open:
        plan, extra = _open_snapshot(stream, snapshot, check)
    if snapshot["plan"] != plan.fingerprint:
        raise ValueError(
            "this state dict belongs to another plan (schedule, length, prompt or parameters "
            "differ)"
        )
    if snapshot["filters"] != filters:
        raise ValueError("this state dict belongs to an OnlineConv with other filters")
    position = check_int("position", snapshot["position"], 0, plan.length)
    masks = {}
    for name in ("prefilled", "emitted"):
        mask = snapshot[name]
        if not isinstance(mask, np.ndarray) or mask.dtype != bool or mask.shape != (s.channels,):
            raise ValueError(f"{name} must be a bool array of shape ({s.channels},)")
        masks[name] = mask
    buffer = snapshot["buffer"]
    check(buffer, (s.batch, s.channels, plan.buffer_length), "the buffer")
    executor = stream.executor
    prefilled, emitted = masks["prefilled"], masks["emitted"]
    expected = digest(
        executor, filters, plan.fingerprint, buffer, position, prefilled, emitted, *extra
    )
    if snapshot["digest"] != expected:
        raise ValueError("this state dict was edited or corrupted (its digest differs)")
    if plan is not s.plan:
        stream.replace(plan)
    if stream.open:
        prompt, _, history = extra
        stream.prompt = prompt
        stream.history = None if history is None else executor.xp.asarray(history, copy=True)
    cursor = (executor.xp.asarray(buffer, copy=True), position, prefilled, emitted)
    restore_cursor(executor, stream.state, (*cursor, int(emitted.sum())))


def _open_snapshot(
    stream: Stream, snapshot: dict[str, Any], check: CheckArray
) -> tuple[Plan, tuple[int, int, Any]]:
    """The segment plan and ``(prompt, segment, history)`` of an open-ended snapshot."""
    taps = stream.taps
    prompt = check_int("prompt", snapshot["prompt"], 0, taps - 1)
    segment = check_int("segment", snapshot["segment"], prompt, taps - 1)
    plan = make_plan(segment_length(segment, taps), stream.spec, prompt=segment)
    history = snapshot["history"]
    s = stream.state
    if history is not None:
        check(history, (s.batch, s.channels, segment), "history")
    elif segment != prompt:
        raise ValueError("history is None only before the first segment's steps")
    return plan, (prompt, segment, history)
