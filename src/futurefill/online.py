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
from ._checks import check_int
from ._registry import get_backend
from .executor import Executor
from .open_length import history_after, next_segment, segment_length, store_prompt
from .plan import Plan, PlanSpec, make_plan, resolve_spec
from .state import ConvState

__all__ = ["OnlineConv"]

_ALL = slice(None)
_SNAPSHOT_KEYS = ("plan", "filters", "buffer", "position", "prefilled", "emitted", "digest")
_OPEN_KEYS = ("prompt", "segment", "history")

Array = Any


class OnlineConv:
    """Exact online causal convolution ``y[t] = sum_{s<=t} phi[t-s] u[s]``, one step at a time.

    Parameters
    ----------
    filters : array, shape (C, N)
        Filter taps per channel, ``N >= prompt + length``; NumPy or the backend's arrays.
        They are copied: changing the caller's array later changes nothing here.
    length : int or None
        Number of online steps. ``None`` for an open-ended stream: steps go on as long as the
        filters have taps (``N - prompt``), the plan is extended in segments as generation
        proceeds, the prompt length is taken from :meth:`prefill` itself, and the state grows
        with what was generated (every input is kept). Stop whenever you like.
    schedule : str, PlanSpec or Plan
        Generation schedule (see :func:`futurefill.make_plan`), with its parameters when a
        :class:`~futurefill.PlanSpec` is given; a :class:`~futurefill.Plan` is run as it is
        (see :meth:`from_plan`).
    prompt : int
        Number of prompt inputs given by :meth:`prefill` before the first step (open-ended
        streams take it from the first :meth:`prefill` instead).
    batch : int
        Batch size ``B``.
    dtype : str or dtype, optional
        ``"float32"`` or ``"float64"``; defaults to the filters' dtype (float64 for integers).
        ``"bfloat16"`` or ``"float16"`` (where the backend has them: torch, JAX, CuPy and NumPy
        for float16) are the dtype of inputs and outputs; the convolution is then computed in
        float32 (:attr:`compute_dtype`), and outputs are rounded to the half type.
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
        length: int | None,
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
        prompt = check_int("prompt", prompt, 0)
        batch = check_int("batch", batch, 1)
        host = _host_filters(executor, filters)
        if dtype is None:
            native_half = executor.is_native(filters) and _half(executor, filters.dtype)
            dtype = filters.dtype if native_half else _default_dtype(host)
        io_dtype = _half(executor, dtype)
        dtype = executor.resolve_dtype("float32" if io_dtype is not None else dtype)
        channels, taps = host.shape
        self._open = length is None
        if self._open:
            if isinstance(schedule, Plan):
                raise ValueError("an open-ended OnlineConv (length=None) plans its own segments")
            length = segment_length(prompt, taps)
            if length == 0:
                raise ValueError(
                    f"filters have {taps} taps: no step is left after a prompt of {prompt}"
                )
        length = check_int("length", length, 1)
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
        # open-ended segments take the same parameters, defaults resolved per segment
        self._spec = plan.spec or PlanSpec() if isinstance(schedule, Plan) else spec
        self._taps = taps
        self._prompt = self._planned_prompt = prompt
        self._history: Array | None = None  # open-ended: the inputs before this segment
        self._executor = executor
        self._dtype = dtype
        self._io_dtype = dtype if io_dtype is None else io_dtype
        self._wrapped_feedback: dict[Any, Callable[[Array], Array]] = {}
        source = filters if executor.is_native(filters) and io_dtype is None else host
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
    def state(self) -> ConvState:
        """The live state (arrays owned by the executor, cursor by the core).

        For wrappers and backend authors: read it freely, change it only through this
        object's methods (:meth:`load_state_dict` to replace it).
        """
        return self._state

    @property
    def backend(self) -> Executor:
        """The executor running this convolution."""
        return self._executor

    @property
    def dtype(self) -> Any:
        """Dtype of inputs and outputs."""
        return self._io_dtype

    @property
    def compute_dtype(self) -> Any:
        """Dtype of the state and the arithmetic (float32 for half-precision inputs)."""
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
    def length(self) -> int | None:
        """Number of online steps, ``None`` for an open-ended stream."""
        return None if self._open else self.plan.length

    @property
    def prompt(self) -> int:
        """Number of prompt inputs (for an open-ended stream: as planned or prefilled)."""
        return self._prompt

    @property
    def position(self) -> int:
        """Index of the next online step (0 .. length)."""
        return self.plan.prompt + self._state.step - self._prompt

    @property
    def remaining(self) -> int:
        """Online steps left (open-ended: as many as the filters' taps allow)."""
        if self._open:
            return self._taps - self._prompt - self.position
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
            f"OnlineConv(schedule={str(p.spec or p.schedule)!r}, length={self.length}, "
            f"prompt={self._prompt}, batch={self.batch}, channels={self.channels}, "
            f"dtype={self._io_dtype}, backend={self._executor.name!r}, position={self.position})"
        )

    # ------------------------------------------------------------------ validation
    def _check_input(self, u: Array, shape: tuple[int, ...], what: str, dtype: Any = None) -> None:
        ex = self._executor
        dtype = self._io_dtype if dtype is None else dtype
        if not ex.is_native(u):
            reason = ex.refusal(u)
            if reason:
                raise TypeError(f"{what}: {reason}")
            raise TypeError(
                f"{what} must be an array of the {ex.name!r} backend"
                + ("" if ex.device is None else f" on device {ex.device!r}")
                + f", got {type(u).__module__}.{type(u).__name__}"
            )
        if tuple(u.shape) != shape:
            raise ValueError(f"{what} must have shape {shape}, got {tuple(u.shape)}")
        if u.dtype != dtype:
            raise TypeError(f"{what} must have dtype {dtype}, got {u.dtype}; cast it first")

    def _to_compute(self, u: Array) -> Array:
        """Half-precision inputs in the compute dtype (float32)."""
        if self._io_dtype == self._dtype:
            return u
        return self._executor.xp.astype(u, self._dtype)

    def _to_io(self, y: Array) -> Array:
        """Outputs in the dtype of the inputs."""
        if self._io_dtype == self._dtype:
            return y
        return self._executor.xp.astype(y, self._io_dtype)

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
        ch = self._channel_range(channels)
        prompt = p.prompt
        if self._open:
            if self.position or s.num_emitted or p.prompt != self._prompt:
                raise RuntimeError("the prompt comes before the first step; call reset() first")
            if not s.prefilled.any():  # the first prefill decides the prompt's length
                prompt = int(u.shape[-1]) if len(getattr(u, "shape", ())) == 3 else p.prompt
                if prompt < 1 or segment_length(prompt, self._taps) == 0:
                    raise ValueError(
                        f"a prompt of {prompt} inputs leaves no step of the filters' "
                        f"{self._taps} taps"
                    )
        elif p.prompt == 0:
            raise RuntimeError("this OnlineConv was planned without a prompt (prompt=0)")
        self._check_input(u, (self.batch, ch.stop - ch.start, prompt), "the prompt")
        u = self._to_compute(u)
        if not bool(np.all(np.isfinite(self._executor.to_numpy(u)))):
            raise ValueError("the prompt contains NaN or infinite values")
        if not self._open:
            return self._to_io(interpreter.prefill(self._executor, s, u, ch))
        if prompt != p.prompt:
            self._start(prompt)
        shape = (self.batch, self.channels, prompt)
        history = store_prompt(self._executor, self._history, u, ch, shape)
        y = interpreter.prefill(self._executor, self._state, u, ch)
        self._history = history
        return self._to_io(y)

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
        s = self._room()
        interpreter.check_can_step(s, whole=True)
        self._check_input(u, (s.batch, s.channels), "u_t")
        return self._to_io(interpreter.step(self._executor, s, self._to_compute(u)))

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
        s = self._room()
        interpreter.check_can_step(s)
        ch = self._channel_range(channels)
        self._check_input(u, (self.batch, ch.stop - ch.start), "u_t")
        return self._to_io(interpreter.emit(self._executor, s, self._to_compute(u), ch))

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
        interpreter.check_can_step(self._room(), whole=True)
        if not callable(feedback):
            raise TypeError("feedback must be callable")
        steps = self.remaining if steps is None else check_int("steps", steps, 1, self.remaining)
        self._check_input(u0, (self.batch, self.channels), "u0")
        compute_feedback = self._compute_feedback(feedback)

        def segment(u: Array, steps: int) -> Array:
            return interpreter.rollout(self._executor, self._state, u, compute_feedback, steps)

        def next_input(ys: Array) -> Array:
            u = compute_feedback(ys[..., -1])
            interpreter.check_feedback(u, ys[..., -1])
            return u

        return self._to_io(self._by_segment(self._to_compute(u0), steps, segment, next_input))

    def run(self, u: Array) -> Array:
        """Feed known inputs through the online path in one call (teacher forcing).

        The same steps as calling :meth:`step` on ``u[..., t]`` for each ``t`` (the outputs
        are those of the online schedule, not of an offline convolution), e.g. to test a model
        against its offline forward pass. On any error the state is restored.

        Parameters
        ----------
        u : array, shape (B, C, T)
            Inputs of the next ``T`` steps, ``1 <= T <= remaining``.

        Returns
        -------
        array, shape (B, C, T)
        """
        interpreter.check_can_step(self._room(), whole=True)
        steps = int(u.shape[-1]) if len(getattr(u, "shape", ())) == 3 else 0
        if not 1 <= steps <= self.remaining:
            raise ValueError(
                f"u must have shape (B, C, T) with 1 <= T <= {self.remaining}, got "
                f"{tuple(getattr(u, 'shape', ()))}"
            )
        self._check_input(u, (self.batch, self.channels, steps), "u")
        inputs = self._to_compute(u)
        done = 0

        def segment(inputs: Array, steps: int) -> Array:
            nonlocal done
            ys = interpreter.run(self._executor, self._state, inputs[..., done : done + steps])
            done += steps
            return ys

        return self._to_io(self._by_segment(inputs, steps, segment, lambda _: inputs))

    def _by_segment(
        self,
        u: Array,
        steps: int,
        segment: Callable[[Array, int], Array],
        next_input: Callable[[Array], Array],
    ) -> Array:
        """``steps`` steps, one ``segment(u, n)`` call per plan segment (one unless open-ended),
        ``u = next_input(ys)`` between them; the state restored on any error."""
        saved = self._save()
        try:
            parts = []
            while True:
                s = self._room()
                n = min(steps, s.plan.length - s.step)
                parts.append(segment(u, n))
                steps -= n
                if not steps:
                    break
                u = next_input(parts[-1])
            if len(parts) == 1:
                return parts[0]
            return self._executor.xp.concat(parts, axis=-1)
        except BaseException:
            self._restore(saved)
            raise

    # ------------------------------------------------------------------ open-ended segments
    def _start(self, prompt: int) -> None:
        """Open-ended: plan the first segment for a prompt of ``prompt`` inputs."""
        s = self._state
        plan = make_plan(segment_length(prompt, self._taps), self._spec, prompt=prompt)
        if plan is not s.plan:
            self._state = interpreter.new_state(
                self._executor, plan, s.filters, batch=s.batch, dtype=self._dtype, copy=False
            )
        else:
            interpreter.reset(self._executor, s)
        self._prompt = prompt
        self._history = None

    def _room(self) -> ConvState:
        """The state, open-ended: extended by the next segment when its steps are done."""
        s = self._state
        if self._open and s.step == s.plan.length and not s.num_emitted:
            if not self.remaining:
                raise RuntimeError(
                    f"the filters' {self._taps} taps are used up (prompt {self._prompt} + "
                    f"{self.position} steps); call reset() or give longer filters"
                )
            history = history_after(self._executor, s, self._history)
            self._state = next_segment(self._executor, self._spec, s, history, taps=self._taps)
            self._history = history
        return self._state

    def _compute_feedback(self, feedback: Callable[[Array], Array]) -> Callable[[Array], Array]:
        """``feedback`` seen in the compute dtype: it receives and returns the dtype of the
        inputs. One wrapper per feedback, so that compiled programs are reused."""
        if self._io_dtype == self._dtype:
            return feedback
        wrapped = self._wrapped_feedback.get(feedback)
        if wrapped is None:
            to_io, to_compute = self._to_io, self._to_compute

            def wrapped(y: Array) -> Array:
                return to_compute(feedback(to_io(y)))

            self._wrapped_feedback = {feedback: wrapped}  # the last one only: no leak
        return wrapped

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all inputs and return to step 0 (the filters and spectra stay).

        An open-ended stream returns to its first segment and to the prompt length it was
        built with (0 by default): the next :meth:`prefill` may give another.
        """
        if self._open:
            self._start(self._planned_prompt)
        else:
            interpreter.reset(self._executor, self._state)

    def _save(self) -> tuple[ConvState, Array | None, tuple[Any, ...]]:
        return self._state, self._history, self._copy_cursor()

    def _restore(self, saved: tuple[ConvState, Array | None, tuple[Any, ...]]) -> None:
        self._state, self._history, cursor = saved
        self._restore_cursor(cursor)

    def _copy_cursor(self) -> tuple[Any, int, np.ndarray, np.ndarray, int]:
        s = self._state
        self._executor.settle(s)  # work running in the background joins the buffer
        buffer = self._executor.xp.asarray(s.buffer, copy=True)
        return buffer, s.step, s.prefilled.copy(), s.emitted.copy(), s.num_emitted

    def _restore_cursor(self, saved: tuple[Any, int, np.ndarray, np.ndarray, int]) -> None:
        s = self._state
        self._executor.settle(s)
        buffer, s.step, prefilled, emitted, s.num_emitted = saved
        s.buffer = buffer
        s.prefilled[:] = prefilled
        s.emitted[:] = emitted
        s.revision += 1

    def _digest(
        self, plan: str, buffer: Array, position: int, prefilled: Any, emitted: Any, *extra: Any
    ) -> str:
        h = hashlib.sha256(f"{plan}/{self._filters_digest}/{position}".encode())
        h.update(np.asarray(prefilled, dtype=bool).tobytes())
        h.update(np.asarray(emitted, dtype=bool).tobytes())
        for array in (buffer, *extra):
            if array is None or isinstance(array, int):
                h.update(repr(array).encode())
            else:
                h.update(np.ascontiguousarray(self._executor.to_numpy(array)).tobytes())
        return h.hexdigest()

    def state_dict(self) -> dict[str, Any]:
        """A snapshot from which :meth:`load_state_dict` resumes bit-identically.

        Returns
        -------
        dict
            ``plan`` and ``filters`` (fingerprints of what the snapshot belongs to),
            ``buffer`` (a copy, backend array), ``position`` (step in the plan), ``prefilled``
            and ``emitted`` (per-channel masks) and ``digest`` (a checksum of all of it: an
            edited snapshot is refused). Open-ended streams add ``prompt``, ``segment`` (the
            positions before the current plan segment) and ``history`` (their inputs, or
            ``None`` before a prompt is given).
        """
        buffer, position, prefilled, emitted, _ = self._copy_cursor()
        extra: dict[str, Any] = {}
        if self._open:
            history = self._history
            extra = {
                "prompt": self._prompt,
                "segment": self.plan.prompt,
                "history": None
                if history is None
                else self._executor.xp.asarray(history, copy=True),
            }
        fingerprint = self.plan.fingerprint
        return {
            "plan": fingerprint,
            "filters": self._filters_digest,
            "buffer": buffer,
            "position": position,
            "prefilled": prefilled,
            "emitted": emitted,
            **extra,
            "digest": self._digest(
                fingerprint, buffer, position, prefilled, emitted, *extra.values()
            ),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot taken by :meth:`state_dict` of an identically built OnlineConv.

        The snapshot must come from the same filters and plan (for an open-ended stream: the
        same filters and schedule), unedited; anything else is refused with the state
        unchanged.
        """
        if not isinstance(state, dict):
            raise TypeError(f"a state dict is a dict, got {type(state).__name__}")
        keys = _SNAPSHOT_KEYS + (_OPEN_KEYS if self._open else ())
        missing = set(keys) - set(state)
        if missing:
            raise KeyError(f"state dict lacks {sorted(missing)}")
        unknown = set(state) - set(keys)
        if unknown:
            raise ValueError(f"state dict has unknown entries {sorted(unknown)}")
        plan, extra = self.plan, ()  # type: tuple[Plan, tuple[Any, ...]]
        if self._open:
            plan, extra = self._open_snapshot(state)
        if state["plan"] != plan.fingerprint:
            raise ValueError(
                "this state dict belongs to another plan (schedule, length, prompt or "
                "parameters differ)"
            )
        if state["filters"] != self._filters_digest:
            raise ValueError("this state dict belongs to an OnlineConv with other filters")
        position = check_int("position", state["position"], 0, plan.length)
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
        shape = (self.batch, self.channels, plan.buffer_length)
        self._check_input(buffer, shape, "the buffer", self._dtype)
        digest = self._digest(
            plan.fingerprint, buffer, position, masks["prefilled"], masks["emitted"], *extra
        )
        if state["digest"] != digest:
            raise ValueError("this state dict was edited or corrupted (its digest differs)")
        if plan is not self.plan:
            s = self._state
            self._state = interpreter.new_state(
                self._executor, plan, s.filters, batch=s.batch, dtype=self._dtype, copy=False
            )
        if self._open:
            prompt, _, history = extra
            self._prompt = prompt
            self._history = (
                None if history is None else self._executor.xp.asarray(history, copy=True)
            )
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

    def _open_snapshot(self, state: dict[str, Any]) -> tuple[Plan, tuple[int, int, Any]]:
        """The segment plan and ``(prompt, segment, history)`` of an open-ended snapshot."""
        prompt = check_int("prompt", state["prompt"], 0, self._taps - 1)
        segment = check_int("segment", state["segment"], prompt, self._taps - 1)
        plan = make_plan(segment_length(segment, self._taps), self._spec, prompt=segment)
        history = state["history"]
        if history is not None:
            self._check_input(history, (self.batch, self.channels, segment), "history", self._dtype)
        elif segment != prompt:
            raise ValueError("history is None only before the first segment's steps")
        return plan, (prompt, segment, history)


def _half(executor: Executor, dtype: Any) -> Any:
    """The backend's half-precision dtype for ``dtype``, or ``None``."""
    return executor.half_dtype(dtype)


def _default_dtype(host: np.ndarray) -> str:
    """The working dtype implied by host filters: float64 for integers, else their own."""
    return "float64" if host.dtype.kind in "iub" else host.dtype.name


def _host_filters(executor: Executor, filters: Array) -> np.ndarray:
    """Validate filters on the host: a finite, real ``(C, N)`` array in native byte order."""
    if executor.is_native(filters):
        if _half(executor, filters.dtype) is not None:  # NumPy may not know the type
            filters = executor.xp.astype(filters, executor.resolve_dtype("float32"))
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
