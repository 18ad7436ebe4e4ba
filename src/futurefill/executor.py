"""For backend authors: the kernel protocol, the state it works on, and a base class.

A backend (an *executor*) knows nothing about schedules. The core interpreter
(:mod:`futurefill.interpreter`) reads the plan and calls a handful of kernels; the rest of the
library (``OnlineConv``, the schedules, the models, the measuring tools and the CLI) asks an
executor for nothing else. This is the one list of what it asks, the members of
:class:`Executor`; :class:`ArrayAPIExecutor` has a default for every method, so a subclass
overrides only what its library does its own way:

* attributes: :attr:`~Executor.name`, :attr:`~Executor.xp` (the array-API namespace),
  :attr:`~Executor.device`;
* arrays: :meth:`~Executor.is_native`, :meth:`~Executor.refusal` (why an input that is not
  native is refused rather than converted through NumPy; default ``None``: converted),
  :meth:`~Executor.asarray`, :meth:`~Executor.to_numpy`, :meth:`~Executor.resolve_dtype`,
  :meth:`~Executor.half_dtype` (default: the namespace's ``bfloat16``/``float16``, else
  ``None``), :meth:`~Executor.default_dtype` (the working dtype when none is asked; default:
  float64 for integer filters, else the filters' own), :meth:`~Executor.all_finite` (NaN
  check where the array lives), :meth:`~Executor.zeros`, :meth:`~Executor.activate`
  (default: no context),
  :meth:`~Executor.synchronize` (default: nothing to wait for);
* measured defaults of schedule parameters: :meth:`~Executor.default_direct_below` (default:
  the class attribute :attr:`ArrayAPIExecutor.direct_below`), :meth:`~Executor.default_radix`
  (default ``None``: the ``reuse`` schedule's own radix);
* kernels: :meth:`~Executor.prepare` (default: nothing to derive), :meth:`~Executor.emit` —
  the window dot of one step, storing the step's input; :meth:`~Executor.fill` — the
  FutureFill tasks planned after a step, added into the buffer; :meth:`~Executor.prefill` —
  the prompt's outputs (and its future) by one FFT convolution; :meth:`~Executor.clear` —
  zero the buffer; :meth:`~Executor.workspace_size` — bytes held beyond the state's arrays
  (default: none); :meth:`~Executor.settle` — finish deferred work (default: nothing, for an
  executor that defers none);
* optional whole programs: :meth:`~Executor.compile` — a whole-rollout program generated
  from the plan (:attr:`futurefill.Plan.step_patterns`), for backends with a compiler
  (default ``None``: the rollout runs step by step); :meth:`~Executor.generate_greedy` — a
  reference model's whole greedy generation compiled (default ``None``:
  :func:`futurefill.models.generate` runs its Python loop); :meth:`~Executor.capture_decode`
  -- a model's whole token step (every layer's ``emit`` and the ``advance``) captured, e.g.
  as one CUDA graph per step pattern (default ``None``: the decoder runs its Python step);
  :meth:`~Executor.compile_function` -- a pure function of arrays compiled (default ``None``:
  functions run eagerly; a serving loop then runs the model's position pass op by op);
* the batched kernels of a stream pool (:class:`futurefill.StreamPool`, many rows each at its
  own position): :meth:`~Executor.emit_rows`, :meth:`~Executor.fill_group` and
  :meth:`~Executor.fill_groups` (every group of a step: one call each, or one program), with
  the declared capability :attr:`~Executor.fancy_indexing` (integer-array indices; default
  ``False``: one slice per row). Their defaults live in
  :class:`futurefill.grouped_kernels.GroupedKernels`, a base of :class:`ArrayAPIExecutor`.

:class:`ArrayAPIExecutor` implements every kernel with the array API standard alone (plus
``array_api_extra.at`` for updates), so a new backend subclasses it, passes its namespace and
overrides what it makes faster. Its own hooks, which the library never calls directly, split
the kernels further: :meth:`~ArrayAPIExecutor.fill_task` (one task of :meth:`~Executor.fill`),
:meth:`~ArrayAPIExecutor.run_transforms` with :meth:`~ArrayAPIExecutor.store`,
:meth:`~ArrayAPIExecutor.held`, :meth:`~ArrayAPIExecutor.accumulate` and
:meth:`~ArrayAPIExecutor.add_inverse` (a step's shared transforms), and
:meth:`~ArrayAPIExecutor.prompt_convolution` (the FFT of :meth:`~Executor.prefill`). Register
the class under the entry-point group ``futurefill.executors``; it is called as
``factory(device=None)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import array_api_extra as xpx
import numpy as np

from . import ops
from ._compat import array_namespace, compat_namespace
from .grouped_kernels import GroupedKernels, TaskGroup
from .plan import Plan, TaskOffsets, TaskShape
from .plan.transforms import FORWARD, PRODUCT
from .state import ConvState

__all__ = [
    "ArrayAPIExecutor",
    "ConvState",
    "DecodeStep",
    "Executor",
    "Program",
    "compat_namespace",
]

Array = Any

#: One token step of a model's decode, ``(tokens, mixer states) -> (logits, mixer states)``:
#: what :class:`futurefill.models.Decoder` hands to :meth:`Executor.capture_decode`, and what
#: a captured program returned by it does (for the state's current step, then the next one).
DecodeStep = Callable[[Array, list[Any]], tuple[Array, list[Any]]]

#: A compiled rollout: ``program(state, u0, steps) -> ys`` of shape ``(B, C, steps)``; it
#: runs steps ``state.step .. state.step + steps - 1`` and leaves ``state.buffer`` and
#: ``state.step`` exactly as stepping would.
Program = Callable[[ConvState, Array, int], Array]


@runtime_checkable
class Executor(Protocol):
    """What a backend provides (see the module docstring)."""

    name: str
    xp: Any
    device: Any
    fancy_indexing: ClassVar[bool]

    def is_native(self, x: object) -> bool:
        """Whether ``x`` is a concrete array of this backend (and device)."""

    def refusal(self, x: object) -> str | None:
        """Why ``x``, which is not native, is refused rather than converted through NumPy (a
        JAX tracer, a tensor on another device); ``None`` (the default): converted if exact."""

    def asarray(self, x: Any, dtype: Any = None) -> Array:
        """Convert host data (NumPy arrays, lists) to this backend's arrays."""

    def to_numpy(self, x: Array) -> np.ndarray:
        """Copy an array of this backend to a NumPy array."""

    def resolve_dtype(self, dtype: Any) -> Any:
        """This backend's float32 or float64 dtype for ``dtype`` (a name or a dtype)."""

    def half_dtype(self, dtype: Any) -> Any:
        """This backend's bfloat16 or float16 dtype for ``dtype``, or ``None``: inputs and
        outputs of that dtype are accepted, the convolution computed in float32."""

    def default_dtype(self, host_dtype: Any) -> str:
        """The working dtype (``"float32"`` or ``"float64"``, or a half dtype's name) when a
        stream is built without one, from the dtype of its host filters."""

    def all_finite(self, x: Array) -> bool:
        """Whether ``x`` holds no NaN or infinity (reduced where ``x`` lives: one boolean
        comes back, not the array)."""

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Array:
        """A new zero-filled array on this backend's device."""

    def default_direct_below(self, batch: int, channels: int, dtype: Any) -> int:
        """Measured ``direct_below`` crossover of the continuous schedule on this backend."""

    def default_radix(self, batch: int, channels: int, dtype: Any) -> int | None:
        """The ``reuse`` schedule's radix measured for this width and dtype, or ``None`` (the
        default: the schedule's own default applies)."""

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which new arrays land on this executor's device."""

    def prepare(self, state: ConvState) -> None:
        """Derive the executor's own data (``state.workspace``) from a new state."""

    def emit(self, state: ConvState, u: Array, channels: slice, slot: int, start: int) -> Array:
        """Return ``y = buffer[:, ch, slot] + sum(taps * buffer[:, ch, start:slot]) + phi0 * u``
        for the channels ``ch`` and store ``u`` in slot ``slot`` (shape ``(B, c)``)."""

    def fill(self, state: ConvState, step: int) -> None:
        """Add the contributions of the tasks planned after ``step`` into ``state.buffer``."""

    def prefill(self, state: ConvState, u: Array, channels: slice) -> Array:
        """Consume the prompt ``(B, c, P)`` of ``channels``; return its outputs ``(B, c, P)``."""

    def clear(self, state: ConvState) -> None:
        """Zero the buffer."""

    def workspace_size(self, state: ConvState) -> dict[str, int]:
        """Bytes the executor holds for ``state`` beyond its arrays, by name (e.g. the
        memory of captured CUDA graphs), for :meth:`futurefill.OnlineConv.state_size`."""

    def settle(self, state: ConvState) -> None:
        """Finish the work this executor deferred (tasks run in the background) and put it
        into ``state.buffer``: called before the buffer is read, copied or replaced outside
        the kernels (snapshots, restores, reset, open-ended segments). The default does
        nothing: an executor that defers no work has nothing to settle."""

    def compile(self, state: ConvState, feedback: Callable[[Array], Array]) -> Program | None:
        """A whole-rollout program for ``state``'s plan and this feedback, or ``None`` (the
        default: the rollout runs step by step)."""

    def generate_greedy(self, model: Any, prompt: Any, new_tokens: int, **options: Any) -> Any:
        """A reference model's greedy generation as compiled programs, or ``None`` (the
        default: :func:`futurefill.models.generate` runs its Python loop).

        ``prompt`` is ``None`` or checked token ids ``(B, P)``; ``options`` are ``schedule``,
        ``batch`` (without a prompt), ``return_logits``, ``long_conv`` (``False``: the long
        convolution replaced by the identity, to time the rest) and ``repeats`` (runs of
        each program, the best kept). The result has ``tokens`` ``(B, new_tokens)``,
        ``logits`` (or ``None``) and the seconds ``compile_seconds``, ``prefill_seconds`` and
        ``decode_seconds``.
        """

    def capture_decode(
        self, state: ConvState, body: DecodeStep, tokens: Array, states: list[Any]
    ) -> DecodeStep | None:
        """The token steps of a model's decode captured as whole programs, or ``None`` (the
        default: the decoder runs ``body`` step by step).

        ``body(tokens, states)`` runs the step ``state.step`` of every layer through the
        interpreter (each layer's ``emit`` of ``state``, then one ``advance``) and returns the
        logits and the new mixer states; ``tokens`` ``(B,)`` and ``states`` are examples of
        its inputs (the states the first step starts from). Called once, before the first
        decode step; the program returned runs the step ``state.step`` and advances it, with
        the same results as ``body``.
        """

    def compile_function(
        self, fn: Callable[..., Any], *, donate: tuple[int, ...] = ()
    ) -> Callable[..., Any] | None:
        """``fn``, a pure function of arrays (and of dicts and tuples of arrays), compiled for
        this backend with the same results, or ``None`` (the default: functions run eagerly).

        The compiled function may specialize on its arguments' shapes and dtypes (compiling
        once per combination met) and may reuse the memory of the positional arguments
        ``donate``, which the caller no longer reads after the call. Used by the serving loop
        (:class:`futurefill.models.Server`) for the network's per-layer position work.
        """

    def synchronize(self) -> None:
        """Wait for queued device work (timing)."""

    # ---- the batched kernels of a stream pool (defaults in GroupedKernels)
    def emit_rows(
        self,
        state: ConvState,
        rows: np.ndarray,
        u: Array,
        channels: slice,
        slots: np.ndarray,
        starts: np.ndarray,
    ) -> Array:
        """One step of several rows of a pool, each at its own slot and window start
        (:meth:`futurefill.grouped_kernels.GroupedKernels.emit_rows`)."""

    def fill_group(
        self, state: ConvState, shape: TaskShape, rows: np.ndarray, src: np.ndarray
    ) -> None:
        """The tasks of one shape due in several rows of a pool, as one batched transform
        pair (:meth:`futurefill.grouped_kernels.GroupedKernels.fill_group`)."""

    def fill_groups(
        self, state: ConvState, groups: Sequence[TaskGroup], *, max_elements: int | None = None
    ) -> None:
        """Every task due after one step of several rows of a pool, grouped by shape
        (:meth:`futurefill.grouped_kernels.GroupedKernels.fill_groups`)."""


_DTYPE_NAMES = ("float32", "float64")
_HALF_NAMES = ("bfloat16", "float16")


def _same_dtype(dtype: Any, native: Any, name: str) -> bool:
    if dtype is native or (isinstance(dtype, str) and dtype in (name, f"torch.{name}")):
        return True
    try:
        return bool(np.dtype(dtype) == np.dtype(name))
    except TypeError:
        return bool(dtype == native)


class ArrayAPIExecutor(GroupedKernels):
    """Reference executor: every kernel with any array-API namespace.

    It uses only the array API standard (plus ``array_api_extra.at`` for updates, which mutates
    where the namespace allows it and rebinds otherwise), so it also serves immutable arrays.

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

    # ------------------------------------------------------------------ arrays
    def is_native(self, x: object) -> bool:
        try:
            return array_namespace(x) is self.xp
        except TypeError:
            return False

    def refusal(self, x: object) -> str | None:
        return None

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
            if _same_dtype(dtype, native, name):
                return native
        raise TypeError(
            f"futurefill computes in float32 or float64, not {dtype}; low-precision FFTs "
            "(bfloat16/float16) lose the exactness this library promises: cast to float32"
        )

    def half_dtype(self, dtype: Any) -> Any:
        for name in _HALF_NAMES:
            native = getattr(self.xp, name, None)
            if native is not None and _same_dtype(dtype, native, name):
                return native
        return None

    def default_dtype(self, host_dtype: Any) -> str:
        kind = np.dtype(host_dtype)
        return "float64" if kind.kind in "iub" else kind.name

    def all_finite(self, x: Array) -> bool:
        return bool(self.xp.all(self.xp.isfinite(x)))

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Array:
        kwargs = {} if self.device is None else {"device": self.device}
        return self.xp.zeros(shape, dtype=dtype, **kwargs)

    def default_direct_below(self, batch: int, channels: int, dtype: Any) -> int:
        return self.direct_below

    def default_radix(self, batch: int, channels: int, dtype: Any) -> int | None:
        return None

    def synchronize(self) -> None:
        return None

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ kernels
    def prepare(self, state: ConvState) -> None:
        return None

    def emit(self, state: ConvState, u: Array, channels: slice, slot: int, start: int) -> Array:
        buf = state.buffer
        W = state.taps_reversed.shape[-1]
        width = slot - start + 1
        taps = state.taps_reversed[channels, W - width :]
        # Everything older than the window (already in the slot) + the window's older inputs
        # + phi[0] * u_t; computed before the slot is overwritten by the input u_t.
        y = buf[:, channels, slot] + taps[..., -1] * u
        if width > 1:
            y = y + ops.window_sum(buf[:, channels, start:slot], taps[..., :-1], xp=self.xp)
        state.buffer = xpx.at(buf)[:, channels, slot].set(u)
        return y

    def fill(self, state: ConvState, step: int) -> None:
        plan = state.plan
        if not plan.transforms.fused.item(step):
            self.run_transforms(state, step)
            return
        for i in range(plan.task_ptr.item(step), plan.task_ptr.item(step + 1)):
            self.fill_task(state, plan.task_offsets(i))

    def run_transforms(self, state: ConvState, step: int) -> None:
        """Run the transform ops planned after ``step`` (:attr:`futurefill.Plan.transforms`):
        forward transforms into registers, products summed per target, one inverse each."""
        plan = state.plan
        program = plan.transforms
        total = None
        for op in range(program.op_ptr.item(step), program.op_ptr.item(step + 1)):
            kind, register = program.kind.item(op), program.register.item(op)
            task = plan.task_offsets(program.task.item(op))
            if kind == FORWARD:
                self.store(state, register, task)
            elif kind == PRODUCT:
                total = self.accumulate(state, total, self.held(state, register, task), task)
            else:
                self.add_inverse(state, task, total)
                total = None

    def store(self, state: ConvState, register: int, task: TaskOffsets) -> Array:
        """Transform the source block of ``task`` into ``register``; return the spectrum."""
        a, b, n = task.src_start, task.src_stop, task.fft_size
        spectrum = ops.block_spectrum(state.buffer[..., a:b], n, xp=self.xp)
        state.registers[register] = ((state.revision, a, b, n), spectrum)
        return spectrum

    def held(self, state: ConvState, register: int, task: TaskOffsets) -> Array:
        """The spectrum of ``task``'s source block held in ``register``, transformed again
        from the buffer if the register holds anything else (a restored snapshot, a reset)."""
        tag, spectrum = state.registers.get(register, (None, None))
        if tag != (state.revision, task.src_start, task.src_stop, task.fft_size):
            spectrum = self.store(state, register, task)
        return spectrum

    def accumulate(
        self, state: ConvState, total: Array | None, spectrum: Array, task: TaskOffsets
    ) -> Array:
        """``total`` plus ``spectrum`` times ``task``'s filter spectrum (``total`` is
        ``None`` for the first product of a target)."""
        term = spectrum * state.spectra[task.spectrum]
        return term if total is None else total + term

    def add_inverse(self, state: ConvState, task: TaskOffsets, total: Array) -> None:
        """Add the slice of the inverse transform of ``total`` that ``task`` reads into its
        target."""
        c, d, r = task.dst_start, task.dst_stop, task.read_start
        z = ops.inverse_slice(total, task.fft_size, r, r + d - c, xp=self.xp)
        state.buffer = xpx.at(state.buffer)[..., c:d].add(z)

    def fill_task(self, state: ConvState, task: TaskOffsets) -> None:
        """Add one task's contribution into ``state.buffer`` (what :meth:`fill` loops over)."""
        z = ops.fill_future(
            state.buffer[..., task.src_start : task.src_stop],
            state.spectra[task.spectrum],
            task.fft_size,
            task.read_start,
            task.read_start + task.dst_stop - task.dst_start,
            xp=self.xp,
        )
        state.buffer = xpx.at(state.buffer)[..., task.dst_start : task.dst_stop].add(z)

    def prefill(self, state: ConvState, u: Array, channels: slice) -> Array:
        z = self.prompt_convolution(state, u, channels)
        plan = state.plan
        P = plan.prompt
        if plan.prefill_fills_future:
            state.buffer = xpx.at(state.buffer)[:, channels, :].set(z[..., P:])
        else:
            state.buffer = xpx.at(state.buffer)[:, channels, :P].set(u)
        return z[..., :P]

    def prompt_convolution(self, state: ConvState, u: Array, channels: slice) -> Array:
        """One FFT convolution of the prompt ``u`` ``(B, c, P)`` of ``channels``.

        Returns the outputs at positions ``0 .. P-1`` followed, when the plan fills the future
        at prefill, by the prompt's contribution to every later position (the cache).
        """
        plan: Plan = state.plan
        stop = plan.total if plan.prefill_fills_future else plan.prompt
        n = plan.prefill_fft_size
        spectrum = ops.filter_spectrum(state.filters[channels, ...], 0, stop, n, xp=self.xp)
        return ops.fill_future(u, spectrum, n, 0, stop, xp=self.xp)

    def clear(self, state: ConvState) -> None:
        state.buffer = xpx.at(state.buffer)[...].set(0)

    def generate_greedy(self, model: Any, prompt: Any, new_tokens: int, **options: Any) -> Any:
        return None

    def capture_decode(
        self, state: ConvState, body: DecodeStep, tokens: Array, states: list[Any]
    ) -> DecodeStep | None:
        return None

    def compile_function(
        self, fn: Callable[..., Any], *, donate: tuple[int, ...] = ()
    ) -> Callable[..., Any] | None:
        return None

    def workspace_size(self, state: ConvState) -> dict[str, int]:
        return {}

    def settle(self, state: ConvState) -> None:
        return None

    def compile(self, state: ConvState, feedback: Callable[[Array], Array]) -> Program | None:
        return None
