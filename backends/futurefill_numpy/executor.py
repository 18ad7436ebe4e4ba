"""NumPy executor: the kernels with every per-step allocation they can avoid removed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from futurefill import tuning
from futurefill.backends import ArrayAPIExecutor, ConvState, Program, compat_namespace
from futurefill.interpreter import check_feedback
from futurefill.plan import TaskOffsets

__all__ = ["SHIPPED", "NumpyExecutor"]

#: The measured ``direct_below`` table shipped with this backend (``crossover.json``).
SHIPPED = tuning.ShippedTable.load(__package__ or "futurefill_numpy")


@dataclass
class _Workspace:
    """Work arrays of one state.

    ``work[n]`` holds the spectrum and the inverse of a task of FFT size ``n``. ``acc`` holds
    the accumulated future of the current window block, copied from the buffer when the block
    starts (valid because tasks only write blocks not yet started: the plan's
    ``tasks_start_windows``), so that a step is: store ``u_t``, one vecdot, one addition.
    ``acc_key`` says which block and which buffer revision the copy was taken from.
    """

    work: dict[int, tuple[np.ndarray, np.ndarray]]
    acc: np.ndarray | None
    acc_key: tuple[int, int] = (-1, -1)


class NumpyExecutor(tuning.TunedCrossover, ArrayAPIExecutor):
    """Executor for NumPy arrays on the CPU.

    * filter spectra per ``(filter slice, FFT size)`` computed once;
    * each FFT task writes its spectrum and its inverse into preallocated work arrays
      (``numpy.fft``'s ``out=``) and adds into the buffer in place;
    * a step is three calls: store ``u_t``, one ``numpy.vecdot`` over the local window, one
      addition of the accumulated future (copied once per window block);
    * :meth:`compile` gives rollouts a loop over the plan's tables with every lookup hoisted.

    The continuous schedule's ``direct_below`` defaults to what ``futurefill tune`` stored for
    the width (``batch * channels``), else to the measured table shipped in this package
    (``crossover.json``, see :data:`SHIPPED`).

    Parameters
    ----------
    device : None or "cpu"
        NumPy arrays live on the CPU.
    tuned : bool
        Consult the stored tuning (``futurefill tune``); ``False`` keeps to the shipped table.
    """

    name = "numpy"
    shipped = SHIPPED

    def __init__(self, device: Any = None, *, tuned: bool = True) -> None:
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy backend runs on the CPU, not on {device!r}")
        super().__init__(compat_namespace("numpy"), None)
        self.tuned = bool(tuned)

    def is_native(self, x: object) -> bool:
        return type(x) is np.ndarray

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    # ------------------------------------------------------------------ kernels
    def prepare(self, state: ConvState) -> None:
        plan = state.plan
        buf = state.buffer
        complex_dtype = np.result_type(buf.dtype, np.complex64)
        lead = buf.shape[:2]
        accumulates = plan.tasks_start_windows and (plan.num_tasks > 0 or plan.prefill_fills_future)
        state.workspace = _Workspace(
            work={
                n: (np.empty((*lead, n // 2 + 1), complex_dtype), np.empty((*lead, n), buf.dtype))
                for n in {key[2] for key in plan.spectrum_keys}
            },
            acc=np.empty((*lead, plan.window_length), buf.dtype) if accumulates else None,
        )

    @staticmethod
    def _block_accumulators(state: ConvState, slot: int, start: int) -> np.ndarray | None:
        """The accumulators of the window block starting at slot ``start``, copied once per
        block and read before slot ``slot`` is overwritten (slots from ``slot`` on still hold
        accumulators)."""
        ws: _Workspace = state.workspace
        acc = ws.acc
        if acc is not None and ws.acc_key != (start, state.revision):
            buf = state.buffer
            stop = min(start + acc.shape[-1], buf.shape[-1])
            acc[..., slot - start : stop - start] = buf[..., slot:stop]
            ws.acc_key = (start, state.revision)
        return acc

    def _blockwise(self, state: ConvState) -> bool:
        """Whether the block copy of the accumulators is valid (or nothing accumulates)."""
        plan = state.plan
        return state.workspace.acc is not None or not (plan.num_tasks or plan.prefill_fills_future)

    def emit(
        self, state: ConvState, u: np.ndarray, channels: slice, slot: int, start: int
    ) -> np.ndarray:
        if not self._blockwise(state):
            return super().emit(state, u, channels, slot, start)  # tasks not block-aligned
        acc = self._block_accumulators(state, slot, start)
        buf = state.buffer
        buf[:, channels, slot] = u
        taps = state.taps_reversed
        y = np.vecdot(
            buf[:, channels, start : slot + 1], taps[channels, taps.shape[-1] - 1 - slot + start :]
        )
        if acc is not None:
            y += acc[:, channels, slot - start]
        return y

    def compile(self, state: ConvState, feedback: Callable[[Any], Any]) -> Program | None:
        """The rollout loop over the plan's tables, with every lookup hoisted out of it."""
        if not self._blockwise(state):
            return None
        fill = self.fill_task
        accumulators = self._block_accumulators

        def program(state: ConvState, u0: np.ndarray, steps: int) -> np.ndarray:
            plan = state.plan
            buf, taps = state.buffer, state.taps_reversed
            W = taps.shape[-1]
            slots, starts, task_ptr, offsets = (
                plan.slot,
                plan.window_slot,
                plan.task_ptr,
                plan.task_offsets,
            )
            vecdot = np.vecdot
            out = np.empty((steps, *buf.shape[:2]), dtype=buf.dtype)
            u = u0
            t = state.step
            block = -1
            acc = None
            for i in range(steps):
                slot, start = slots.item(t), starts.item(t)
                if start != block:
                    acc, block = accumulators(state, slot, start), start
                buf[..., slot] = u
                y = vecdot(buf[..., start : slot + 1], taps[:, W - 1 - slot + start :], out=out[i])
                if acc is not None:
                    y += acc[..., slot - start]
                for task in range(task_ptr.item(t), task_ptr.item(t + 1)):
                    fill(state, offsets(task))
                t += 1
                state.step = t
                if i + 1 < steps:
                    u = feedback(y)
                    check_feedback(u, y)
            return np.moveaxis(out, 0, -1)

        return program

    def fill_task(self, state: ConvState, task: TaskOffsets) -> None:
        buf = state.buffer
        a, b, c, d, r, n, key = task
        spec_work, real_work = state.workspace.work[n]
        spectrum = np.fft.rfft(buf[..., a:b], n, axis=-1, out=spec_work)
        spectrum *= state.spectra[key]
        z = np.fft.irfft(spectrum, n, axis=-1, out=real_work)
        buf[..., c:d] += z[..., r : r + d - c]

    def clear(self, state: ConvState) -> None:
        state.buffer[...] = 0
