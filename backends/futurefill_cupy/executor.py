"""CuPy executor: the reference algorithm on CUDA arrays, in place, with cuFFT plan reuse.

Every offset comes from the plan (host integers), so a step only queues kernels and never
waits for the device. FFTs are 1-D along the last axis (``axis=-1``; multi-axis calls with
non-ascending axes return wrong shapes in some CuPy versions, cupy#8248). Every FFT size of a
plan repeats from task to task, so cuFFT plans are created once and served from CuPy's plan
cache afterwards. CuPy keeps one plan cache per thread and device: each thread that runs a
state's FFTs has its own cache enlarged, on the executor's device.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import cupy
import numpy as np

from futurefill.executor import ArrayAPIExecutor, ConvState, compat_namespace
from futurefill.plan import TaskOffsets

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
    * CuPy's cuFFT plan cache is enlarged (never shrunk) to hold every plan of a state, in
      every thread that runs its FFTs.

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
    #: Integer-array indices in reads and updates: the pool's batched kernels gather and
    #: scatter all rows at once.
    fancy_indexing = True
    #: ``direct_below`` crossover (aligned blocks summed directly). On an H100 (cupy 14.2,
    #: D=64, L=16384) a step is bound by kernel launches (~80 us/token), so summing a block of 64
    #: steps directly in one kernel is cheaper than the launches of the FFT tasks it replaces.
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
        super().__init__(compat_namespace("cupy"), cupy.cuda.Device(index))
        self._thread = threading.local()  # the plan cache size ensured in each thread

    # ------------------------------------------------------------------ arrays
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

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> cupy.ndarray:
        with self.device:
            return cupy.zeros(shape, dtype=self.resolve_dtype(dtype))

    def synchronize(self) -> None:
        self.device.synchronize()

    def activate(self) -> cupy.cuda.Device:
        return self.device

    # ------------------------------------------------------------------ kernels
    def prepare(self, state: ConvState) -> None:
        with self.device:
            state.taps_reversed = cupy.ascontiguousarray(state.taps_reversed)
        # One forward and one inverse plan per FFT size (and per batch shape); keep them all.
        state.workspace = 2 * len({key[2] for key in state.plan.spectrum_keys}) + 2
        self._hold_plans(state.workspace)

    def _hold_plans(self, needed: int) -> None:
        """Enlarge (never shrink) this thread's cuFFT plan cache on this device to ``needed``
        plans; a dictionary look-up once it is done in this thread."""
        if getattr(self._thread, "plans", 0) >= needed:
            return
        with self.device:
            cache = cupy.fft.config.get_plan_cache()
            if 0 < cache.get_size() < needed:
                cache.set_size(needed)
        self._thread.plans = needed

    def fill(self, state: ConvState, step: int) -> None:
        self._hold_plans(state.workspace)  # the thread stepping may not be the one that built
        super().fill(state, step)

    def prefill(self, state: ConvState, u: cupy.ndarray, channels: slice) -> cupy.ndarray:
        plan = state.plan
        P = plan.prompt
        self._hold_plans(state.workspace)
        with self.device:
            z = self.prompt_convolution(state, u, channels)
            if plan.prefill_fills_future:
                state.buffer[:, channels] = z[..., P:]
            else:
                state.buffer[:, channels, :P] = u
            return cupy.ascontiguousarray(z[..., :P])

    def emit(
        self, state: ConvState, u: cupy.ndarray, channels: slice, slot: int, start: int
    ) -> cupy.ndarray:
        width = slot - start  # older inputs in the window
        buf = state.buffer
        taps = state.taps_reversed
        if channels.start is not None or channels.stop is not None:
            buf = buf[:, channels]
            taps = taps[channels]
        last = taps.shape[1] - 1
        with self.device:
            current = buf[:, :, slot]
            if width:
                window = _window_dot(buf[:, :, start:slot], taps[:, last - width : last], axis=2)
                y = _emit_window_kernel(current, taps[:, last], u, window)
            else:
                y = _emit_kernel(current, taps[:, last], u)
            current[...] = u  # after y is computed: the slot now holds the input u_t
        return y

    def fill_task(self, state: ConvState, task: TaskOffsets) -> None:
        buf = state.buffer
        a, b, c, d, r, n, key = task
        with self.device:
            spectrum = cupy.fft.rfft(buf[..., a:b], n=n, axis=-1)
            spectrum *= state.spectra[key]
            z = cupy.fft.irfft(spectrum, n=n, axis=-1)
            buf[..., c:d] += z[..., r : r + d - c]

    def clear(self, state: ConvState) -> None:
        with self.device:
            state.buffer.fill(0)
