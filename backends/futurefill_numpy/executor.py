"""NumPy executor: the reference algorithm with every per-step allocation it can avoid removed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import array_api_compat.numpy as cnp
import numpy as np

from futurefill.executor import ArrayAPIExecutor, ConvState
from futurefill.plan import Plan

__all__ = ["NumpyExecutor"]


class NumpyExecutor(ArrayAPIExecutor):
    """Executor for NumPy arrays on the CPU.

    * one state buffer per (batch, channel), allocated once in :meth:`prepare`;
    * filter spectra per ``(filter slice, FFT size)`` computed once;
    * each FFT task writes its spectrum and its inverse into preallocated work arrays
      (``numpy.fft``'s ``out=``) and adds into the buffer in place;
    * a step is three calls: store ``u_t``, one ``numpy.vecdot`` over the local window, one
      addition of the accumulated future (copied once per window block).

    Parameters
    ----------
    device : None or "cpu"
        NumPy arrays live on the CPU.
    """

    name = "numpy"
    #: Crossover of the continuous schedule, ``((max batch*channels, direct_below), ...)``.
    #: Measured with ``futurefill bench --crossover --length 16384 --channels D`` (float64,
    #: feedback rollout, numpy 2.4, shared 2-core machine), us/token:
    #:
    #: ===== ===== ===== ===== ===== ===== ===== ===== ===== =====
    #: D     1     2     4     8     16    32    64    128   256
    #: ===== ===== ===== ===== ===== ===== ===== ===== ===== =====
    #: 1     27.7  10.7  7.8   6.4   5.7   5.4   5.1   5.0   4.8
    #: 64    30.1  19.9  17.2  13.1  11.4  10.5  9.5   9.9   11.0
    #: 512   116.5 95.1  71.6  78.3  62.4  56.0  59.5  59.6  67.6
    #: ===== ===== ===== ===== ===== ===== ===== ===== ===== =====
    #:
    #: Below the crossover an FFT task's fixed per-call cost exceeds the direct window it
    #: replaces; the direct window grows with D, so the best block shrinks as D grows.
    crossover: ClassVar[tuple[tuple[int, int], ...]] = (
        (4, 128),
        (128, 64),
        (1024, 32),
        (1 << 62, 16),
    )

    def __init__(self, device: Any = None) -> None:
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy backend runs on the CPU, not on {device!r}")
        super().__init__(cnp, None)

    def is_native(self, x: object) -> bool:
        return type(x) is np.ndarray

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    def default_direct_below(self, batch: int, channels: int, dtype: Any) -> int:
        width = batch * channels
        return next(k0 for limit, k0 in self.crossover if width <= limit)

    def prepare(self, plan: Plan, filters: Any, *, batch: int, dtype: Any) -> ConvState:
        state = super().prepare(plan, filters, batch=batch, dtype=dtype)
        complex_dtype = np.result_type(state.buffer.dtype, np.complex64)
        lead = state.buffer.shape[:2]
        # One pair of work arrays per FFT size, reused by every task of that size.
        state.extra["work"] = {
            n: (np.empty((*lead, n // 2 + 1), complex_dtype), np.empty((*lead, n), dtype))
            for n in {key[2] for key in plan.spectrum_keys}
        }
        # The accumulated future of the current window block, copied when the block starts
        # (valid because tasks only write blocks not yet started), so that a step is: store
        # u_t, one vecdot over the window, one addition. Naive accumulates nothing.
        state.extra["fast"] = plan.tasks_start_windows
        accumulates = plan.num_tasks > 0 or plan.prefill_fills_future
        state.extra["acc"] = np.empty((*lead, plan.window_length), dtype) if accumulates else None
        state.extra["acc_start"] = -1
        state.extra["acc_buffer"] = None
        return state

    def _block_accumulators(self, state: ConvState, start: int, slot: int) -> np.ndarray | None:
        """The accumulators of the window block starting at ``start``, read before the slot
        ``slot`` is overwritten (slots from ``slot`` on still hold accumulators)."""
        extra = state.extra
        acc = extra["acc"]
        if acc is None:
            return None
        if extra["acc_start"] != start or extra["acc_buffer"] is not state.buffer:
            buf = state.buffer
            stop = min(start + acc.shape[-1], buf.shape[-1])
            acc[..., slot - start : stop - start] = buf[..., slot:stop]
            extra["acc_start"], extra["acc_buffer"] = start, buf
        return acc

    def emit(self, state: ConvState, u: np.ndarray, channels: slice) -> np.ndarray:
        if not state.extra["fast"]:
            return super().emit(state, u, channels)
        plan = state.plan
        slot = plan.prompt + state.step - plan.origin
        start = plan.window_start.item(state.step) - plan.origin
        acc = self._block_accumulators(state, start, slot)
        buf = state.buffer
        buf[:, channels, slot] = u
        taps = state.taps_reversed
        W = taps.shape[-1]
        y = np.vecdot(buf[:, channels, start : slot + 1], taps[channels, W - 1 - slot + start :])
        if acc is not None:
            y += acc[:, channels, slot - start]
        return y

    def rollout(
        self, state: ConvState, u0: np.ndarray, feedback: Callable[[Any], Any], steps: int
    ) -> np.ndarray:
        """The emit/advance loop with every lookup hoisted out of it."""
        if not state.extra["fast"]:
            return super().rollout(state, u0, feedback, steps)
        plan = state.plan
        buf = state.buffer
        taps = state.taps_reversed
        W = taps.shape[-1]
        window_start, task_ptr = plan.window_start, plan.task_ptr
        shift = plan.prompt - plan.origin
        o = plan.origin
        vecdot = np.vecdot
        out = np.empty((steps, *buf.shape[:2]), dtype=buf.dtype)
        u = u0
        t = state.step
        block = -1
        acc = None
        for i in range(steps):
            slot = t + shift
            start = window_start.item(t) - o
            if start != block:
                acc, block = self._block_accumulators(state, start, slot), start
            buf[..., slot] = u
            y = vecdot(buf[..., start : slot + 1], taps[:, W - 1 - slot + start :], out=out[i])
            if acc is not None:
                y += acc[..., slot - start]
            for task in range(task_ptr.item(t), task_ptr.item(t + 1)):
                self.run_task(state, task)
            t += 1
            state.step = t
            if i + 1 < steps:
                u = feedback(y)
                if u.shape != y.shape or u.dtype != y.dtype:
                    raise ValueError(
                        f"feedback must return shape {y.shape} and dtype {y.dtype}, got "
                        f"{u.shape} and {u.dtype}"
                    )
        return np.moveaxis(out, 0, -1)

    def run_task(self, state: ConvState, i: int) -> None:
        buf = state.buffer
        a, b, c, d, r, n, key = state.plan.task_offsets(i)
        spec_work, real_work = state.extra["work"][n]
        spectrum = np.fft.rfft(buf[..., a:b], n, axis=-1, out=spec_work)
        spectrum *= state.spectra[key]
        z = np.fft.irfft(spectrum, n, axis=-1, out=real_work)
        buf[..., c:d] += z[..., r : r + d - c]

    def reset(self, state: ConvState) -> None:
        state.buffer[...] = 0
        state.step = 0
        state.prefilled = False
        state.extra["acc_start"] = -1  # the copied accumulators are stale
