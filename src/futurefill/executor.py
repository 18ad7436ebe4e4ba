"""The executor contract and the reference executor that interprets any plan with any namespace.

An executor turns a :class:`~futurefill.plan.Plan` plus filters into a :class:`ConvState` and
advances it. The public boundary (:class:`futurefill.OnlineConv`) validates every argument once;
executors may assume valid input and are free to mutate the buffers of their own state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import array_api_extra as xpx
import numpy as np

from . import ops
from .plan import Plan

__all__ = ["ArrayAPIExecutor", "ConvState", "Executor"]

Array = Any


@dataclass
class ConvState:
    """Everything an executor keeps for one online convolution.

    Attributes
    ----------
    plan : Plan
        The schedule being run.
    filters : array, shape (C, N)
        Filter taps in the working dtype, on the working device.
    taps_reversed : array, shape (C, W)
        The first ``W = plan.window_length`` taps reversed, for local windows.
    spectra : dict
        Filter spectrum per ``(filter_start, filter_stop, fft_size)`` of the plan, computed once.
    buffer : array, shape (B, C, plan.buffer_length)
        Slot ``p - plan.origin`` holds the accumulated future contributions to output ``p``
        until ``p`` is emitted and the input ``u[p]`` afterwards (one buffer serves both, so the
        state is exactly ``buffer_length`` values per channel).
    step : int
        Index of the next online step.
    prefilled : bool
        Whether the prompt was given.
    extra : dict
        Executor-private derived data (work arrays, compiled functions).
    """

    plan: Plan
    filters: Array
    taps_reversed: Array
    spectra: dict[tuple[int, int, int], Array]
    buffer: Array
    step: int = 0
    prefilled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        """Batch size ``B``."""
        return int(self.buffer.shape[0])

    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return int(self.buffer.shape[1])


@runtime_checkable
class Executor(Protocol):
    """What a backend provides. Register one under the entry-point group
    ``futurefill.executors``; the factory is called as ``factory(device=None)``."""

    name: str
    xp: Any
    device: Any

    def is_native(self, x: object) -> bool:
        """Whether ``x`` is an array of this backend (and device)."""

    def asarray(self, x: Any, dtype: Any = None) -> Array:
        """Convert host data (NumPy arrays, lists) to this backend's arrays."""

    def to_numpy(self, x: Array) -> np.ndarray:
        """Copy an array of this backend to a NumPy array."""

    def resolve_dtype(self, dtype: Any) -> Any:
        """This backend's float32 or float64 dtype for ``dtype`` (a name or a dtype)."""

    def default_direct_below(self, batch: int, channels: int, dtype: Any) -> int:
        """Tuned ``direct_below`` of the continuous schedule for this backend."""

    def prepare(self, plan: Plan, filters: Array, *, batch: int, dtype: Any) -> ConvState:
        """Allocate the state: buffers once, filter spectra once."""

    def prefill(self, state: ConvState, u: Array, channels: slice) -> Array:
        """Consume the prompt ``(B, c, P)`` of ``channels``; return its outputs ``(B, c, P)``.

        The caller tracks which channels were prefilled and sets ``state.prefilled``."""

    def emit(self, state: ConvState, u: Array, channels: slice) -> Array:
        """Return ``y_t`` ``(B, c)`` for ``channels`` and record the inputs ``u_t``."""

    def advance(self, state: ConvState) -> None:
        """Run the tasks planned after the current step and move to the next step."""

    def reset(self, state: ConvState) -> None:
        """Zero the buffer and return to step 0 (spectra are kept)."""

    def rollout(
        self, state: ConvState, u0: Array, feedback: Callable[[Array], Array], steps: int
    ) -> Array:
        """Run ``steps`` steps with ``u[t+1] = feedback(y[t])``; return ``(B, C, steps)``."""

    def synchronize(self) -> None:
        """Wait for queued device work (timing)."""


_DTYPE_NAMES = ("float32", "float64")


class ArrayAPIExecutor:
    """Reference executor: interprets any plan with any array-API namespace.

    It uses only the array API standard (plus ``array_api_extra.at`` for updates, which mutates
    where the namespace allows it and rebinds otherwise), so it also serves immutable arrays.
    Backend executors subclass it and override only what they make faster.

    Parameters
    ----------
    xp : namespace
        An array-API-compatible namespace with the FFT extension.
    device : optional
        Device for new arrays.
    name : str
        Backend name used in messages.
    """

    name: str = "array_api"
    #: Continuous-schedule crossover; subclasses set measured values.
    direct_below: ClassVar[int] = 1

    def __init__(self, xp: Any, device: Any = None, name: str | None = None) -> None:
        self.xp = xp
        self.device = device
        if name is not None:
            self.name = name

    def __repr__(self) -> str:
        dev = "" if self.device is None else f", device={self.device!r}"
        return f"{type(self).__name__}(name={self.name!r}{dev})"

    # ------------------------------------------------------------------ conversions
    def is_native(self, x: object) -> bool:
        try:
            return self._namespace_of(x) is self.xp
        except TypeError:
            return False

    def _namespace_of(self, x: object) -> Any:
        from array_api_compat import array_namespace

        return array_namespace(x)

    def asarray(self, x: Any, dtype: Any = None) -> Array:
        if dtype is not None:
            dtype = self.resolve_dtype(dtype)
        if self.device is None:
            return self.xp.asarray(x, dtype=dtype)
        return self.xp.asarray(x, dtype=dtype, device=self.device)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(x)

    def resolve_dtype(self, dtype: Any) -> Any:
        for name in _DTYPE_NAMES:
            native = getattr(self.xp, name)
            if dtype in (name, native) or str(dtype).endswith(name):
                return native
        raise TypeError(
            f"futurefill computes in float32 or float64, not {dtype}; low-precision FFTs "
            "(bfloat16/float16) lose the exactness this library promises: cast to float32"
        )

    def dtype_of(self, x: Array) -> Any:
        """The dtype of an array of this backend."""
        return x.dtype

    def default_direct_below(self, batch: int, channels: int, dtype: Any) -> int:
        return self.direct_below

    def synchronize(self) -> None:
        return None

    # ------------------------------------------------------------------ state
    def prepare(self, plan: Plan, filters: Array, *, batch: int, dtype: Any) -> ConvState:
        xp = self.xp
        filt = self.asarray(filters, dtype=dtype)
        spectra = {key: ops.filter_spectrum(filt, *key, xp=xp) for key in plan.spectrum_keys}
        kwargs = {} if self.device is None else {"device": self.device}
        buffer = xp.zeros((batch, filt.shape[0], plan.buffer_length), dtype=dtype, **kwargs)
        return ConvState(
            plan=plan,
            filters=filt,
            taps_reversed=ops.reversed_taps(filt, plan.window_length, xp=xp),
            spectra=spectra,
            buffer=buffer,
        )

    def reset(self, state: ConvState) -> None:
        state.buffer = xpx.at(state.buffer)[...].set(0)
        state.step = 0
        state.prefilled = False

    # ------------------------------------------------------------------ running
    def prompt_convolution(self, state: ConvState, u: Array, channels: slice) -> Array:
        """One FFT convolution of the prompt ``u`` ``(B, c, P)`` of ``channels``.

        Returns the outputs at positions ``0 .. P-1`` followed, when the plan fills the future
        at prefill, by the prompt's contribution to every later position (the cache).
        """
        plan = state.plan
        stop = plan.total if plan.prefill_fills_future else plan.prompt
        n = plan.prefill_fft_size
        spectrum = ops.filter_spectrum(state.filters[channels, ...], 0, stop, n, xp=self.xp)
        return ops.fill_future(u, spectrum, n, 0, stop, xp=self.xp)

    def prefill(self, state: ConvState, u: Array, channels: slice) -> Array:
        plan = state.plan
        P = plan.prompt
        z = self.prompt_convolution(state, u, channels)
        if plan.prefill_fills_future:
            state.buffer = xpx.at(state.buffer)[:, channels, :].set(z[..., P:])
        else:
            state.buffer = xpx.at(state.buffer)[:, channels, :P].set(u)
        return z[..., :P]

    def emit(self, state: ConvState, u: Array, channels: slice) -> Array:
        plan = state.plan
        t = state.step
        slot = plan.prompt + t - plan.origin
        start = int(plan.window_start[t]) - plan.origin
        W = state.taps_reversed.shape[-1]
        width = slot - start + 1
        buf = state.buffer
        taps = state.taps_reversed[channels, W - width :]
        # Everything older than the window (already in the slot) + the window's older inputs
        # + phi[0] * u_t; computed before the slot is overwritten by the input u_t.
        y = buf[:, channels, slot] + taps[..., -1] * u
        if width > 1:
            y = y + ops.window_sum(buf[:, channels, start:slot], taps[..., :-1], xp=self.xp)
        state.buffer = xpx.at(buf)[:, channels, slot].set(u)
        return y

    def rollout(
        self, state: ConvState, u0: Array, feedback: Callable[[Array], Array], steps: int
    ) -> Array:
        """Python loop of :meth:`emit` and :meth:`advance`; compiled backends override it."""
        every = slice(None)
        u = u0
        ys = []
        for i in range(steps):
            y = self.emit(state, u, every)
            self.advance(state)
            ys.append(y)
            if i + 1 < steps:
                u = feedback(y)
                if tuple(u.shape) != tuple(y.shape) or u.dtype != y.dtype:
                    raise ValueError(
                        f"feedback must return shape {tuple(y.shape)} and dtype {y.dtype}, got "
                        f"{tuple(u.shape)} and {u.dtype}"
                    )
        return self.xp.stack(ys, axis=-1)

    def advance(self, state: ConvState) -> None:
        plan = state.plan
        t = state.step
        for i in range(plan.task_ptr.item(t), plan.task_ptr.item(t + 1)):
            self.run_task(state, i)
        state.step = t + 1

    def run_task(self, state: ConvState, i: int) -> None:
        """Run task ``i`` of the plan: the one thing backends specialise in :meth:`advance`."""
        task = state.plan.task_offsets(i)
        z = ops.fill_future(
            state.buffer[..., task.src_start : task.src_stop],
            state.spectra[task.spectrum],
            task.fft_size,
            task.read_start,
            task.read_start + task.dst_stop - task.dst_start,
            xp=self.xp,
        )
        state.buffer = xpx.at(state.buffer)[..., task.dst_start : task.dst_stop].add(z)
