"""CuPy executor: the reference algorithm on CUDA arrays, in place, with cuFFT plan reuse.

Every offset comes from the plan (host integers), so a step only queues kernels and never
waits for the device. FFTs are 1-D along the last axis (``axis=-1``; multi-axis calls with
non-ascending axes return wrong shapes in some CuPy versions, cupy#8248). Every FFT size of a
plan is a power of two that repeats (one per level of the continuous schedule, one for the
epoched one), so cuFFT plans are created once and served from CuPy's plan cache afterwards.
"""

from __future__ import annotations

from typing import Any, ClassVar

import array_api_compat.cupy as ccupy
import cupy
import numpy as np

from futurefill import ops
from futurefill.executor import ArrayAPIExecutor, ConvState
from futurefill.plan import Plan

__all__ = ["CupyExecutor"]

_FLOATS = ("float32", "float64")

# y = (future filled in the slot) + phi[0] * u_t [+ the window's older inputs]
_emit_kernel = cupy.ElementwiseKernel(
    "T acc, T tap0, T u", "T y", "y = acc + tap0 * u", "futurefill_emit"
)
_emit_window_kernel = cupy.ElementwiseKernel(
    "T acc, T tap0, T u, T window", "T y", "y = acc + tap0 * u + window", "futurefill_emit_window"
)
# sum over the last axis of inputs * taps, taps broadcast over the batch: one kernel, no temporary
_window_dot = cupy.ReductionKernel(
    "T x, T w", "T y", "x * w", "a + b", "y = a", "0", "futurefill_window_dot"
)


def _device_id(device: Any) -> int:
    """CUDA device number of ``None`` (current), an int, ``"cuda"``, ``"cuda:N"`` or a Device."""
    if device is None:
        return int(cupy.cuda.runtime.getDevice())
    if isinstance(device, cupy.cuda.Device):
        return int(device.id)
    if isinstance(device, int | np.integer) and not isinstance(device, bool):
        return int(device)
    if isinstance(device, str):
        name, _, index = device.partition(":")
        if name in ("cuda", "gpu") and (index == "" or index.isdigit()):
            return int(cupy.cuda.runtime.getDevice()) if index == "" else int(index)
    raise ValueError(
        f"the cupy backend runs on CUDA devices ('cuda', 'cuda:N', an int or a "
        f"cupy.cuda.Device), not on {device!r}"
    )


class CupyExecutor(ArrayAPIExecutor):
    """Executor for ``cupy.ndarray`` on one CUDA device.

    * one state buffer per (batch, channel), allocated once in :meth:`prepare`, updated in
      place (``buf[..., c:d] += z``);
    * filter spectra per ``(filter slice, FFT size)`` computed once, on the device;
    * the local window is one fused reduction kernel, the output one elementwise kernel;
    * CuPy's cuFFT plan cache is enlarged (never shrunk) to hold every plan of a state.

    Parameters
    ----------
    device : None, int, str or cupy.cuda.Device
        The CUDA device; the current one by default.

    Raises
    ------
    RuntimeError
        No CUDA device is usable (CuPy installed without a GPU or a driver).
    ValueError
        ``device`` does not name a CUDA device.
    """

    name = "cupy"
    #: Crossover of the continuous schedule: NOT measured (no GPU was available when this was
    #: written). Summing a block of 64 steps directly is one small kernel, cheaper than the
    #: launches of an FFT task; measure it with ``futurefill bench`` on a GPU and replace it.
    direct_below: ClassVar[int] = 64

    def __init__(self, device: Any = None) -> None:
        try:
            count = int(cupy.cuda.runtime.getDeviceCount())
        except (cupy.cuda.runtime.CUDARuntimeError, RuntimeError, OSError) as exc:
            raise RuntimeError(f"no CUDA device is usable by cupy: {exc}") from exc
        if count == 0:
            raise RuntimeError("no CUDA device is usable by cupy (0 devices found)")
        index = _device_id(device)
        if not 0 <= index < count:
            raise RuntimeError(f"no CUDA device {index}: cupy sees {count} device(s)")
        super().__init__(ccupy, cupy.cuda.Device(index))

    # ------------------------------------------------------------------ conversions
    def is_native(self, x: object) -> bool:
        return isinstance(x, cupy.ndarray) and x.device.id == self.device.id

    def asarray(self, x: Any, dtype: Any = None) -> cupy.ndarray:
        if dtype is not None:
            dtype = self.resolve_dtype(dtype)
        with self.device:
            return cupy.asarray(x, dtype=dtype)

    def to_numpy(self, x: cupy.ndarray) -> np.ndarray:
        return cupy.asnumpy(x)

    def resolve_dtype(self, dtype: Any) -> np.dtype:
        try:
            name = np.dtype(dtype).name
        except (TypeError, ValueError):
            name = None
        if name in _FLOATS:
            return np.dtype(name)
        return np.dtype(super().resolve_dtype(dtype))  # raises the refusal for anything else

    def synchronize(self) -> None:
        self.device.synchronize()

    # ------------------------------------------------------------------ state
    def prepare(self, plan: Plan, filters: Any, *, batch: int, dtype: Any) -> ConvState:
        dtype = self.resolve_dtype(dtype)
        with self.device:
            filt = cupy.array(filters, dtype=dtype, copy=True)  # private copy, on this device
            state = ConvState(
                plan=plan,
                filters=filt,
                taps_reversed=cupy.ascontiguousarray(filt[:, : plan.window_length][:, ::-1]),
                spectra={
                    key: ops.filter_spectrum(filt, *key, xp=self.xp) for key in plan.spectrum_keys
                },
                buffer=cupy.zeros((batch, filt.shape[0], plan.buffer_length), dtype=dtype),
            )
            # One forward and one inverse plan per FFT size (and per batch shape); keep them all.
            cache = cupy.fft.config.get_plan_cache()
            needed = 2 * len({key[2] for key in plan.spectrum_keys}) + 2
            if 0 < cache.get_size() < needed:
                cache.set_size(needed)
        return state

    def reset(self, state: ConvState) -> None:
        with self.device:
            state.buffer.fill(0)
        state.step = 0
        state.prefilled = False

    # ------------------------------------------------------------------ running
    def prefill(self, state: ConvState, u: cupy.ndarray, channels: slice) -> cupy.ndarray:
        plan = state.plan
        P = plan.prompt
        with self.device:
            z = self.prompt_convolution(state, u, channels)
            if plan.prefill_fills_future:
                state.buffer[:, channels] = z[..., P:]
            else:
                state.buffer[:, channels, :P] = u
            return cupy.ascontiguousarray(z[..., :P])

    def emit(self, state: ConvState, u: cupy.ndarray, channels: slice) -> cupy.ndarray:
        plan = state.plan
        t = state.step
        slot = plan.prompt + t - plan.origin
        width = slot - (plan.window_start.item(t) - plan.origin)  # older inputs in the window
        buf = state.buffer
        taps = state.taps_reversed
        if channels.start is not None or channels.stop is not None:
            buf = buf[:, channels]
            taps = taps[channels]
        last = taps.shape[1] - 1
        with self.device:
            current = buf[:, :, slot]
            if width:
                window = _window_dot(
                    buf[:, :, slot - width : slot], taps[:, last - width : last], axis=2
                )
                y = _emit_window_kernel(current, taps[:, last], u, window)
            else:
                y = _emit_kernel(current, taps[:, last], u)
            current[...] = u  # after y is computed: the slot now holds the input u_t
        return y

    def run_task(self, state: ConvState, i: int) -> None:
        buf = state.buffer
        a, b, c, d, r, n, key = state.plan.task_offsets(i)
        with self.device:
            spectrum = cupy.fft.rfft(buf[..., a:b], n=n, axis=-1)
            spectrum *= state.spectra[key]
            z = cupy.fft.irfft(spectrum, n=n, axis=-1)
            buf[..., c:d] += z[..., r : r + d - c]
