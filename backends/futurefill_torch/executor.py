"""PyTorch executor: the reference algorithm on torch tensors, in place, on the CPU or a GPU.

Nothing in :meth:`TorchExecutor.emit` or :meth:`TorchExecutor.fill` reads a device value
back to the host: every offset comes from the plan (host integers), so on CUDA a step only
queues kernels.

Exactness does not depend on global precision switches: no kernel is a matrix product (the
window is a multiply and a sum, ``torch.linalg.vecdot``; the tasks are FFTs), so
``torch.backends.cuda.matmul.allow_tf32`` and ``torch.set_float32_matmul_precision`` change
nothing (``tests/test_backend_torch_precision.py`` checks the dispatched operators).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from futurefill import defaults
from futurefill.executor import ArrayAPIExecutor, ConvState, compat_namespace
from futurefill.plan import TaskOffsets

from ._decode_graphs import DecodeGraphs, indexed_emit, token_step_program
from ._graphs import CudaRecorder, PatternGraphs, Recorder
from ._opaque import opaque

__all__ = ["SHIPPED", "TorchExecutor"]

#: The measured ``direct_below`` table shipped with this backend (``crossover.json``), per
#: device kind (``cpu``, ``cuda``) and dtype.
SHIPPED = defaults.ShippedTable.load(__package__ or "futurefill_torch")

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


class TorchExecutor(defaults.TunedCrossover, ArrayAPIExecutor):
    """Executor for ``torch.Tensor`` on the CPU or a CUDA device.

    * one state buffer per (batch, channel), allocated once in :meth:`prepare` and updated in
      place (``buf[..., c:d] += z``);
    * filter spectra per ``(filter slice, FFT size)`` computed once, on the device;
    * the local window is one batched ``torch.linalg.vecdot``;
    * no host synchronisation in a step; optionally (``cuda_graphs=True``) the FutureFill
      tasks after a step replay a CUDA graph, one per step pattern of the plan
      (:attr:`futurefill.Plan.step_patterns`), all captured when the state is built, into
      one memory pool per state (:attr:`workspace_size` reports it);
    * under ``torch.compile`` every kernel is a graph break and runs eagerly: the cursor is
      Python state, which compiled code would get wrong (see :mod:`futurefill_torch._opaque`).

    Inputs are used as data, never differentiated: tensors that require grad are detached.
    States are ordinary tensors even when built under ``torch.inference_mode()``.

    Parameters
    ----------
    device : None, str or torch.device
        ``"cpu"`` (default), ``"cuda"`` (the current CUDA device) or ``"cuda:N"``.
    cuda_graphs : bool
        Capture the FutureFill work after a step as CUDA graphs, one per step pattern (CUDA
        only), when a state is built. Off by default.
    tuned : bool
        Consult the stored tuning (``futurefill tune``) for the continuous schedule's
        ``direct_below``; ``False`` keeps to the measured table shipped in this package
        (``crossover.json``, per device kind and dtype, see :data:`SHIPPED`).

    Raises
    ------
    RuntimeError
        A CUDA device was asked for and none is usable.
    ValueError
        ``device`` is not a CPU or CUDA device, or ``cuda_graphs`` is asked for on the CPU.
    """

    name = "torch"
    #: Integer-array indices in reads and updates: the pool's batched kernels gather and
    #: scatter all rows at once.
    fancy_indexing = True
    shipped = SHIPPED

    def __init__(
        self, device: Any = None, *, cuda_graphs: bool = False, tuned: bool = True
    ) -> None:
        dev = _resolve_device(device)
        if cuda_graphs and dev.type != "cuda":
            raise ValueError("cuda_graphs=True needs a CUDA device")
        super().__init__(compat_namespace("torch"), dev)
        self.cuda_graphs = bool(cuda_graphs)
        self.tuned = bool(tuned)

    # ------------------------------------------------------------------ arrays
    def is_native(self, x: object) -> bool:
        return isinstance(x, torch.Tensor) and x.device == self.device

    def refusal(self, x: object) -> str | None:
        """A tensor on another device is refused (as torch does), not copied over."""
        if isinstance(x, torch.Tensor):
            return (
                f"a tensor on device {x.device}, this stream is on device {self.device}: "
                f"move it with .to({str(self.device)!r})"
            )
        return None

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

    def default_dtype(self, host_dtype: Any) -> str:
        """The working dtype when none is asked for, from the dtype of the host filters.

        On the CPU: float64 for integer or boolean filters, else the filters' own (float32 or
        float64). On a GPU: float32 whatever the filters' dtype, since float64 runs at a
        fraction of float32's speed on most GPUs; ask for ``dtype="float64"`` to get it.
        """
        kind = np.dtype(host_dtype)
        if kind.kind in "iub":
            return "float32" if self.device.type == "cuda" else "float64"
        if self.device.type == "cuda" and kind.itemsize >= 4:
            return "float32"  # half-precision filters keep their type for inputs and outputs
        return kind.name

    def all_finite(self, x: torch.Tensor) -> bool:
        """Whether ``x`` holds no NaN or infinity, reduced on the device: only the verdict (one
        boolean, a synchronisation) comes back to the host, not the array."""
        return bool(torch.isfinite(x).all())

    def device_kind(self) -> str:
        """``"cpu"`` or ``"cuda"``: the rows of the shipped table this executor reads."""
        return str(self.device.type)

    def synchronize(self) -> None:
        """Wait for the work queued on this executor's device (not the current device's)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        """The context a state is built in: this executor's device current, and ordinary
        tensors even under ``torch.inference_mode()`` (inference tensors cannot be updated in
        place once the mode is left, and a state lives on)."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode(False))
        if self.device.type == "cuda":
            stack.enter_context(torch.cuda.device(self.device))
        return stack

    def workspace_size(self, state: ConvState) -> dict[str, int]:
        """What the executor holds for ``state`` beyond its arrays, in bytes: the memory pool
        and offset tables of its CUDA graphs (``cuda_graphs_bytes``, 0 without graphs),
        measured once after the captures; nothing without graphs."""
        graphs: PatternGraphs | None = state.workspace
        return {} if graphs is None else {"cuda_graphs_bytes": graphs.pool_bytes}

    # ------------------------------------------------------------------ kernels
    def recorder(self, state: ConvState) -> Recorder | None:
        """What captures ``state``'s graphs: a :class:`CudaRecorder` with ``cuda_graphs``,
        else ``None`` (no graphs). Tests substitute a stand-in that replays eagerly."""
        return CudaRecorder(state.buffer.device) if self.cuda_graphs else None

    def prepare(self, state: ConvState) -> None:
        state.taps_reversed = state.taps_reversed.contiguous()
        recorder = self.recorder(state)
        if recorder is not None and state.plan.num_tasks:
            # every pattern's graph captured now, before the first step
            state.workspace = PatternGraphs(state, recorder)

    def capture_decode(
        self, state: ConvState, body: Any, tokens: Any, states: Any
    ) -> DecodeGraphs | None:
        """A model's whole token step (every layer's ``emit``, the rest of the layers, the
        ``advance``) captured as one graph per ``(window width, step pattern)`` of the plan,
        in the pool of the state's pattern graphs (see :mod:`futurefill_torch._decode_graphs`);
        ``None`` without ``cuda_graphs`` or when the plan has too many such keys (naive)."""
        return token_step_program(state, body, tokens, states)

    @opaque
    def prefill(self, state: ConvState, u: torch.Tensor, channels: slice) -> torch.Tensor:
        plan = state.plan
        P = plan.prompt
        u = u.detach()
        z = self.prompt_convolution(state, u, channels)
        buf = _writable(state)[:, channels]  # a view: the buffer keeps its storage (CUDA graphs)
        if plan.prefill_fills_future:
            buf.copy_(z[..., P:])
        else:
            buf[..., :P] = u
        return z[..., :P].contiguous()

    @opaque
    def emit(
        self, state: ConvState, u: torch.Tensor, channels: slice, slot: int, start: int
    ) -> torch.Tensor:
        width = slot - start  # older inputs in the window
        if u.requires_grad:
            u = u.detach()
        buf = _writable(state)
        taps = state.taps_reversed
        if channels.start is not None or channels.stop is not None:
            c0, c1, _ = channels.indices(buf.shape[1])
            buf = buf.narrow(1, c0, c1 - c0)
            taps = taps.narrow(0, c0, c1 - c0)
        graphs = state.workspace
        if isinstance(graphs, PatternGraphs) and graphs.decode_capture is not None:
            return indexed_emit(graphs.decode_capture, buf, taps, u, width)
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

    @opaque
    def fill(self, state: ConvState, step: int) -> None:
        _writable(state)
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

    @opaque
    def clear(self, state: ConvState) -> None:
        _writable(state).zero_()


def _writable(state: ConvState) -> torch.Tensor:
    """``state.buffer``, first replaced by an ordinary copy if it is an inference tensor and
    the inference mode was left (a state restored under ``torch.inference_mode()``)."""
    buf = state.buffer
    if buf.is_inference() and not torch.is_inference_mode_enabled():
        buf = state.buffer = buf.clone()
    return buf
