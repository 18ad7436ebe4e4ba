"""OnlineConv: the streaming causal convolution users put inside their models.

It is the checked, stateful face of the interpreter (:mod:`futurefill.interpreter`): every
argument is validated here, before anything changes, so a refused call leaves the state as it
was. The stream itself (its state and, open-ended, its segments) is a
:class:`~futurefill.segments.Segments`; snapshots are :mod:`futurefill.snapshots`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from . import interpreter, snapshots
from ._checks import check_int
from ._inputs import convert_input, host_filters
from ._registry import get_backend
from .executor import Executor
from .feedback import adapt as adapt_feedback
from .plan import Plan, PlanSpec
from .segments import Segments, first_plan
from .state import ConvState
from .undo import check_usable

__all__ = ["OnlineConv"]

_ALL = slice(None)

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
    >>> phi = futurefill.decaying_random_filters(2, 16, seed=0)  # 2 channels, 16 taps
    >>> u = np.random.default_rng(0).standard_normal((1, 2, 16))  # (B, C, T)
    >>> conv = futurefill.OnlineConv(phi, 12, prompt=4, backend="numpy")
    >>> y = [conv.prefill(u[..., :4]), conv.run(u[..., 4:6])]  # the prompt, then 2 steps at once
    >>> y.append(conv.step(u[..., 6])[..., None])  # one step: (B, C) in, (B, C) out
    >>> snapshot = conv.state_dict()  # at step 3
    >>> first = conv.emit(u[:, :1, 7], channels=slice(0, 1))  # layers sharing the stream emit
    >>> second = conv.emit(u[:, 1:, 7], channels=slice(1, 2))  # their channels, then one
    >>> conv.advance()  # advance fills the future of all
    >>> y += [np.concatenate([first, second], axis=1)[..., None], conv.run(u[..., 8:])]
    >>> bool(np.allclose(np.concatenate(y, axis=-1), futurefill.causal_conv(u, phi)))  # exact
    True
    >>> conv.load_state_dict(snapshot); conv.position  # back at step 3
    3
    >>> conv.reset(); conv.position, conv.remaining
    (0, 12)
    >>> conv = futurefill.OnlineConv.from_plan(phi, futurefill.make_plan(16, "naive"))
    >>> y = conv.rollout(np.ones((1, 2)), lambda y_t: 0.5 * y_t)  # u[t+1] = y[t] / 2
    >>> fed = np.concatenate([np.ones((1, 2, 1)), 0.5 * y[..., :-1]], axis=-1)
    >>> bool(np.allclose(y, futurefill.causal_conv(fed, phi)))
    True
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
        host = host_filters(executor, filters)
        if dtype is None:
            native_half = executor.is_native(filters) and executor.half_dtype(filters.dtype)
            dtype = filters.dtype if native_half else executor.default_dtype(host.dtype)
        io_dtype = executor.half_dtype(dtype)
        dtype = executor.resolve_dtype("float32" if io_dtype is not None else dtype)
        channels, taps = host.shape
        plan, segment_spec = first_plan(
            executor, schedule, params, length, prompt=prompt, taps=taps, batch=batch,
            channels=channels, dtype=dtype,
        )  # fmt: skip
        self._executor = executor
        self._dtype = dtype
        self._io_dtype = dtype if io_dtype is None else io_dtype
        source = filters if executor.is_native(filters) and io_dtype is None else host
        state = interpreter.new_state(executor, plan, source, batch=batch, dtype=dtype)
        self._segments = Segments(
            executor, state, spec=segment_spec, taps=taps, prompt=prompt, open_ended=length is None
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
    def _state(self) -> ConvState:
        return self._segments.state

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
        return None if self._segments.open else self.plan.length

    @property
    def prompt(self) -> int:
        """Number of prompt inputs (for an open-ended stream: as planned or prefilled)."""
        return self._segments.prompt

    @property
    def position(self) -> int:
        """Index of the next online step (0 .. length)."""
        return self._segments.position

    @property
    def remaining(self) -> int:
        """Online steps left (open-ended: as many as the filters' taps allow)."""
        return self._segments.remaining

    @property
    def state_size(self) -> dict[str, int]:
        """Values held per component: buffer (inputs + future), spectra, reversed taps; and
        what the executor holds beyond them, in bytes (``*_bytes``: e.g. CUDA graphs)."""
        s = self._state
        return {
            "buffer": int(np.prod(s.buffer.shape)),
            "spectra": sum(int(np.prod(v.shape)) for v in s.spectra.values()),
            "window_taps": int(np.prod(s.taps_reversed.shape)),
            **self._executor.workspace_size(s),
        }

    def __repr__(self) -> str:
        p = self.plan
        return (
            f"OnlineConv(schedule={str(p.spec or p.schedule)!r}, length={self.length}, "
            f"prompt={self.prompt}, batch={self.batch}, channels={self.channels}, "
            f"dtype={self._io_dtype}, backend={self._executor.name!r}, position={self.position})"
        )

    # ------------------------------------------------------------------ validation
    def _input(self, u: Array, shape: tuple[int, ...], what: str) -> Array:
        """``u`` converted by :func:`~futurefill._inputs.convert_input` and of ``shape``."""
        ex = self._executor
        if not (ex.is_native(u) and u.dtype == self._io_dtype):  # the usual case: no call
            u = convert_input(ex, u, self._io_dtype, what)
        got = tuple(u.shape)
        if got != shape:
            fixed = len(got) == len(shape) and got[0] != shape[0] and got[1:] == shape[1:]
            raise ValueError(
                f"{what} must have shape {shape}, got {got}"
                + (
                    f": the batch is fixed at construction (batch={shape[0]}); build the "
                    f"OnlineConv with batch={got[0]} for {got[0]} sequences"
                    if fixed
                    else ""
                )
            )
        return u

    def _check_native(self, u: Array, shape: tuple[int, ...], what: str) -> None:
        """Strict (snapshots): ``u`` is the backend's, of ``shape`` and the compute dtype."""
        ex = self._executor
        if not ex.is_native(u):
            raise TypeError(
                f"{what} must be an array of the {ex.name!r} backend"
                + ("" if ex.device is None else f" on device {ex.device!r}")
                + f", got {type(u).__module__}.{type(u).__name__}"
            )
        if tuple(u.shape) != shape:
            raise ValueError(f"{what} must have shape {shape}, got {tuple(u.shape)}")
        if u.dtype != self._dtype:
            raise TypeError(f"{what} must have dtype {self._dtype}, got {u.dtype}")

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
        seg = self._segments
        ch = self._channel_range(channels)
        check_usable(seg.state)
        if not seg.open and seg.plan.prompt == 0:
            raise RuntimeError("this OnlineConv was planned without a prompt (prompt=0)")
        u = convert_input(self._executor, u, self._io_dtype, "the prompt")
        prompt = seg.prompt_length(tuple(u.shape)) if seg.open else seg.plan.prompt
        shape = (self.batch, ch.stop - ch.start, prompt)
        u = self._to_compute(self._input(u, shape, "the prompt"))
        if not self._executor.all_finite(u):  # reduced on the device: one boolean comes back
            raise ValueError("the prompt contains NaN or infinite values")
        if seg.open:
            return self._to_io(seg.prefill(u, ch))
        return self._to_io(interpreter.prefill(self._executor, seg.state, u, ch))

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
        s = self._segments.room()
        interpreter.check_can_step(s, whole=True)
        u = self._input(u, (s.batch, s.channels), "u_t")
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
        s = self._segments.room()
        interpreter.check_can_step(s)
        ch = self._channel_range(channels)
        u = self._input(u, (self.batch, ch.stop - ch.start), "u_t")
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
        interpreter.check_can_step(self._segments.room(), whole=True)
        if not callable(feedback):
            raise TypeError("feedback must be callable")
        steps = self.remaining if steps is None else check_int("steps", steps, 1, self.remaining)
        u0 = self._input(u0, (self.batch, self.channels), "u0")
        feedback = adapt_feedback(self._executor, feedback, self._io_dtype, self._dtype)
        return self._to_io(self._segments.rollout(self._to_compute(u0), feedback, steps))

    def run(self, u: Array) -> Array:
        """Feed known inputs through the online path in one call (teacher forcing).

        The same steps as calling :meth:`step` on ``u[..., t]`` for each ``t`` (the outputs
        are those of the online schedule, not of an offline convolution), e.g. to test a model
        against its offline forward pass. It costs what the steps cost: like :meth:`step`, a
        kernel failing midway poisons the stream (one crossing open-ended segments is
        undone instead; see :mod:`futurefill.undo`).

        Parameters
        ----------
        u : array, shape (B, C, T)
            Inputs of the next ``T`` steps, ``1 <= T <= remaining``.

        Returns
        -------
        array, shape (B, C, T)
        """
        seg = self._segments
        s = seg.room()
        interpreter.check_can_step(s, whole=True)
        u = convert_input(self._executor, u, self._io_dtype, "u")
        shape = tuple(u.shape)
        steps, remaining = (int(shape[-1]) if len(shape) == 3 else 0), seg.remaining
        if not 1 <= steps <= remaining:
            raise ValueError(f"u must have shape (B, C, T) with 1 <= T <= {remaining}, got {shape}")
        u = self._input(u, (s.batch, s.channels, steps), "u")
        return self._to_io(seg.run(self._to_compute(u), steps))

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all inputs and return to step 0 (the filters and spectra stay).

        An open-ended stream returns to its first segment and to the prompt length it was
        built with (0 by default): the next :meth:`prefill` may give another.
        """
        self._segments.reset()

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
        return snapshots.state_dict(self._segments, self._filters_digest)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot taken by :meth:`state_dict` of an identically built OnlineConv.

        The snapshot must come from the same filters and plan (for an open-ended stream: the
        same filters and schedule), unedited; anything else is refused with the state
        unchanged.
        """

        snapshots.load_state_dict(self._segments, state, self._filters_digest, self._check_native)
