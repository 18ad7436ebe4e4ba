"""JAX executor: functional state, jit-compiled steps, a compiled whole-generation rollout."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from futurefill.executor import ArrayAPIExecutor, ConvState, Program

from . import functional
from ._pool import JittedGroupedKernels
from ._program import build_program

__all__ = ["JaxExecutor"]

Array = Any

_X64_MESSAGE = (
    "float64 needs JAX's 64-bit mode, which is off: set the environment variable "
    "JAX_ENABLE_X64=1 or call jax.config.update('jax_enable_x64', True) before creating "
    "arrays (otherwise JAX silently computes in float32)"
)


def _x64_enabled() -> bool:
    """Whether JAX keeps float64 (``jax_enable_x64``), read through its public dtype rules."""
    return bool(jax.dtypes.canonicalize_dtype(np.float64) == np.float64)


@dataclass
class _Workspace:
    """A state's derived data: the functional kernels' constants (window taps, task tables)
    and the constant operands of the compiled rollout (filled on first use)."""

    stream: functional.StreamState
    rollout_consts: tuple | None = None


class JaxExecutor(JittedGroupedKernels, ArrayAPIExecutor):
    """Executor for JAX arrays (any JAX device).

    * the state buffer is a JAX array rebound after every update (``state.buffer``);
    * a step runs the functional API's kernels (:mod:`futurefill_jax.functional`),
      jit-compiled with the buffer donated so that XLA updates it in place; positions are
      traced, so two compilations (emit per channel range, advance) serve every step, and
      the functional API gives bit-identical results;
    * :meth:`compile` turns a rollout with a traceable feedback into one XLA program
      generated from the plan's tables (see :mod:`futurefill_jax._program`), cached per
      plan, shapes, dtype and feedback.

    float64 requires ``jax_enable_x64``; asking for it without raises instead of silently
    computing in float32.

    Parameters
    ----------
    device : None, str or jax.Device
        ``None`` for JAX's default device, a platform name (``"cpu"``, ``"gpu"``) or a device.
    """

    name = "jax"
    #: Integer-array indices in reads and updates: the pool's batched kernels gather and
    #: scatter all rows at once.
    fancy_indexing = True
    #: ``direct_below`` crossover (2 shared CPU cores, jax 0.10.2). The
    #: compiled rollout runs each window block of the plan as straight-line code: D=1,
    #: L=65536, us/token: 16: 0.5, 32: 0.7, 64: 0.8; smaller blocks pay a check of the task
    #: tables per block. Step by step, L=8192, D=1 / D=64, us/token: 1: 51/59, 4: 43/45,
    #: 16: 57/65, 32: 39/88, 64: 56/74 -- bound by the dispatch of the jitted calls, flat
    #: within the noise. 16 is the best for the rollout and as good as any for steps.
    direct_below: ClassVar[int] = 16
    #: Compiled rollout programs kept (least recently used dropped first).
    rollout_cache_size: ClassVar[int] = 16

    def __init__(self, device: Any = None) -> None:
        super().__init__(jnp, _resolve_device(device))
        self._programs: OrderedDict[tuple, Any] = OrderedDict()

    # ------------------------------------------------------------------ arrays
    def is_native(self, x: object) -> bool:
        if not isinstance(x, jax.Array) or isinstance(x, jax.core.Tracer):
            return False
        return self.device is None or self.device in x.devices()

    def refusal(self, x: object) -> str | None:
        """Why ``x`` is refused, when the generic message would not say it."""
        if isinstance(x, jax.core.Tracer):
            return (
                "got a JAX tracer: OnlineConv keeps its state in Python and cannot run inside "
                "jax.jit, jax.grad or jax.vmap (the traced values would leak into the state); "
                "call it outside, or run a whole compiled generation with "
                "OnlineConv.rollout(u0, feedback)"
            )
        return None

    def resolve_dtype(self, dtype: Any) -> Any:
        resolved = np.dtype(super().resolve_dtype(dtype))
        if resolved == np.float64 and not _x64_enabled():
            raise TypeError(_X64_MESSAGE)
        return resolved

    def asarray(self, x: Any, dtype: Any = None) -> Array:
        if (
            dtype is None
            and not _x64_enabled()
            and np.result_type(getattr(x, "dtype", np.asarray(x).dtype)) == np.float64
        ):
            raise TypeError(_X64_MESSAGE)
        dtype = None if dtype is None else self.resolve_dtype(dtype)
        arr = jnp.asarray(x, dtype=dtype)
        return arr if self.device is None else jax.device_put(arr, self.device)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(x)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Array:
        arr = jnp.zeros(shape, dtype=self.resolve_dtype(dtype))
        return arr if self.device is None else jax.device_put(arr, self.device)

    def synchronize(self) -> None:
        (jax.device_put(0.0, self.device) + 0).block_until_ready()

    def place(self, tree: Any) -> Any:
        """``tree``'s arrays committed to this executor's device (JAX's default device when
        none was given): a jitted program runs where its operands are, so constants made on
        the default device would be moved to the executor's at every call."""
        return jax.device_put(tree, self.device)

    # ------------------------------------------------------------------ kernels
    def prepare(self, state: ConvState) -> None:
        # The functional state's constants (window taps, task tables); its buffer is unused.
        stream = functional.init(
            state.plan, self.to_numpy(state.filters), batch=1, dtype=state.buffer.dtype
        ).replace(buffer=None)
        state.workspace = _Workspace(stream=self.place(stream))

    def clear(self, state: ConvState) -> None:
        state.buffer = jnp.zeros_like(state.buffer)

    def emit(self, state: ConvState, u: Array, channels: slice, slot: int, start: int) -> Array:
        fs = state.workspace.stream
        ch0, ch1, _ = channels.indices(state.channels)
        state.buffer, y = functional.emit_donated(
            state.buffer, u, fs.taps, fs.window_slot, state.step,
            layout=fs.layout, ch0=ch0, ch1=ch1,
        )  # fmt: skip
        return y

    def fill(self, state: ConvState, step: int) -> None:
        fs = state.workspace.stream
        if state.plan.task_ptr.item(step) < state.plan.task_ptr.item(step + 1):
            state.buffer = functional.advance_donated(
                state.buffer, fs.tasks, step, layout=fs.layout
            )

    # ------------------------------------------------------------------ whole generation
    def compile(self, state: ConvState, feedback: Callable[[Array], Array]) -> Program | None:
        """One XLA program for rollouts of ``state``'s plan with this feedback.

        ``feedback`` must be traceable by JAX (pure ``jax.numpy``). Compiling takes seconds the
        first time for a plan, shapes, dtype and feedback; later calls reuse the program from
        any start position and for any number of steps.
        """
        key = (state.plan, state.batch, state.channels, str(state.buffer.dtype), feedback)
        jitted = self._programs.pop(key, None)
        ws: _Workspace = state.workspace
        if jitted is None or ws.rollout_consts is None:
            # The program depends on the plan, shapes and feedback (cached here); its
            # constant operands on this state's filters (kept with the state).
            built, consts = build_program(state, feedback)
            ws.rollout_consts = self.place(consts)
            jitted = built if jitted is None else jitted
        self._programs[key] = jitted
        while len(self._programs) > self.rollout_cache_size:
            self._programs.popitem(last=False)
        consts = ws.rollout_consts

        def program(state: ConvState, u0: Array, steps: int) -> Array:
            t0 = state.step
            state.buffer, ys = jitted(state.buffer, u0, t0, t0 + steps, *consts)
            state.step = t0 + steps
            return ys[..., t0 : t0 + steps]

        return program

    def compile_function(
        self, fn: Callable[..., Any], *, donate: tuple[int, ...] = ()
    ) -> Callable[..., Any] | None:
        """``jax.jit(fn)``, the positional arguments ``donate`` donated."""
        return jax.jit(fn, donate_argnums=donate)

    def generate_greedy(self, model: Any, prompt: Any, new_tokens: int, **options: Any) -> Any:
        """Greedy generation from a reference model as compiled programs (what
        :func:`futurefill.models.generate` runs where the executor's ``generate_greedy``
        returns one; the base class's returns ``None``); see
        :func:`futurefill_jax.decode.greedy` for the options."""
        from .decode import greedy

        return greedy(model, prompt, new_tokens, executor=self, **options)


def _resolve_device(device: Any) -> Any:
    if device is None or isinstance(device, jax.Device):
        return device
    if isinstance(device, str):
        try:
            return jax.devices(device)[0]
        except RuntimeError as exc:
            raise ValueError(f"JAX has no {device!r} device: {exc}") from exc
    raise TypeError(f"device must be None, a platform name or a jax.Device, got {device!r}")
