"""OnlineConv: the streaming causal convolution users put inside their models.

It is the checked, stateful face of the interpreter (:mod:`futurefill.interpreter`): every
argument is validated here, before anything changes, so a refused call leaves the state as it
was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from . import interpreter
from ._backend import get_backend
from ._checks import check_int
from .backends import Executor
from .plan import Plan, PlanSpec, make_plan, resolve_spec
from .state import ConvState

__all__ = ["OnlineConv"]

_ALL = slice(None)
_SNAPSHOT_KEYS = ("plan", "filters", "buffer", "position", "prefilled", "emitted", "digest")

Array = Any


class OnlineConv:
    """Exact online causal convolution ``y[t] = sum_{s<=t} phi[t-s] u[s]``, one step at a time.

    Parameters
    ----------
    filters : array, shape (C, N)
        Filter taps per channel, ``N >= prompt + length``; NumPy or the backend's arrays.
        They are copied: changing the caller's array later changes nothing here.
    length : int
        Number of online steps.
    schedule : str, PlanSpec or Plan
        Generation schedule (see :func:`futurefill.make_plan`), with its parameters when a
        :class:`~futurefill.PlanSpec` is given; a :class:`~futurefill.Plan` is run as it is
        (see :meth:`from_plan`).
    prompt : int
        Number of prompt inputs given by :meth:`prefill` before the first step.
    batch : int
        Batch size ``B``.
    dtype : str or dtype, optional
        ``"float32"`` or ``"float64"``; defaults to the filters' dtype (float64 for integers).
    backend : str or Executor, optional
        Backend; defaults to the one in force (:func:`futurefill.get_backend`).
    device : optional
        Device for an explicitly named backend.
    **params
        Schedule parameters, merged into ``schedule`` (e.g. ``epoch=64``,
        ``direct_below=16``); parameters the backend tunes for itself (the continuous
        schedule's ``direct_below``) default to its measured value.

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
        schedule: str | PlanSpec | Plan = "continuous",
        prompt: int = 0,
        batch: int = 1,
        dtype: Any = None,
        backend: str | Executor | None = None,
        device: Any = None,
        **params: Any,
    ) -> None:
        executor = get_backend(backend, device=device)
        length = check_int("length", length, 1)
        prompt = check_int("prompt", prompt, 0)
        batch = check_int("batch", batch, 1)
        host = _host_filters(executor, filters)
        if dtype is None:
            dtype = "float64" if host.dtype.kind in "iub" else host.dtype.name
        dtype = executor.resolve_dtype(dtype)
        channels, taps = host.shape
        if taps < prompt + length:  # before any plan is built: the cheap check comes first
            raise ValueError(
                f"filters have {taps} taps but prompt + length = {prompt + length} positions "
                f"need at least {prompt + length}"
            )
        if isinstance(schedule, Plan):
            plan = schedule
            if params or (plan.length, plan.prompt) != (length, prompt):
                raise ValueError(
                    f"a Plan fixes length, prompt and parameters: this one has length "
                    f"{plan.length} and prompt {plan.prompt} (use OnlineConv.from_plan)"
                )
        else:
            spec = PlanSpec.coerce(schedule).with_params(**params)
            spec = resolve_spec(spec, executor, batch=batch, channels=channels, dtype=dtype)
            plan = make_plan(length, spec, prompt=prompt)
        self._executor = executor
        self._dtype = dtype
        source = filters if executor.is_native(filters) else host
        self._state: ConvState = interpreter.new_state(
            executor, plan, source, batch=batch, dtype=dtype
        )
        self._filters_digest = hashlib.sha256(
            np.ascontiguousarray(host, dtype=np.float64).tobytes()
        ).hexdigest()[:20]

    @classmethod
    def from_plan(
        cls,
        filters: Array,
        plan: Plan,
        *,
        batch: int = 1,
        dtype: Any = None,
        backend: str | Executor | None = None,
        device: Any = None,
    ) -> OnlineConv:
        """An OnlineConv that runs ``plan`` (e.g. one built with :meth:`Plan.from_tasks`).

        Parameters
        ----------
        filters : array, shape (C, N)
            Filter taps, ``N >= plan.total``.
        plan : Plan
            The schedule to run; its length and prompt are the convolution's.
        batch, dtype, backend, device
            As for :class:`OnlineConv`.
        """
        if not isinstance(plan, Plan):
            raise TypeError(f"plan must be a futurefill.Plan, got {type(plan).__name__}")
        return cls(
            filters,
            plan.length,
            schedule=plan,
            prompt=plan.prompt,
            batch=batch,
            dtype=dtype,
            backend=backend,
            device=device,
        )

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
            f"OnlineConv(schedule={str(p.spec or p.schedule)!r}, length={p.length}, "
            f"prompt={p.prompt}, batch={self.batch}, channels={self.channels}, "
            f"dtype={self._dtype}, backend={self._executor.name!r}, position={self.position})"
        )

    # ------------------------------------------------------------------ validation
    def _check_input(self, u: Array, shape: tuple[int, ...], what: str) -> None:
        ex = self._executor
        if not ex.is_native(u):
            refusal = getattr(ex, "refusal", None)
            reason = refusal(u) if refusal is not None else None
            if reason:
                raise TypeError(f"{what}: {reason}")
            raise TypeError(
                f"{what} must be an array of the {ex.name!r} backend"
                + ("" if ex.device is None else f" on device {ex.device!r}")
                + f", got {type(u).__module__}.{type(u).__name__}"
            )
        if tuple(u.shape) != shape:
            raise ValueError(f"{what} must have shape {shape}, got {tuple(u.shape)}")
        if u.dtype != self._dtype:
            raise TypeError(f"{what} must have dtype {self._dtype}, got {u.dtype}; cast it first")

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

        One FFT convolution gives the prompt outputs and, except for schedules that keep the
        prompt (naive), the prompt's whole contribution to the ``length`` outputs still to
        come; the prompt inputs are then dropped. Layers sharing one state may each prefill
        their own channels (every channel once) before the first step.

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
        self._check_input(u, (self.batch, ch.stop - ch.start, p.prompt), "the prompt")
        if not bool(np.all(np.isfinite(self._executor.to_numpy(u)))):
            raise ValueError("the prompt contains NaN or infinite values")
        return interpreter.prefill(self._executor, s, u, ch)

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
        s = self._state
        interpreter.check_can_step(s, whole=True)
        self._check_input(u, (s.batch, s.channels), "u_t")
        return interpreter.step(self._executor, s, u)

    def emit(self, u: Array, channels: slice = _ALL) -> Array:
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
        s = self._state
        interpreter.check_can_step(s)
        ch = self._channel_range(channels)
        self._check_input(u, (self.batch, ch.stop - ch.start), "u_t")
        return interpreter.emit(self._executor, s, u, ch)

    def advance(self) -> None:
        """Fill the future after every channel has been emitted at this step."""
        interpreter.advance(self._executor, self._state)

    def rollout(
        self, u0: Array, feedback: Callable[[Array], Array], steps: int | None = None
    ) -> Array:
        """Generate with feedback: ``u[t+1] = feedback(y[t])``, starting from ``u0``.

        Backends with a compiler (JAX) run the whole loop as one compiled program; others loop
        over the plan's steps. On any error the state is restored to what it was before.

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
        s = self._state
        interpreter.check_can_step(s, whole=True)
        if not callable(feedback):
            raise TypeError("feedback must be callable")
        steps = self.remaining if steps is None else check_int("steps", steps, 1, self.remaining)
        self._check_input(u0, (self.batch, self.channels), "u0")
        saved = self._copy_cursor()
        try:
            return interpreter.rollout(self._executor, s, u0, feedback, steps)
        except BaseException:
            self._restore_cursor(saved)
            raise

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all inputs and return to step 0 (the filters and spectra stay)."""
        interpreter.reset(self._executor, self._state)

    def _copy_cursor(self) -> tuple[Any, int, np.ndarray, np.ndarray, int]:
        s = self._state
        buffer = self._executor.xp.asarray(s.buffer, copy=True)
        return buffer, s.step, s.prefilled.copy(), s.emitted.copy(), s.num_emitted

    def _restore_cursor(self, saved: tuple[Any, int, np.ndarray, np.ndarray, int]) -> None:
        s = self._state
        buffer, s.step, prefilled, emitted, s.num_emitted = saved
        s.buffer = buffer
        s.prefilled[:] = prefilled
        s.emitted[:] = emitted
        s.revision += 1

    def _digest(self, buffer: Array, position: int, prefilled: Any, emitted: Any) -> str:
        h = hashlib.sha256(f"{self.plan.fingerprint}/{self._filters_digest}/{position}".encode())
        h.update(np.asarray(prefilled, dtype=bool).tobytes())
        h.update(np.asarray(emitted, dtype=bool).tobytes())
        h.update(np.ascontiguousarray(self._executor.to_numpy(buffer)).tobytes())
        return h.hexdigest()

    def state_dict(self) -> dict[str, Any]:
        """A snapshot from which :meth:`load_state_dict` resumes bit-identically.

        Returns
        -------
        dict
            ``plan`` and ``filters`` (fingerprints of what the snapshot belongs to),
            ``buffer`` (a copy, backend array), ``position``, ``prefilled`` and ``emitted``
            (per-channel masks) and ``digest`` (a checksum of all of it: an edited snapshot is
            refused).
        """
        buffer, position, prefilled, emitted, _ = self._copy_cursor()
        return {
            "plan": self.plan.fingerprint,
            "filters": self._filters_digest,
            "buffer": buffer,
            "position": position,
            "prefilled": prefilled,
            "emitted": emitted,
            "digest": self._digest(buffer, position, prefilled, emitted),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot taken by :meth:`state_dict` of an identically built OnlineConv.

        The snapshot must come from the same filters and plan, unedited; anything else is
        refused with the state unchanged.
        """
        if not isinstance(state, dict):
            raise TypeError(f"a state dict is a dict, got {type(state).__name__}")
        missing = set(_SNAPSHOT_KEYS) - set(state)
        if missing:
            raise KeyError(f"state dict lacks {sorted(missing)}")
        unknown = set(state) - set(_SNAPSHOT_KEYS)
        if unknown:
            raise ValueError(f"state dict has unknown entries {sorted(unknown)}")
        s = self._state
        if state["plan"] != self.plan.fingerprint:
            raise ValueError(
                "this state dict belongs to another plan (schedule, length, prompt or "
                "parameters differ)"
            )
        if state["filters"] != self._filters_digest:
            raise ValueError("this state dict belongs to an OnlineConv with other filters")
        position = check_int("position", state["position"], 0, s.plan.length)
        masks = {}
        for name in ("prefilled", "emitted"):
            mask = state[name]
            if (
                not isinstance(mask, np.ndarray)
                or mask.dtype != bool
                or mask.shape != (self.channels,)
            ):
                raise ValueError(f"{name} must be a bool array of shape ({self.channels},)")
            masks[name] = mask
        buffer = state["buffer"]
        self._check_input(buffer, tuple(s.buffer.shape), "the buffer")
        if state["digest"] != self._digest(buffer, position, masks["prefilled"], masks["emitted"]):
            raise ValueError("this state dict was edited or corrupted (its digest differs)")
        emitted = masks["emitted"]
        self._restore_cursor(
            (
                self._executor.xp.asarray(buffer, copy=True),
                position,
                masks["prefilled"],
                emitted,
                int(emitted.sum()),
            )
        )


def _host_filters(executor: Executor, filters: Array) -> np.ndarray:
    """Validate filters on the host: a finite, real ``(C, N)`` array in native byte order."""
    if executor.is_native(filters):
        xp = executor.xp
        if not xp.isdtype(filters.dtype, ("integral", "bool", "complex floating")):
            dtype = filters.dtype
            if isinstance(dtype, np.dtype):  # byte order is no matter of precision
                dtype = dtype.newbyteorder("=")
            executor.resolve_dtype(dtype)  # refuses low precision with the reason
        host = executor.to_numpy(filters)
    elif isinstance(filters, np.ndarray):
        host = filters
    else:
        raise TypeError(
            f"filters must be a NumPy array or an array of the {executor.name!r} backend, got "
            f"{type(filters).__module__}.{type(filters).__name__}"
        )
    if isinstance(host, np.ma.MaskedArray):
        raise TypeError("filters must be a plain array, not a masked array: fill it first")
    if host.ndim != 2 or 0 in host.shape:
        raise ValueError(f"filters must have shape (channels, taps), got {host.shape}")
    if host.dtype.kind not in "fiub":
        raise TypeError(f"filters must be real, got dtype {host.dtype}")
    if not host.dtype.isnative:
        host = host.astype(host.dtype.newbyteorder("="))
    if not np.all(np.isfinite(host)):
        raise ValueError("filters contain NaN or infinite values")
    return host
