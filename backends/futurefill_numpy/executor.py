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
    * the local window is one ``numpy.vecdot`` call.

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
        # The reversed taps with phi[0] replaced by 1: one vecdot over the window *and* the slot
        # (which still holds the accumulator A[j]) gives A[j] + the window's older inputs.
        window_taps = state.taps_reversed.copy()
        window_taps[:, -1] = 1
        state.extra["window_taps"] = window_taps
        state.extra["phi0"] = np.ascontiguousarray(state.taps_reversed[:, -1])
        return state

    def emit(self, state: ConvState, u: np.ndarray, channels: slice) -> np.ndarray:
        plan = state.plan
        t = state.step
        slot = plan.prompt + t - plan.origin
        start = plan.window_start.item(t) - plan.origin
        buf = state.buffer
        taps = state.extra["window_taps"]
        W = taps.shape[-1]
        y = np.vecdot(buf[:, channels, start : slot + 1], taps[channels, W - 1 - slot + start :])
        y += state.extra["phi0"][channels] * u
        buf[:, channels, slot] = u
        return y

    def rollout(
        self, state: ConvState, u0: np.ndarray, feedback: Callable[[Any], Any], steps: int
    ) -> np.ndarray:
        """The emit/advance loop with every lookup hoisted out of it."""
        plan = state.plan
        buf = state.buffer
        taps, phi0 = state.extra["window_taps"], state.extra["phi0"]
        W = taps.shape[-1]
        window_start, task_ptr = plan.window_start, plan.task_ptr
        shift = plan.prompt - plan.origin
        o = plan.origin
        vecdot = np.vecdot
        out = np.empty((steps, *buf.shape[:2]), dtype=buf.dtype)
        u = u0
        t = state.step
        for i in range(steps):
            slot = t + shift
            start = window_start.item(t) - o
            y = vecdot(buf[..., start : slot + 1], taps[:, W - 1 - slot + start :], out=out[i])
            y += phi0 * u
            buf[..., slot] = u
            first, stop = task_ptr.item(t), task_ptr.item(t + 1)
            if first < stop:
                self._run_tasks(state, first, stop)
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

    def advance(self, state: ConvState) -> None:
        plan = state.plan
        t = state.step
        first, stop = plan.task_ptr.item(t), plan.task_ptr.item(t + 1)
        if first < stop:
            self._run_tasks(state, first, stop)
        state.step = t + 1

    def _run_tasks(self, state: ConvState, first: int, stop: int) -> None:
        buf = state.buffer
        for i in range(first, stop):
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
