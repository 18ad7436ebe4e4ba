"""OnlineConvModule: :class:`futurefill.OnlineConv` as a ``torch.nn.Module``.

The module's buffers *are* the tensors the online convolution runs on (no copy per step):
``filters`` and ``stream`` follow ``.to(device)``, and ``state_dict()`` /
``load_state_dict()`` carry the stream with its cursor, so a module saved mid-stream resumes
bit-identically in a fresh one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from futurefill import OnlineConv, Plan, PlanSpec
from futurefill.executor import ConvState

from ._opaque import opaque
from .executor import TorchExecutor

__all__ = ["OnlineConvModule"]

_ALL = slice(None)
_FLOATS = (torch.float32, torch.float64)
#: Entries of the cursor kept under ``_extra_state`` (with the buffers they seal).
_CURSOR = ("plan", "filters_digest", "position", "prefilled", "emitted", "digest")


def _live_state(conv: OnlineConv) -> ConvState:
    """The state ``conv`` runs on; its filters and buffer tensors are the module's buffers.

    The module shares its tensors rather than copy them at every step, and re-reads them
    after any call that may replace them.
    """
    return conv.state


def _carry_cursor(old: ConvState, new: ConvState, buffer: torch.Tensor) -> None:
    """Continue ``old``'s stream in ``new`` (the same plan and filters, another device or a
    copy): its cursor, and ``buffer``, the module's own copy of ``old.buffer``.

    What ``load_state_dict`` would do, without the digest: that seals snapshots leaving the
    module, and hashing the stream on the host at every ``.to()`` would copy it back each time.
    """
    new.buffer = buffer
    new.step = old.step
    new.num_emitted = old.num_emitted
    new.prefilled[:] = old.prefilled
    new.emitted[:] = old.emitted
    new.revision += 1


def _executor(device: Any, cuda_graphs: bool) -> TorchExecutor:
    """The torch executor for ``device``, with CUDA graphs when asked for and on CUDA."""
    executor = TorchExecutor(device)
    if cuda_graphs and executor.device.type == "cuda":
        executor = TorchExecutor(executor.device, cuda_graphs=True)
    return executor


class OnlineConvModule(nn.Module):
    """An exact streaming causal convolution as a ``torch.nn.Module``.

    Wraps a :class:`futurefill.OnlineConv` on the torch backend: every argument is checked
    there, and ``forward(u)`` is one :meth:`~futurefill.OnlineConv.step` for all channels.
    Inference only: inputs are used as data, no gradient flows through the convolution.

    * **Buffers.** ``filters`` ``(C, N)`` and ``stream`` ``(B, C, plan.buffer_length)`` are the
      convolution's own tensors, updated in place. They follow ``.to(device)``, ``.cuda()`` and
      ``.cpu()``: the convolution is rebuilt on the new device and continues where it was.
      Treat them as read-only (change filters by building a module or loading a state dict).
    * **Dtype.** float32 or float64, fixed when built (``dtype``, default: the filters').
      ``.half()``, ``.bfloat16()`` and other dtypes are refused with a ``TypeError`` and the
      module unchanged: the FFTs of the schedules need float32 at least; cast at the
      boundary instead (``conv(u.float()).bfloat16()``). ``.float()`` / ``.double()`` convert
      a module that holds no stream (fresh or after :meth:`reset`) and are refused mid-stream.
    * **State dict.** ``state_dict()`` holds ``filters``, ``stream`` (a copy: the module may go
      on streaming) and ``_extra_state``, the cursor (plan and filter fingerprints, position,
      per-channel masks) with a digest over all of it. ``load_state_dict`` restores it
      bit-identically into a module built with the same schedule, length, prompt and batch
      (its filters are taken from the state dict); an edited or foreign state dict is refused
      with the module unchanged. Everything in it is a tensor, a string or an int, so
      ``torch.load(..., weights_only=True)`` reads it.
    * **torch.compile.** The stateful methods (``forward``, ``prefill``, ``emit``,
      ``advance``, ``reset``) are graph breaks that run eagerly inside compiled code; the
      module may be built, stepped or loaded under ``torch.inference_mode()``.

    Parameters
    ----------
    filters : torch.Tensor or numpy.ndarray, shape (C, N)
        Filter taps, ``N >= prompt + length``; a tensor is moved to ``device``.
    length : int
        Number of online steps.
    schedule : str, PlanSpec or Plan
        As for :class:`futurefill.OnlineConv`.
    prompt : int
        Prompt inputs given by :meth:`prefill` before the first step.
    batch : int
        Batch size ``B``.
    dtype : optional
        ``torch.float32`` or ``torch.float64`` (or their names); the filters' by default.
    device : optional
        ``"cpu"`` or ``"cuda[:N]"``; the filters' device for a tensor, else the CPU.
    cuda_graphs : bool
        Replay the FutureFill work of a step as CUDA graphs whenever the module is on a CUDA
        device (see :class:`~futurefill_torch.TorchExecutor`); no effect on the CPU.
    **params
        Schedule parameters (``epoch=``, ``direct_below=``, ...).

    Examples
    --------
    >>> import torch
    >>> from futurefill_torch import OnlineConvModule
    >>> conv = OnlineConvModule(torch.ones(2, 8, dtype=torch.float64), length=8)
    >>> conv(torch.ones(1, 2, dtype=torch.float64)).tolist()
    [[1.0, 1.0]]
    >>> conv(torch.ones(1, 2, dtype=torch.float64)).tolist()
    [[2.0, 2.0]]
    """

    filters: torch.Tensor
    stream: torch.Tensor

    def __init__(
        self,
        filters: torch.Tensor | np.ndarray,
        length: int,
        *,
        schedule: str | PlanSpec | Plan = "continuous",
        prompt: int = 0,
        batch: int = 1,
        dtype: Any = None,
        device: Any = None,
        cuda_graphs: bool = False,
        **params: Any,
    ) -> None:
        super().__init__()
        if device is None and isinstance(filters, torch.Tensor):
            device = filters.device
        self._cuda_graphs = bool(cuda_graphs)
        executor = _executor(device, self._cuda_graphs)
        if isinstance(filters, torch.Tensor):
            filters = filters.detach().to(executor.device)
        self._conv = OnlineConv(
            filters,
            length,
            schedule=schedule,
            prompt=prompt,
            batch=batch,
            dtype=dtype,
            backend=executor,
            **params,
        )
        state = _live_state(self._conv)
        self.register_buffer("filters", state.filters)
        self.register_buffer("stream", state.buffer)

    # ------------------------------------------------------------------ description
    @property
    def plan(self) -> Plan:
        """The schedule being run."""
        return self._conv.plan

    @property
    def position(self) -> int:
        """Index of the next online step."""
        return self._conv.position

    @property
    def remaining(self) -> int:
        """Online steps left in the plan."""
        return self._conv.remaining

    @property
    def batch(self) -> int:
        """Batch size ``B``."""
        return self._conv.batch

    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return self._conv.channels

    @property
    def dtype(self) -> torch.dtype:
        """Working dtype of inputs, outputs, filters and stream."""
        return self.filters.dtype

    @property
    def device(self) -> torch.device:
        """The device the module runs on."""
        return self.filters.device

    def extra_repr(self) -> str:
        p = self.plan
        return (
            f"schedule={str(p.spec or p.schedule)!r}, length={p.length}, prompt={p.prompt}, "
            f"batch={self.batch}, channels={self.channels}, dtype={self.dtype}, "
            f"device={self.device}, position={self.position}"
        )

    # ------------------------------------------------------------------ streaming
    def _sync(self) -> None:
        """Point the buffers at the tensors the convolution holds now (it may replace them)."""
        state = _live_state(self._conv)
        if self._buffers["stream"] is not state.buffer:
            self._buffers["stream"] = state.buffer
        if self._buffers["filters"] is not state.filters:
            self._buffers["filters"] = state.filters

    def _run(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        finally:
            self._sync()

    @opaque
    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """One online step for all channels: ``u`` ``(B, C)`` -> ``y_t`` ``(B, C)``."""
        return self._run(lambda: self._conv.step(u))

    @opaque
    def prefill(self, u: torch.Tensor, channels: slice = _ALL) -> torch.Tensor:
        """Consume the prompt ``(B, c, prompt)`` of ``channels``; return its outputs.

        See :meth:`futurefill.OnlineConv.prefill`.
        """
        return self._run(lambda: self._conv.prefill(u, channels))

    @opaque
    def emit(self, u: torch.Tensor, channels: slice = _ALL) -> torch.Tensor:
        """``y_t`` ``(B, c)`` of a channel range, the future filled later by :meth:`advance`.

        See :meth:`futurefill.OnlineConv.emit`.
        """
        return self._run(lambda: self._conv.emit(u, channels))

    @opaque
    def advance(self) -> None:
        """Fill the future once every channel was emitted at this step."""
        self._run(self._conv.advance)

    @opaque
    def reset(self) -> None:
        """Forget all inputs and return to step 0 (filters and spectra stay)."""
        self._run(self._conv.reset)

    # ------------------------------------------------------------------ devices and dtypes
    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        # What fn does to a float tensor of ours tells where it moves the module and in which
        # dtype, before anything changes.
        probe = fn(torch.zeros((), dtype=self.dtype, device=self.device))
        if probe.dtype not in _FLOATS:
            raise TypeError(
                f"OnlineConvModule computes in float32 or float64 and cannot become "
                f"{probe.dtype}: low-precision FFTs would not give exact outputs. Keep it in "
                f"float32 and cast at its boundary (conv(u.float()).to({probe.dtype}))"
            )
        executor = _executor(probe.device, self._cuda_graphs)
        old = _live_state(self._conv)
        self._conv.backend.settle(old)
        converts = probe.dtype != self.dtype
        if converts and (old.step or old.num_emitted or old.prefilled.any()):
            raise RuntimeError(
                f"OnlineConvModule cannot change its dtype from {self.dtype} to {probe.dtype} "
                f"mid-stream (position {self.position}); call reset() first or build it with "
                f"dtype={probe.dtype}"
            )
        before = dict(self._buffers)
        super()._apply(fn, recurse)
        if self.filters is old.filters and self.stream is old.buffer:
            return self  # nothing moved
        try:
            conv = OnlineConv.from_plan(self.filters, self.plan, batch=self.batch, backend=executor)
        except BaseException:
            self._buffers.update(before)
            raise
        if not converts:
            stream = self.stream if self.stream is not old.buffer else self.stream.clone()
            _carry_cursor(old, conv.state, stream)
        self._conv = conv
        self._sync()
        return self

    # ------------------------------------------------------------------ copies
    def __deepcopy__(self, memo: dict[int, Any]) -> OnlineConvModule:
        """An independent module at the same point of the same stream (the plan is shared)."""
        old = _live_state(self._conv)
        self._conv.backend.settle(old)
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            if name != "_conv":
                new.__dict__[name] = copy.deepcopy(value, memo)
        executor = _executor(new.device, new._cuda_graphs)
        new._conv = OnlineConv.from_plan(new.filters, self.plan, batch=self.batch, backend=executor)
        _carry_cursor(old, new._conv.state, new.stream)
        new._sync()
        return new

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            "an OnlineConvModule is not pickled whole (its plan is not picklable): save its "
            "state_dict() and load it into a module built with the same arguments"
        )

    # ------------------------------------------------------------------ state dict
    def _save_to_state_dict(
        self, destination: dict[str, Any], prefix: str, keep_vars: bool
    ) -> None:
        snapshot = self._conv.state_dict()
        destination[prefix + "filters"] = self.filters if keep_vars else self.filters.detach()
        destination[prefix + "stream"] = snapshot["buffer"]
        destination[prefix + "_extra_state"] = {
            "plan": snapshot["plan"],
            "filters_digest": snapshot["filters"],
            "position": snapshot["position"],
            "prefilled": torch.from_numpy(snapshot["prefilled"].copy()),
            "emitted": torch.from_numpy(snapshot["emitted"].copy()),
            "digest": snapshot["digest"],
        }

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        keys = [prefix + name for name in ("filters", "stream", "_extra_state")]
        missing = [k for k in keys if k not in state_dict]
        missing_keys.extend(missing)
        if strict:
            unexpected_keys.extend(k for k in state_dict if k.startswith(prefix) and k not in keys)
        if missing:
            return
        try:
            self._restore(*(state_dict[k] for k in keys))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            error_msgs.append(f"OnlineConvModule at {prefix or '(root)'!r}: {exc}")

    def _restore(self, filters: Any, stream: Any, cursor: Any) -> None:
        """Load a state dict's entries; the module is unchanged unless all of it is valid."""
        if not isinstance(filters, torch.Tensor) or not isinstance(stream, torch.Tensor):
            raise TypeError("filters and stream must be tensors")
        if not isinstance(cursor, dict) or set(cursor) != set(_CURSOR):
            raise ValueError(f"_extra_state must be a dict of {list(_CURSOR)}")
        if tuple(filters.shape) != tuple(self.filters.shape) or filters.dtype != self.dtype:
            raise ValueError(
                f"filters of shape {tuple(filters.shape)} and dtype {filters.dtype} do not fit "
                f"this module's {tuple(self.filters.shape)} {self.dtype}"
            )
        filters = filters.detach().to(self.device)
        conv = self._conv
        if not torch.equal(filters, self.filters):
            executor = _executor(self.device, self._cuda_graphs)
            conv = OnlineConv.from_plan(filters, self.plan, batch=self.batch, backend=executor)
        masks = {}
        for name in ("prefilled", "emitted"):
            mask = cursor[name]
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
                raise ValueError(f"{name} must be a bool tensor")
            masks[name] = mask.cpu().numpy()
        conv.load_state_dict(
            {
                "plan": cursor["plan"],
                "filters": cursor["filters_digest"],
                "buffer": stream.detach().to(self.device),
                "position": cursor["position"],
                "digest": cursor["digest"],
                **masks,
            }
        )
        self._conv = conv
        self._sync()
