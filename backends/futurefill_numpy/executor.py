"""NumPy executor: the kernels with every per-step allocation they can avoid removed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from futurefill import defaults
from futurefill.executor import ArrayAPIExecutor, ConvState, Program, compat_namespace
from futurefill.interpreter import check_feedback
from futurefill.plan import TaskOffsets

from ._deferred import DeferredWork
from ._pool import StridedGroupedKernels
from ._worker import WorkerSlot

__all__ = ["SHIPPED", "NumpyExecutor"]

#: The measured ``direct_below`` table shipped with this backend (``crossover.json``).
SHIPPED = defaults.ShippedTable.load(__package__ or "futurefill_numpy")


@dataclass
class _Workspace:
    """Work arrays of one state.

    ``work[n]`` holds the spectrum and the inverse of a task of FFT size ``n``. ``acc`` holds
    the accumulated future of the current window block, copied from the buffer when the block
    starts (valid because tasks only write blocks not yet started: the plan's
    ``tasks_start_windows``), so that a step is: store ``u_t``, one vecdot, one addition.
    ``acc_key`` says which block and which buffer revision the copy was taken from.
    ``registers`` are the plan's spectrum registers (:attr:`futurefill.Plan.transforms`) and
    ``products[n]`` the scratch of a target's second and later spectral products (FFT sizes
    that share transforms); ``alone[t]`` says
    whether the tasks after step ``t`` run one by one: steps whose tasks share no transform,
    and steps with a task handed to the worker thread (a task due later runs there whole).
    ``deferred`` holds the tasks run on the worker thread (:mod:`._deferred`).
    """

    work: dict[int, tuple[np.ndarray, np.ndarray]]
    acc: np.ndarray | None
    acc_key: tuple[int, int] = (-1, -1)
    deferred: DeferredWork | None = None
    registers: list[np.ndarray] = field(default_factory=list)
    products: dict[int, np.ndarray] = field(default_factory=dict)
    alone: np.ndarray | None = None


class NumpyExecutor(defaults.TunedCrossover, StridedGroupedKernels, ArrayAPIExecutor):
    """Executor for NumPy arrays on the CPU.

    * filter spectra per ``(filter slice, FFT size)`` computed once;
    * each FFT task writes its spectrum and its inverse into preallocated work arrays
      (``numpy.fft``'s ``out=``) and adds into the buffer in place;
    * a step is three calls: store ``u_t``, one ``numpy.vecdot`` over the local window, one
      addition of the accumulated future (copied once per window block);
    * :meth:`compile` gives rollouts a loop over the plan's tables with every lookup hoisted;
    * tasks due later than the next step (the ``deadline`` schedule's large tiles) run on a
      background thread, earliest deadline first, in pieces of a few channels, with
      ``scipy.fft`` (which releases the GIL); the stepping thread waits for a task only when
      the window block holding its first output starts and it is not done yet.

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
    #: Integer-array indices in reads and updates: the pool's batched kernels gather and
    #: scatter all rows at once.
    fancy_indexing = True
    shipped = SHIPPED

    def __init__(self, device: Any = None, *, tuned: bool = True) -> None:
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy backend runs on the CPU, not on {device!r}")
        super().__init__(compat_namespace("numpy"), None)
        self.tuned = bool(tuned)
        self._workers = WorkerSlot()  # one worker, started by the first deferred task

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
        if accumulates:
            state.workspace.deferred = DeferredWork.for_plan(plan, buf)
        ws = state.workspace
        program = plan.transforms
        ws.alone = program.fused.copy()
        if ws.deferred is not None:
            ws.alone[plan.after_step[ws.deferred.defer]] = True
        if not ws.alone.all():
            ws.registers = [
                np.empty((*lead, n // 2 + 1), complex_dtype)
                for n in program.register_fft_size.tolist()
            ]
            shared_sizes = set(program.register_fft_size.tolist())
            ws.products = {n: np.empty_like(ws.work[n][0]) for n in shared_sizes}

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
            if ws.deferred is not None:
                ws.deferred.join(acc[..., slot - start : stop - start], slot, stop)
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
        run_task, run_transforms = self._run_task, self.run_transforms
        accumulators = self._block_accumulators
        deferred = state.workspace.deferred

        def program(state: ConvState, u0: np.ndarray, steps: int) -> np.ndarray:
            plan = state.plan
            buf, taps = state.buffer, state.taps_reversed
            W = taps.shape[-1]
            slots, starts, task_ptr = plan.slot, plan.window_slot, plan.task_ptr
            alone = state.workspace.alone
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
                if alone.item(t):
                    for task in range(task_ptr.item(t), task_ptr.item(t + 1)):
                        run_task(state, task)
                else:
                    run_transforms(state, t)
                if deferred is not None and deferred.pending:
                    deferred.take_one(slot + 1)
                t += 1
                state.step = t
                if i + 1 < steps:
                    u = feedback(y)
                    check_feedback(u, y)
            return np.moveaxis(out, 0, -1)

        return program

    def fill(self, state: ConvState, step: int) -> None:
        plan = state.plan
        if state.workspace.alone.item(step):
            for task in range(plan.task_ptr.item(step), plan.task_ptr.item(step + 1)):
                self._run_task(state, task)
        else:
            self.run_transforms(state, step)
        deferred = state.workspace.deferred
        if deferred is not None and deferred.pending:
            deferred.take_one(state.plan.slot.item(step) + 1)

    def _run_task(self, state: ConvState, task: int) -> None:
        """Run task ``task`` of the plan now, or hand it to the worker if it is due later."""
        deferred = state.workspace.deferred
        offsets = state.plan.task_offsets(task)
        if deferred is None or not deferred.defer[task]:
            self.fill_task(state, offsets)
            return
        deferred.hand_over(self._workers.get(), task, offsets, state)

    def settle(self, state: ConvState) -> None:
        """Wait for the state's deferred tasks and add what they computed into the buffer."""
        ws = state.workspace
        deferred = getattr(ws, "deferred", None)
        if deferred is None:
            return
        plan = state.plan
        slot = plan.slot.item(state.step) if state.step < plan.length else None
        deferred.settle(state.buffer, slot, ~state.emitted)  # ~emitted: slots hold the future
        ws.acc_key = (-1, -1)  # the accumulators are copied again, from the buffer

    def accumulate(
        self, state: ConvState, total: np.ndarray | None, spectrum: np.ndarray, task: TaskOffsets
    ) -> np.ndarray:
        ws, n, filt = state.workspace, task.fft_size, state.spectra[task.spectrum]
        if total is None:  # the first product of a target: into the size's work array
            return np.multiply(spectrum, filt, out=ws.work[n][0])
        total += np.multiply(spectrum, filt, out=ws.products[n])
        return total

    def add_inverse(self, state: ConvState, task: TaskOffsets, total: np.ndarray) -> None:
        _, _, c, d, r, n, _ = task
        z = np.fft.irfft(total, n, axis=-1, out=state.workspace.work[n][1])
        state.buffer[..., c:d] += z[..., r : r + d - c]

    def store(self, state: ConvState, register: int, task: TaskOffsets) -> np.ndarray:
        a, b, n = task.src_start, task.src_stop, task.fft_size
        out = state.workspace.registers[register]
        spectrum = np.fft.rfft(state.buffer[..., a:b], n, axis=-1, out=out)
        state.registers[register] = ((state.revision, a, b, n), spectrum)
        return spectrum

    def fill_task(self, state: ConvState, task: TaskOffsets) -> None:
        a, b, n = task.src_start, task.src_stop, task.fft_size
        spectrum = np.fft.rfft(state.buffer[..., a:b], n, axis=-1, out=state.workspace.work[n][0])
        spectrum *= state.spectra[task.spectrum]
        self.add_inverse(state, task, spectrum)

    def clear(self, state: ConvState) -> None:
        self.settle(state)
        state.buffer[...] = 0
