"""One slot of a pool as plain data: moved to another pool, process or machine.

:func:`slot_state` gives a dict of host (NumPy) arrays and plain values; :func:`check_slot_state`
validates one against a pool before anything changes. A slot's undo journal (:meth:`mark`) is
not part of it: the receiving pool starts unmarked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["FORMAT", "check_slot_state", "slot_state"]

#: Version of the layout; other versions are refused.
FORMAT = 1
_KIND = "futurefill.StreamPool slot"


def slot_state(
    *,
    plan_fingerprint: str,
    filters_digest: str,
    dtype: str,
    channels: int,
    limit: int,
    step: int,
    prompt: int,
    closed: bool,
    buffer: np.ndarray,
    pending: np.ndarray | None,
    pending_lengths: np.ndarray | None,
) -> dict[str, Any]:
    """The plain-data form of one slot (see :meth:`futurefill.StreamPool.state_dict`)."""
    return {
        "format": FORMAT,
        "kind": _KIND,
        "plan": plan_fingerprint,
        "filters": filters_digest,
        "dtype": dtype,
        "channels": channels,
        "limit": limit,
        "step": step,
        "prompt": prompt,
        "closed": closed,
        "buffer": buffer,
        "pending": pending,
        "pending_lengths": pending_lengths,
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
    """Validate a slot's plain data against a pool; return it with checked values.

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
    limit = _int(state, "limit", 1, length)
    step = _int(state, "step", 0, limit)
    prompt = _int(state, "prompt", 0, taps - limit)
    closed = state.get("closed")
    if not isinstance(closed, (bool, np.bool_)):
        raise TypeError(f"slot state 'closed' must be a bool, got {type(closed).__name__}")
    if step and not closed:
        raise ValueError("a slot that has taken steps has its prompt closed")
    buffer = _array(state, "buffer", (channels, limit))
    pending = state.get("pending")
    lengths = state.get("pending_lengths")
    if pending is not None:
        if closed:
            raise ValueError("a slot with a pending prompt cannot have its prompt closed")
        lengths = np.asarray(lengths)
        if lengths.shape != (channels,) or lengths.dtype.kind not in "iu" or lengths.min() < 0:
            raise ValueError("pending_lengths must be one non-negative int per channel")
        pending = _array(state, "pending", (channels, int(lengths.max())))
        if int(lengths.max()) + limit > taps:
            raise ValueError("the slot's prompt plus its steps need more taps than the filters")
    return {
        "limit": limit,
        "step": step,
        "prompt": prompt,
        "closed": bool(closed),
        "buffer": buffer,
        "pending": pending,
        "pending_lengths": lengths,
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
