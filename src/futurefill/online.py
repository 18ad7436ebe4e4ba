"""OnlineConv: the streaming causal convolution users put inside their models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._backend import get_backend
from .executor import ConvState, Executor
from .plan import Plan, make_plan

__all__ = ["OnlineConv"]

_ALL = slice(None)

Array = Any


class OnlineConv:
    """Exact online causal convolution ``y[t] = sum_{s<=t} phi[t-s] u[s]``, one step at a time.

    Parameters
    ----------
    filters : array, shape (C, N)
        Filter taps per channel, ``N >= prompt + length``; NumPy or the backend's arrays.
    length : int
        Number of online steps.
    schedule : {"continuous", "epoched", "naive"}
        Generation schedule (see :func:`futurefill.make_plan`).
    prompt : int
        Number of prompt inputs given by :meth:`prefill` before the first step.
    batch : int
        Batch size ``B``.
    dtype : str or dtype, optional
        ``"float32"`` or ``"float64"``; defaults to the filters' dtype (float64 for integers).
    backend : str or Executor, optional
        Backend name; defaults to the one in force (:func:`futurefill.get_backend`).
    device : optional
        Device for an explicitly named backend.
    epoch, direct_below : int, optional
        Schedule parameters; ``direct_below`` defaults to the backend's measured crossover.

    Examples
    --------
    >>> import numpy as np, futurefill
    >>> phi = np.exp(-np.arange(8.0))[None, :]          # one channel, 8 taps
    >>> conv = futurefill.OnlineConv(phi, length=8)
    >>> y0 = conv.step(np.ones((1, 1)))                 # (B, C) in, (B, C) out
    >>> float(y0[0, 0])
    1.0
    """

    def __init__(
        self,
        filters: Array,
        length: int,
        *,
        schedule: str = "continuous",
        prompt: int = 0,
        batch: int = 1,
        dtype: Any = None,
        backend: str | Executor | None = None,
        device: Any = None,
        epoch: int | None = None,
        direct_below: int | None = None,
    ) -> None:
        executor = get_backend(backend, device=device)
        if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        host = _host_filters(executor, filters)
        if dtype is None:
            dtype = "float64" if host.dtype.kind in "iub" else str(host.dtype)
        dtype = executor.resolve_dtype(dtype)
        channels, taps = host.shape
        if schedule == "continuous" and direct_below is None:
            direct_below = executor.default_direct_below(int(batch), channels, dtype)
        plan = make_plan(
            length, schedule=schedule, prompt=prompt, epoch=epoch, direct_below=direct_below
        )
        if taps < plan.total:
            raise ValueError(
                f"filters have {taps} taps but prompt + length = {plan.total} positions need "
                f"at least {plan.total}"
            )
        self._executor = executor
        self._dtype = dtype
        self._state: ConvState = executor.prepare(
            plan, filters if executor.is_native(filters) else host, batch=int(batch), dtype=dtype
        )
        self._emitted = np.zeros(channels, dtype=bool)
        self._prefilled = np.zeros(channels, dtype=bool)
        self._num_emitted = 0  # channels emitted at this step (a counter keeps step() cheap)

    # ------------------------------------------------------------------ properties
    @property
    def plan(self) -> Plan:
        """The schedule being run."""
        return self._state.plan

    @property
    def backend(self) -> Executor:
        """The executor running this convolution."""
        return self._executor

    @property
    def dtype(self) -> Any:
        """Working dtype of inputs, outputs and state."""
        return self._dtype

    @property
    def batch(self) -> int:
        """Batch size ``B``."""
        return self._state.batch

    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return self._state.channels

    @property
    def position(self) -> int:
        """Index of the next online step (0 .. length)."""
        return self._state.step

    @property
    def remaining(self) -> int:
        """Online steps left in the plan."""
        return self.plan.length - self._state.step

    @property
    def state_size(self) -> dict[str, int]:
        """Values held per component: buffer (inputs + future), spectra, reversed taps."""
        s = self._state
        return {
            "buffer": int(np.prod(s.buffer.shape)),
            "spectra": sum(int(np.prod(v.shape)) for v in s.spectra.values()),
            "window_taps": int(np.prod(s.taps_reversed.shape)),
        }

    def __repr__(self) -> str:
        p = self.plan
        return (
            f"OnlineConv(schedule={p.schedule!r}, length={p.length}, prompt={p.prompt}, "
            f"batch={self.batch}, channels={self.channels}, dtype={self._dtype}, "
            f"backend={self._executor.name!r}, position={self.position})"
        )

    # ------------------------------------------------------------------ validation
    def _check_input(self, u: Array, shape: tuple[int, ...], what: str) -> None:
        ex = self._executor
        if not ex.is_native(u):
            raise TypeError(
                f"{what} must be an array of the {ex.name!r} backend"
                + ("" if ex.device is None else f" on device {ex.device!r}")
                + f", got {type(u).__module__}.{type(u).__name__}"
            )
        if u.shape != shape:
            raise ValueError(f"{what} must have shape {shape}, got {tuple(u.shape)}")
        if u.dtype != self._dtype:
            raise TypeError(f"{what} must have dtype {self._dtype}, got {u.dtype}; cast it first")

    def _check_can_step(self) -> None:
        s = self._state
        p = s.plan
        if s.step >= p.length:
            raise RuntimeError(
                f"all {p.length} planned steps are done; call reset() or plan a longer OnlineConv"
            )
        if p.prompt and not s.prefilled:
            raise RuntimeError(
                f"call prefill(u) with the {p.prompt} prompt inputs of every channel first"
            )

    def _channel_range(self, channels: slice) -> slice:
        if not isinstance(channels, slice):
            raise TypeError(f"channels must be a slice, got {type(channels).__name__}")
        start, stop, stride = channels.indices(self.channels)
        if stride != 1 or start >= stop:
            raise ValueError(f"channels must be a non-empty contiguous slice, got {channels}")
        return slice(start, stop)

    # ------------------------------------------------------------------ streaming
    def prefill(self, u: Array, channels: slice = _ALL) -> Array:
        """Consume the prompt and return its outputs.

        One FFT convolution gives the prompt outputs and, except for the naive schedule (which
        keeps every input by definition), the prompt's whole contribution to the ``length``
        outputs still to come; the prompt inputs are then dropped. Layers sharing one state
        may each prefill their own channels (every channel once) before the first step.

        Parameters
        ----------
        u : array, shape (B, c, prompt)
            Prompt inputs of the ``c`` selected channels.
        channels : slice
            Contiguous channel range (all channels by default).

        Returns
        -------
        array, shape (B, c, prompt)
        """
        p, s = self.plan, self._state
        if p.prompt == 0:
            raise RuntimeError("this OnlineConv was planned without a prompt (prompt=0)")
        ch = self._channel_range(channels)
        if self._prefilled[ch].any():
            raise RuntimeError(
                "the prompt was already given for these channels; call reset() to start over"
            )
        self._check_input(u, (self.batch, ch.stop - ch.start, p.prompt), "the prompt")
        if not bool(np.all(np.isfinite(self._executor.to_numpy(u)))):
            raise ValueError("the prompt contains NaN or infinite values")
        y = self._executor.prefill(s, u, ch)
        self._prefilled[ch] = True
        s.prefilled = bool(self._prefilled.all())
        return y

    def step(self, u: Array) -> Array:
        """One online step for all channels: return ``y_t`` and fill the future.

        Parameters
        ----------
        u : array, shape (B, C)
            The inputs ``u_t``.

        Returns
        -------
        array, shape (B, C)
        """
        self._check_can_step()
        if self._num_emitted:
            raise RuntimeError("some channels were emitted at this step; finish with advance()")
        s = self._state
        self._check_input(u, s.buffer.shape[:2], "u_t")
        y = self._executor.emit(s, u, _ALL)
        self._executor.advance(s)
        return y

    def emit(self, u: Array, channels: slice = slice(None)) -> Array:
        """Return ``y_t`` for a contiguous range of channels, without filling the future.

        Several layers can share one OnlineConv (their channels stacked): each emits its own
        channels, then one :meth:`advance` fills the future of all of them.

        Parameters
        ----------
        u : array, shape (B, c)
            Inputs ``u_t`` of the ``c`` selected channels.
        channels : slice
            Contiguous channel range.

        Returns
        -------
        array, shape (B, c)
        """
        self._check_can_step()
        ch = self._channel_range(channels)
        if self._emitted[ch].any():
            raise RuntimeError(f"channels {ch.start}..{ch.stop - 1} were already emitted")
        self._check_input(u, (self.batch, ch.stop - ch.start), "u_t")
        y = self._executor.emit(self._state, u, ch)
        self._emitted[ch] = True
        self._num_emitted += ch.stop - ch.start
        return y

    def advance(self) -> None:
        """Fill the future after every channel has been emitted at this step."""
        self._check_can_step()
        if self._num_emitted < self.channels:
            missing = self.channels - self._num_emitted
            raise RuntimeError(f"{missing} channels were not emitted at this step")
        self._executor.advance(self._state)
        self._emitted[:] = False
        self._num_emitted = 0

    def rollout(
        self, u0: Array, feedback: Callable[[Array], Array], steps: int | None = None
    ) -> Array:
        """Generate with feedback: ``u[t+1] = feedback(y[t])``, starting from ``u0``.

        Backends with a compiler (JAX) run the whole loop as one compiled program; others loop
        over :meth:`step`. On any error the state is restored to what it was before the call.

        Parameters
        ----------
        u0 : array, shape (B, C)
            Input of the first step.
        feedback : callable
            Maps ``y[t]`` ``(B, C)`` to ``u[t+1]`` ``(B, C)``, same dtype; for JAX it must be
            traceable (pure ``jax.numpy``).
        steps : int, optional
            Number of steps; all remaining steps by default.

        Returns
        -------
        array, shape (B, C, steps)
        """
        self._check_can_step()
        if self._num_emitted:
            raise RuntimeError("some channels were emitted at this step; finish with advance()")
        if not callable(feedback):
            raise TypeError("feedback must be callable")
        steps = self.remaining if steps is None else steps
        if (
            isinstance(steps, bool)
            or not isinstance(steps, int)
            or not 1 <= steps <= self.remaining
        ):
            raise ValueError(f"steps must be an int in 1..{self.remaining}, got {steps!r}")
        self._check_input(u0, (self.batch, self.channels), "u0")
        snapshot = self.state_dict()
        try:
            return self._executor.rollout(self._state, u0, feedback, steps)
        except BaseException:
            self.load_state_dict(snapshot)
            raise

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all inputs and return to step 0 (the filters and spectra stay)."""
        self._executor.reset(self._state)
        self._emitted[:] = False
        self._prefilled[:] = False
        self._num_emitted = 0

    def state_dict(self) -> dict[str, Any]:
        """A snapshot from which :meth:`load_state_dict` resumes bit-identically.

        Returns
        -------
        dict
            ``buffer`` (a copy, backend array), ``position``, ``prefilled`` and ``emitted``
            (per-channel masks) and the ``plan`` parameters it belongs to.
        """
        s = self._state
        return {
            "plan": s.plan._key,
            "buffer": self._executor.xp.asarray(s.buffer, copy=True),
            "position": s.step,
            "prefilled": self._prefilled.copy(),
            "emitted": self._emitted.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot taken by :meth:`state_dict` of an identically built OnlineConv."""
        s = self._state
        missing = {"plan", "buffer", "position", "prefilled", "emitted"} - set(state)
        if missing:
            raise KeyError(f"state dict lacks {sorted(missing)}")
        if tuple(state["plan"]) != s.plan._key:
            raise ValueError(f"state dict is for plan {state['plan']}, not {s.plan._key}")
        buffer = state["buffer"]
        self._check_input(buffer, tuple(s.buffer.shape), "the buffer")
        emitted = np.asarray(state["emitted"], dtype=bool)
        prefilled = np.broadcast_to(np.asarray(state["prefilled"], dtype=bool), emitted.shape)
        if emitted.shape != self._emitted.shape:
            raise ValueError("state dict has a different number of channels")
        position = int(state["position"])
        if not 0 <= position <= s.plan.length:
            raise ValueError(f"position {position} outside the plan's 0..{s.plan.length}")
        s.buffer = self._executor.xp.asarray(buffer, copy=True)
        s.step = position
        self._prefilled[:] = prefilled
        s.prefilled = bool(prefilled.all())
        self._emitted[:] = emitted
        self._num_emitted = int(emitted.sum())


def _host_filters(executor: Executor, filters: Array) -> np.ndarray:
    """Validate filters on the host: a finite, real ``(C, N)`` array."""
    if executor.is_native(filters):
        host = executor.to_numpy(filters)
    elif isinstance(filters, np.ndarray):
        host = filters
    else:
        raise TypeError(
            f"filters must be a NumPy array or an array of the {executor.name!r} backend, got "
            f"{type(filters).__module__}.{type(filters).__name__}"
        )
    if host.ndim != 2 or 0 in host.shape:
        raise ValueError(f"filters must have shape (channels, taps), got {host.shape}")
    if host.dtype.kind not in "fiub":
        raise TypeError(f"filters must be real, got dtype {host.dtype}")
    if not np.all(np.isfinite(host)):
        raise ValueError("filters contain NaN or infinite values")
    return host
