"""The one interpreter of plans: prefill, emit, advance, rollout and reset for any executor.

Everything that depends on the schedule is read from the :class:`~futurefill.plan.Plan`'s
tables here; executors only run kernels (:mod:`futurefill.executor`). The functions assume
validated arguments (:class:`futurefill.OnlineConv` checks them) but check the cursor: a call
that is not allowed now raises before anything changes. A kernel failing midway leaves the
state exactly as it was (:func:`rollout`, which keeps an undo record) or poisoned, refusing
every call until :func:`reset` (the others; see :mod:`futurefill.undo`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import ops
from .executor import Executor
from .memory import check_memory, prefill_bytes, state_memory
from .plan import Plan
from .state import ConvState
from .undo import check_usable, poison_on_failure, record, settle_to_overwrite

__all__ = [
    "advance",
    "check_can_step",
    "check_feedback",
    "check_prefill_memory",
    "emit",
    "new_state",
    "prefill",
    "reset",
    "rollout",
    "run",
    "state_bytes",
    "step",
]

Array = Any
_ALL = slice(None)


def state_bytes(plan: Plan, *, batch: int, channels: int, taps: int, itemsize: int) -> int:
    """Bytes a state needs at its peak: its arrays (buffer, filters, reversed window taps,
    filter spectra, spectrum registers), the executors' work arrays and the largest
    temporaries of its calls (construction, prefill, a rollout of every step); see
    :class:`futurefill.memory.StateMemory`."""
    return state_memory(plan, batch=batch, channels=channels, taps=taps, itemsize=itemsize).peak


def new_state(
    executor: Executor,
    plan: Plan,
    filters: Array,
    *,
    batch: int,
    dtype: Any,
    copy: bool = True,
    prepare: bool = True,
) -> ConvState:
    """Allocate a state: a private copy of the filters, the spectra once, a zero buffer.

    The size is estimated first and refused with a :class:`MemoryError` naming it when it
    would not fit. ``copy=False`` shares ``filters`` when they are already the backend's array
    of ``dtype`` (another state's private copy: states never change their filters).
    ``prepare=False`` leaves out the executor's own data (:meth:`Executor.prepare`): a stream
    pool runs only the batched kernels, which need none.
    """
    channels, taps = int(filters.shape[0]), int(filters.shape[1])
    xp = executor.xp
    itemsize = xp.finfo(dtype).bits // 8
    need = state_bytes(plan, batch=batch, channels=channels, taps=taps, itemsize=itemsize)
    check_memory(f"the state of {batch}x{channels} channels over {plan.total} positions", need)
    with executor.activate():
        # A private copy: the caller may change their array later, and the spectra computed
        # now must keep matching the taps read at every step.
        filt = xp.asarray(executor.asarray(filters, dtype=dtype), copy=copy or None)
        state = ConvState(
            plan=plan,
            filters=filt,
            taps_reversed=ops.reversed_taps(filt, plan.window_length, xp=xp),
            spectra={key: ops.filter_spectrum(filt, *key, xp=xp) for key in plan.spectrum_keys},
            buffer=executor.zeros((batch, channels, plan.buffer_length), dtype),
            prefilled=np.zeros(channels, dtype=bool),
            emitted=np.zeros(channels, dtype=bool),
        )
        if prepare:
            executor.prepare(state)
    return state


# ---------------------------------------------------------------------- cursor checks
def check_can_step(state: ConvState, *, whole: bool = False) -> None:
    """Raise unless an online step may run now (``whole``: for all channels at once)."""
    check_usable(state)
    plan = state.plan
    if state.step >= plan.length:
        raise RuntimeError(
            f"all {plan.length} planned steps are done; call reset() or plan a longer OnlineConv"
        )
    if not state.prompt_given:
        raise RuntimeError(
            f"call prefill(u) with the {plan.prompt} prompt inputs of every channel first"
        )
    if whole and state.num_emitted:
        raise RuntimeError("some channels were emitted at this step; finish with advance()")


def check_feedback(u: Array, y: Array) -> None:
    """Raise unless the feedback's output ``u`` can be the next input after ``y``."""
    shape = getattr(u, "shape", None)
    if shape is None or tuple(shape) != tuple(y.shape) or u.dtype != y.dtype:
        raise ValueError(
            f"feedback must return shape {tuple(y.shape)} and dtype {y.dtype}, got "
            f"{tuple(shape or ())} and {getattr(u, 'dtype', type(u).__name__)}"
        )


# ---------------------------------------------------------------------- streaming
def prefill(executor: Executor, state: ConvState, u: Array, channels: slice) -> Array:
    """Give the prompt of ``channels`` (once each, before the first step); return its outputs."""
    check_usable(state)
    if state.plan.prompt == 0:
        raise RuntimeError("this OnlineConv was planned without a prompt (prompt=0)")
    if state.prefilled[channels].any():
        raise RuntimeError(
            "the prompt was already given for these channels; call reset() to start over"
        )
    check_prefill_memory(executor, state, channels)
    with poison_on_failure(state, "prefill()"):
        y = executor.prefill(state, u, channels)
        state.prefilled[channels] = True
    return y


def check_prefill_memory(executor: Executor, state: ConvState, channels: slice) -> None:
    """Refuse (:class:`MemoryError`) a prefill of ``channels`` whose FFT convolution would not
    fit: its temporaries are estimated by :func:`futurefill.memory.prefill_bytes`."""
    count = len(range(state.channels)[channels])
    itemsize = executor.xp.finfo(state.buffer.dtype).bits // 8
    need = prefill_bytes(state.plan, batch=state.batch, channels=count, itemsize=itemsize)
    check_memory(
        f"the prefill of {state.batch}x{count} channels over {state.plan.prompt} prompt "
        f"inputs (an FFT of size {state.plan.prefill_fft_size})",
        need,
    )


def emit(executor: Executor, state: ConvState, u: Array, channels: slice) -> Array:
    """``y_t`` of ``channels`` (each once per step); the future is filled by :func:`advance`."""
    check_can_step(state)
    if state.emitted[channels].any():
        ch = range(state.channels)[channels]
        raise RuntimeError(f"channels {ch.start}..{ch.stop - 1} were already emitted")
    t = state.step
    plan = state.plan
    with poison_on_failure(state, "emit()"):
        y = executor.emit(state, u, channels, plan.slot.item(t), plan.window_slot.item(t))
        state.emitted[channels] = True
        state.num_emitted += len(range(state.channels)[channels])
    return y


def advance(executor: Executor, state: ConvState) -> None:
    """Run the tasks planned after this step, once every channel was emitted; next step."""
    check_can_step(state)
    if state.num_emitted < state.channels:
        missing = state.channels - state.num_emitted
        raise RuntimeError(f"{missing} channels were not emitted at this step")
    with poison_on_failure(state, "advance()"):
        _run_tasks(executor, state)
        state.emitted[:] = False
        state.num_emitted = 0


def step(executor: Executor, state: ConvState, u: Array) -> Array:
    """One online step for all channels: :func:`emit` then :func:`advance`."""
    check_can_step(state, whole=True)
    t = state.step
    plan = state.plan
    with poison_on_failure(state, "step()"):
        y = executor.emit(state, u, _ALL, plan.slot.item(t), plan.window_slot.item(t))
        _run_tasks(executor, state)
    return y


def _run_tasks(executor: Executor, state: ConvState) -> None:
    t = state.step
    executor.fill(state, t)
    state.step = t + 1


def rollout(
    executor: Executor,
    state: ConvState,
    u0: Array,
    feedback: Callable[[Array], Array],
    steps: int,
) -> Array:
    """Run ``steps`` steps with ``u[t+1] = feedback(y[t])``; return ``(B, C, steps)``.

    A program compiled by the executor runs them when it offers one (:meth:`compile`);
    otherwise the plan's tables drive a loop of kernel calls. On any error (the feedback's
    included) the state is put back as it was, or poisoned if that fails.
    """
    check_can_step(state, whole=True)
    if not 1 <= steps <= state.plan.length - state.step:
        raise ValueError(f"steps must lie in 1..{state.plan.length - state.step}, got {steps}")
    undo = record(executor, state, steps, "rollout()")

    def next_input(i: int, y: Array) -> Array:
        if i == 0:
            return u0
        u = feedback(y)
        check_feedback(u, y)
        return u

    try:
        program = executor.compile(state, feedback)
        if program is not None:
            return program(state, u0, steps)
        return _loop(executor, state, steps, next_input)
    except BaseException as exc:
        undo.restore(executor, "rollout()", exc)
        raise


def run(executor: Executor, state: ConvState, u: Array) -> Array:
    """Run ``u.shape[-1]`` steps on the given inputs ``u`` ``(B, C, T)``; return ``(B, C, T)``.

    It keeps no undo record (it costs what the steps cost): a kernel failing poisons the state.
    """
    check_can_step(state, whole=True)
    steps = int(u.shape[-1])
    if not 1 <= steps <= state.plan.length - state.step:
        raise ValueError(f"T must lie in 1..{state.plan.length - state.step}, got {steps}")
    with poison_on_failure(state, "run()"):
        return _loop(executor, state, steps, lambda i, _: u[..., i])


def _loop(
    executor: Executor, state: ConvState, steps: int, next_input: Callable[[int, Array], Array]
) -> Array:
    """``steps`` steps driven by the plan's tables, the input of step ``i`` being
    ``next_input(i, y)`` (``y`` the previous output); the outputs stacked ``(B, C, steps)``."""
    plan = state.plan
    slots, starts = plan.slot, plan.window_slot
    kernel, fill = executor.emit, executor.fill
    ys = []
    y = None
    t = state.step
    for i in range(steps):
        y = kernel(state, next_input(i, y), _ALL, slots.item(t), starts.item(t))
        fill(state, t)
        t += 1
        state.step = t
        ys.append(y)
    if steps == 1:  # y is the caller's, as step's is: no copy (a short run costs a step)
        return ys[0][..., None]
    return executor.xp.stack(ys, axis=-1)


def reset(executor: Executor, state: ConvState) -> None:
    """Forget all inputs and return to step 0 (filters and spectra stay); a poisoned state is
    usable again (or stays poisoned if this fails: call it again)."""
    with poison_on_failure(state, "reset()"):
        settle_to_overwrite(executor, state)
        executor.clear(state)
    state.step = 0
    state.num_emitted = 0
    state.emitted[:] = False
    state.prefilled[:] = False
    state.revision += 1
    state.poisoned = None
