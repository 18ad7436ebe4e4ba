"""PyTorch executor: the reference algorithm on torch tensors, in place, on the CPU or a GPU.

Nothing in :meth:`TorchExecutor.emit` or :meth:`TorchExecutor.advance` reads a device value
back to the host: every offset comes from the plan (host integers), so on CUDA a step only
queues kernels.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from futurefill.backends import ArrayAPIExecutor, ConvState, compat_namespace
from futurefill.plan import TaskOffsets

from ._graphs import PatternGraphs

__all__ = ["TorchExecutor"]

_FLOATS = {"float32": torch.float32, "float64": torch.float64}


def _resolve_device(device: Any) -> torch.device:
    """A normalized ``torch.device`` (``cuda`` gets its index) or an error saying why not."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"the torch backend got {device!r}, which is not a torch device") from exc
    if dev.type == "cpu":
        return torch.device("cpu")  # CPU tensors report no index: "cpu:0" must compare equal
    if dev.type != "cuda":
        raise ValueError(f"the torch backend runs on 'cpu' or 'cuda' devices, not {device!r}")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"the torch backend was asked for device {device!r} but torch.cuda.is_available() "
            f"is False (torch {torch.__version__}): no usable CUDA device or a CPU-only build"
        )
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if not 0 <= index < torch.cuda.device_count():
        raise RuntimeError(
            f"the torch backend was asked for device {device!r} but only "
            f"{torch.cuda.device_count()} CUDA device(s) exist"
        )
    return torch.device("cuda", index)


class TorchExecutor(ArrayAPIExecutor):
    """Executor for ``torch.Tensor`` on the CPU or a CUDA device.

    * one state buffer per (batch, channel), allocated once in :meth:`prepare` and updated in
      place (``buf[..., c:d] += z``);
    * filter spectra per ``(filter slice, FFT size)`` computed once, on the device;
    * the local window is one batched ``torch.linalg.vecdot``;
    * no host synchronisation in a step; optionally (``cuda_graphs=True``) the FutureFill
      tasks after a step replay a CUDA graph captured once per step pattern of the plan
      (:attr:`futurefill.Plan.step_patterns`).

    Inputs are used as data, never differentiated: tensors that require grad are detached.

    Parameters
    ----------
    device : None, str or torch.device
        ``"cpu"`` (default), ``"cuda"`` (the current CUDA device) or ``"cuda:N"``.
    cuda_graphs : bool
        Capture the FutureFill work after a step as CUDA graphs, one per step pattern (CUDA
        only). Off by default.

    Raises
    ------
    RuntimeError
        A CUDA device was asked for and none is usable.
    ValueError
        ``device`` is not a CPU or CUDA device, or ``cuda_graphs`` is asked for on the CPU.
    """

    name = "torch"
    #: ``direct_below`` crossover on the CPU: ``((max batch*channels, direct_below),
    #: ...)`` per dtype. Measured with torch 2.13.0+cpu, ``torch.set_num_threads(1)``, on a
    #: shared 2-core machine: 16384 ``OnlineConv.step`` calls (B=1, L=16384) for every
    #: direct_below in 1, 2, 4, ..., 256, all candidates stepped in lock-step so machine noise
    #: hits them alike. Mean us/step (best starred):
    #:
    #: ======== ===== ===== ===== ===== ===== ====== ===== ===== ===== =====
    #: dtype    B*C   1     2     4     8     16     32    64    128   256
    #: ======== ===== ===== ===== ===== ===== ====== ===== ===== ===== =====
    #: float32  1     79.6  55.1  47.8  40.8  34.9*  34.9  38.4  35.9  37.1
    #: float32  64    101.7 79.3  71.6  62.3  56.3   51.9  50.1* 50.5  53.4
    #: float32  512   289.0 228.6 194.3 174.7 167.2* 167.9 170.0 194.5 215.2
    #: float64  1     94.8  68.8  58.7  55.7  47.7   42.6* 45.4  48.2  45.7
    #: float64  64    123.2 88.4  73.6  57.8  61.8   64.4  58.1  58.2  56.4*
    #: float64  512   358.3 268.7 281.9 237.6 229.1* 231.7 245.8 269.9 340.3
    #: ======== ===== ===== ===== ===== ===== ====== ===== ===== ===== =====
    #:
    #: float64 at B*C=64 is flat from 8 to 256 (within 4%, the noise here); 64 is kept there.
    crossover: ClassVar[dict[torch.dtype, tuple[tuple[int, int], ...]]] = {
        torch.float32: ((1, 16), (64, 64), (1 << 62, 16)),
        torch.float64: ((1, 32), (64, 64), (1 << 62, 16)),
    }
    #: Crossover on CUDA. On an H100 (torch 2.11, D=64, L=16384) a step is bound by kernel
    #: launches (~57 us/token), so summing a block of 64 steps directly in
    #: one kernel is cheaper than the launches of the FFT tasks it replaces.
    cuda_direct_below: ClassVar[int] = 64

    def __init__(self, device: Any = None, *, cuda_graphs: bool = False) -> None:
        dev = _resolve_device(device)
        if cuda_graphs and dev.type != "cuda":
            raise ValueError("cuda_graphs=True needs a CUDA device")
        super().__init__(compat_namespace("torch"), dev)
        self.cuda_graphs = bool(cuda_graphs)

    # ------------------------------------------------------------------ arrays
    def is_native(self, x: object) -> bool:
        return isinstance(x, torch.Tensor) and x.device == self.device

    def asarray(self, x: Any, dtype: Any = None) -> torch.Tensor:
        if dtype is not None and not isinstance(dtype, torch.dtype):
            dtype = self.resolve_dtype(dtype)
        if isinstance(x, torch.Tensor):
            x = x.detach()  # inputs are data, never differentiated
        return torch.as_tensor(x, dtype=dtype, device=self.device)

    def to_numpy(self, x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().numpy()

    def resolve_dtype(self, dtype: Any) -> torch.dtype:
        if isinstance(dtype, torch.dtype):
            if dtype in (torch.float32, torch.float64):
                return dtype
        else:
            if isinstance(dtype, str) and dtype.startswith("torch."):
                dtype = dtype.removeprefix("torch.")  # the spelling str(torch.float32) gives
            try:
                name = np.dtype(dtype).name  # "float32", np.float64, np.dtype(...)
            except (TypeError, ValueError):
                name = None
            if name in _FLOATS:
                return _FLOATS[name]
        return super().resolve_dtype(dtype)  # raises the refusal for anything else

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> torch.Tensor:
        return torch.zeros(shape, dtype=self.resolve_dtype(dtype), device=self.device)

    def default_direct_below(self, batch: int, channels: int, dtype: Any) -> int:
        if self.device.type == "cuda":
            return self.cuda_direct_below
        width = batch * channels
        table = self.crossover[self.resolve_dtype(dtype)]
        return next(k0 for limit, k0 in table if width <= limit)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ kernels
    def prepare(self, state: ConvState) -> None:
        state.taps_reversed = state.taps_reversed.contiguous()
        if self.cuda_graphs and state.plan.num_tasks:
            state.workspace = PatternGraphs(state, capture=True)

    def prefill(self, state: ConvState, u: torch.Tensor, channels: slice) -> torch.Tensor:
        plan = state.plan
        P = plan.prompt
        u = u.detach()
        z = self.prompt_convolution(state, u, channels)
        buf = state.buffer[:, channels]  # a view: the buffer keeps its storage (CUDA graphs)
        if plan.prefill_fills_future:
            buf.copy_(z[..., P:])
        else:
            buf[..., :P] = u
        return z[..., :P].contiguous()

    def emit(
        self, state: ConvState, u: torch.Tensor, channels: slice, slot: int, start: int
    ) -> torch.Tensor:
        width = slot - start  # older inputs in the window
        if u.requires_grad:
            u = u.detach()
        buf = state.buffer
        taps = state.taps_reversed
        if channels.start is not None or channels.stop is not None:
            c0, c1, _ = channels.indices(buf.shape[1])
            buf = buf.narrow(1, c0, c1 - c0)
            taps = taps.narrow(0, c0, c1 - c0)
        last = taps.shape[1] - 1
        current = buf.select(2, slot)
        # Everything filled ahead (in the slot) + phi[0] * u_t + the window's older inputs,
        # computed before the slot is overwritten by the input u_t.
        y = torch.addcmul(current, taps.select(1, last), u)
        if width:
            y += torch.linalg.vecdot(
                buf.narrow(2, start, width), taps.narrow(1, last - width, width)
            )
        current.copy_(u)
        return y

    def fill(self, state: ConvState, step: int) -> None:
        graphs: PatternGraphs | None = state.workspace
        if graphs is None:
            super().fill(state, step)
        else:
            graphs.run(state, step)

    def fill_task(self, state: ConvState, task: TaskOffsets) -> None:
        buf = state.buffer
        a, b, c, d, r, n, key = task
        spectrum = torch.fft.rfft(buf.narrow(2, a, b - a), n=n, dim=-1)
        spectrum.mul_(state.spectra[key])
        z = torch.fft.irfft(spectrum, n=n, dim=-1)
        buf.narrow(2, c, d - c).add_(z.narrow(2, r, d - c))

    def clear(self, state: ConvState) -> None:
        state.buffer.zero_()
