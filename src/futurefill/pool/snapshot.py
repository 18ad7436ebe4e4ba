"""One slot of a pool as plain data: moved to another pool, process or machine.

:func:`slot_state` gives a dict of host (NumPy) arrays and plain values; :func:`check_slot_state`
validates one against a pool before anything changes. A slot's undo journal (:meth:`mark`) is
not part of it: the receiving pool starts unmarked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CURSOR", "FORMAT", "check_slot_state", "slot_state"]

#: Version of the layout; other versions are refused.
FORMAT = 2
_KIND = "futurefill.StreamPool slot"
#: The slot's cursor (see :class:`futurefill.pool.slots.SlotTable`), one int each.
CURSOR = ("wanted", "admitted", "prompt", "limit", "step")


def slot_state(
    *,
    plan_fingerprint: str,
    filters_digest: str,
    dtype: str,
    channels: int,
    cursor: dict[str, int],
    closed: bool,
    buffer: np.ndarray,
    pending: np.ndarray | None,
    pending_lengths: np.ndarray | None,
    history: np.ndarray | None,
) -> dict[str, Any]:
    """The plain-data form of one slot (see :meth:`futurefill.StreamPool.state_dict`)."""
    return {
        "format": FORMAT,
        "kind": _KIND,
        "plan": plan_fingerprint,
        "filters": filters_digest,
        "dtype": dtype,
        "channels": channels,
        **{key: cursor[key] for key in CURSOR},
        "closed": closed,
        "buffer": buffer,
        "pending": pending,
        "pending_lengths": pending_lengths,
        "history": history,
    }


def check_slot_state(
    state: Any,
    *,
    plan_fingerprint: str,
    filters_digest: str,
    dtype: str,
    channels: int,
    length: int,
    taps: int,
) -> dict[str, Any]:
    """Validate a slot's plain data against a pool; return its checked values (``cursor``, a
    dict of the :data:`CURSOR` ints, ``closed``, ``buffer``, ``pending``,
    ``pending_lengths``, ``history``).

    Raises
    ------
    TypeError, ValueError
        What is wrong, named (nothing in the pool changes).
    """
    if not isinstance(state, dict) or state.get("kind") != _KIND:
        raise TypeError("not a StreamPool slot state (made by StreamPool.state_dict)")
    if state.get("format") != FORMAT:
        raise ValueError(f"slot state format {state.get('format')!r}, this pool reads {FORMAT}")
    for key, mine in (("plan", plan_fingerprint), ("filters", filters_digest), ("dtype", dtype)):
        if state.get(key) != mine:
            raise ValueError(f"the slot was made with another {key} ({state.get(key)!r})")
    if state.get("channels") != channels:
        raise ValueError(f"the slot has {state.get('channels')} channels, this pool {channels}")
    wanted = _int(state, "wanted", 0, taps)
    limit = _int(state, "limit", 1, length)
    step = _int(state, "step", 0, limit)
    prompt = _int(state, "prompt", 0, taps - limit)
    admitted = _int(state, "admitted", 0, prompt)
    closed = state.get("closed")
    if not isinstance(closed, (bool, np.bool_)):
        raise TypeError(f"slot state 'closed' must be a bool, got {type(closed).__name__}")
    buffer = _array(state, "buffer", (channels, limit))
    pending = state.get("pending")
    lengths = state.get("pending_lengths")
    history = state.get("history")
    if closed:
        end = admitted + wanted if wanted else taps
        if limit != min(length, end - prompt):
            raise ValueError(
                f"slot state 'limit' {limit} does not match its segment: prompt {prompt}, "
                f"admitted {admitted}, wanted {wanted}, pool length {length}"
            )
        segments = end - admitted > length
        if segments:
            history = _array(state, "history", (channels, prompt))
        elif history is not None or admitted != prompt:
            raise ValueError("a slot of one segment has no history and its prompt is admitted")
    elif step or prompt or admitted or history is not None:
        raise ValueError("a slot that has taken steps has its prompt closed")
    elif limit != min(length, wanted or taps):
        raise ValueError(f"slot state 'limit' {limit} does not match wanted {wanted}")
    if pending is not None:
        if closed:
            raise ValueError("a slot with a pending prompt cannot have its prompt closed")
        lengths = np.asarray(lengths)
        if lengths.shape != (channels,) or lengths.dtype.kind not in "iu" or lengths.min() < 0:
            raise ValueError("pending_lengths must be one non-negative int per channel")
        pending = _array(state, "pending", (channels, int(lengths.max())))
        if int(lengths.max()) + (wanted or 1) > taps:
            raise ValueError("the slot's prompt plus its steps need more taps than the filters")
    return {
        "cursor": {
            "wanted": wanted,
            "admitted": admitted,
            "prompt": prompt,
            "limit": limit,
            "step": step,
        },
        "closed": bool(closed),
        "buffer": buffer,
        "pending": pending,
        "pending_lengths": lengths,
        "history": history,
    }


def _int(state: dict[str, Any], key: str, low: int, high: int) -> int:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"slot state {key!r} must be an int, got {type(value).__name__}")
    if not low <= int(value) <= high:
        raise ValueError(f"slot state {key!r} must lie in {low}..{high}, got {value}")
    return int(value)


def _array(state: dict[str, Any], key: str, shape: tuple[int, int]) -> np.ndarray:
    value = state.get(key)
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        raise TypeError(f"slot state {key!r} must be a float NumPy array")
    if value.shape != shape:
        raise ValueError(f"slot state {key!r} must have shape {shape}, got {value.shape}")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"slot state {key!r} contains NaN or infinite values")
    return value
