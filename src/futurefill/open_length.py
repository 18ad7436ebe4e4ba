"""Open-ended generation: the segments of an :class:`~futurefill.OnlineConv` built with
``length=None``.

Such a convolution runs one plan per *segment*. When a segment's steps are done, the next
segment is planned with every position so far as its prompt: the inputs seen so far (the
*history*, kept because the state of an open-ended stream grows with what it generated) are
given to the new state by one FFT convolution, which fills their whole contribution to the
new segment's outputs, as a prompt's prefill does (but without recomputing their own outputs:
one FutureFill of size ``done + steps`` instead of a prefill of size ``2 done + steps``).
Segments double the positions covered (the first one has :data:`FIRST_SEGMENT` steps), so a
stream stopped after ``n`` steps has run ``O(log n)`` segments. Their boundaries fall where
the continuous schedule's own largest blocks end, so each FutureFill of a history does the
work of the block task that a plan of known length would run there.
"""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx

from . import interpreter, ops
from ._checks import next_pow2
from .executor import Executor
from .plan import Plan, PlanSpec, make_plan
from .state import ConvState

__all__ = [
    "FIRST_SEGMENT",
    "fill_from_history",
    "history_after",
    "next_segment",
    "segment_length",
    "store_prompt",
]

Array = Any

#: Steps of an open-ended stream's first segment (unless its prompt is longer).
FIRST_SEGMENT = 1024


def segment_length(done: int, taps: int) -> int:
    """Steps of the segment that starts after ``done`` positions (prompt included).

    ``max(FIRST_SEGMENT, done)`` (the positions covered double), at most the ``taps - done``
    that the filters leave; 0 when they leave none.
    """
    return max(0, min(taps - done, max(FIRST_SEGMENT, done)))


def history_after(executor: Executor, state: ConvState, history: Array | None) -> Array:
    """Every input so far, ``(B, C, plan.total)``, once the state's segment is done.

    ``history`` holds the inputs before the segment (its plan's prompt; ``None`` for none);
    the segment's own inputs are read from the buffer, where every emitted position keeps its
    input (slot ``position - plan.origin``).
    """
    plan = state.plan
    executor.settle(state)  # nothing left running on the state being replaced
    own = state.buffer[..., plan.prompt - plan.origin : plan.total - plan.origin]
    if history is None:
        return executor.xp.asarray(own, copy=True)
    return executor.xp.concat([history, own], axis=-1)


def store_prompt(
    executor: Executor, history: Array | None, u: Array, channels: slice, shape: tuple[int, ...]
) -> Array:
    """``history`` (zeros of ``shape`` when ``None``) with the prompt ``u`` of ``channels``."""
    if history is None:
        history = executor.zeros(shape, u.dtype)
    return xpx.at(history)[:, channels, :].set(u)


def next_segment(
    executor: Executor,
    spec: PlanSpec,
    state: ConvState,
    history: Array,
    *,
    taps: int,
) -> ConvState:
    """The state of the segment after ``state``'s, its prompt ``history`` given to it.

    The filters' ``taps`` must leave a position after the history (the caller checks).
    """
    plan: Plan = make_plan(segment_length(history.shape[-1], taps), spec, prompt=history.shape[-1])
    new = interpreter.new_state(
        executor, plan, state.filters, batch=state.batch, dtype=state.filters.dtype, copy=False
    )
    if plan.prefill_fills_future:
        fill_from_history(executor, new, history)
    else:  # the schedule keeps its prompt inputs: the prefill stores them
        interpreter.prefill(executor, new, history, slice(None))
    return new


def fill_from_history(executor: Executor, state: ConvState, history: Array) -> None:
    """Give ``history`` (the plan's prompt) to a new state: fill its whole future.

    Output ``H + j`` (``H`` the prompt, ``0 <= j < length``) receives ``sum_i phi[H + j - i]
    u[i]`` over ``i < H``: one FutureFill of the whole history with ``phi[1 : H + length]``,
    exact with an FFT of size ``>= H + length - 1``.
    """
    plan = state.plan
    done, steps = plan.prompt, plan.length
    n = next_pow2(done + steps - 1)
    xp = executor.xp
    with executor.activate():
        spectrum = ops.filter_spectrum(state.filters, 1, done + steps, n, xp=xp)
        future = ops.fill_future(history, spectrum, n, done - 1, done - 1 + steps, xp=xp)
        state.buffer = xpx.at(state.buffer)[...].set(future)
    state.prefilled[:] = True
    state.revision += 1  # the buffer changed outside the kernels
