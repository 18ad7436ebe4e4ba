"""JAX executor: functional state, jit-compiled steps, a compiled whole-generation rollout."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from futurefill.executor import ArrayAPIExecutor, ConvState
from futurefill.plan import Plan

from . import _kernels
from ._rollout import MAX_GROUP, build_rollout

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


class JaxExecutor(ArrayAPIExecutor):
    """Executor for JAX arrays (any JAX device).

    * the state buffer is a JAX array rebound after every update (``state.buffer``);
    * :meth:`emit` and the FutureFill tasks of :meth:`advance` are jit-compiled with the buffer
      donated, so XLA updates it in place; positions are traced, so a handful of compilations
      (one per window-size bucket and task size) serve every step;
    * :meth:`rollout` runs all steps with a traceable feedback as one compiled XLA program
      (see :mod:`futurefill_jax._rollout`), cached per plan, shapes, dtype and feedback.

    float64 requires ``jax_enable_x64``; asking for it without raises instead of silently
    computing in float32.

    Parameters
    ----------
    device : None, str or jax.Device
        ``None`` for JAX's default device, a platform name (``"cpu"``, ``"gpu"``) or a device.
    """

    name = "jax"
    #: ``direct_below`` of the continuous schedule, measured with ``python -m
    #: futurefill_jax._bench`` (2 shared CPU cores, jax 0.10.2). Compiled rollout, D=1,
    #: L=65536, us/token: 1: 0.52, 4: 0.61, 16: 0.51, 32: 0.71, 64: 0.80 (it runs aligned
    #: groups of ``max(direct_below, 16)`` steps directly, so the value only matters above 16).
    #: Step by step, L=8192, D=1 / D=64, us/token: 1: 51/59, 4: 43/45, 16: 57/65, 32: 39/88,
    #: 64: 56/74 -- bound by the dispatch of the jitted calls, flat within the noise. 16 is the
    #: best for the rollout and as good as any for steps.
    direct_below: ClassVar[int] = 16
    #: Compiled rollout programs kept (least recently used dropped first).
    rollout_cache_size: ClassVar[int] = 16

    def __init__(self, device: Any = None) -> None:
        super().__init__(jnp, _resolve_device(device))
        self._rollouts: OrderedDict[tuple, tuple[Any, tuple]] = OrderedDict()

    # ------------------------------------------------------------------ conversions
    def is_native(self, x: object) -> bool:
        if not isinstance(x, jax.Array):
            return False
        if self.device is None or isinstance(x, jax.core.Tracer):
            return True
        return self.device in x.devices()

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

    def synchronize(self) -> None:
        (jax.device_put(0.0) + 0).block_until_ready()

    # ------------------------------------------------------------------ state
    def prepare(self, plan: Plan, filters: Array, *, batch: int, dtype: Any) -> ConvState:
        dtype = self.resolve_dtype(dtype)
        state = super().prepare(plan, filters, batch=batch, dtype=dtype)
        taps = state.taps_reversed
        state.extra["taps"] = jnp.concatenate([taps, jnp.zeros_like(taps)], axis=-1)
        return state

    def reset(self, state: ConvState) -> None:
        state.buffer = jnp.zeros_like(state.buffer)
        state.step = 0
        state.prefilled = False

    # ------------------------------------------------------------------ one step
    def emit(self, state: ConvState, u: Array, channels: slice) -> Array:
        plan = state.plan
        t = state.step
        slot = plan.prompt + t - plan.origin
        start = plan.window_start.item(t) - plan.origin
        width = slot - start
        m = 0 if width == 0 else min(1 << (width - 1).bit_length(), plan.window_length - 1)
        ch0, ch1, _ = channels.indices(state.channels)
        state.buffer, y = _kernels.emit(
            state.buffer, u, state.extra["taps"], slot, start, ch0=ch0, ch1=ch1, m=m
        )
        return y

    def run_task(self, state: ConvState, i: int) -> None:
        plan = state.plan
        a, b, c, d, r, n, key = plan.task_offsets(i)
        spectrum = state.spectra[key]
        lo = key[0]
        if plan.schedule == "epoched" and b <= n and d - lo <= n:
            state.buffer = _kernels.prefix_task(state.buffer, spectrum, a, b, c, d, n=n, lo=lo)
        else:
            state.buffer = _kernels.block_task(
                state.buffer, spectrum, a, c, k=b - a, n=n, r=r, w=b - a
            )

    # ------------------------------------------------------------------ whole generation
    def rollout(
        self, state: ConvState, u0: Array, feedback: Callable[[Array], Array], steps: int
    ) -> Array:
        """Run ``steps`` steps with ``u[t+1] = feedback(y[t])`` as one compiled program.

        ``feedback`` must be traceable by JAX (pure ``jax.numpy``). Compiling takes seconds the
        first time for a plan, shapes, dtype and feedback; later calls reuse the program from
        any start position and for any number of steps.
        """
        plan = state.plan
        if plan.schedule == "continuous" and max(plan.direct_below, 1) > MAX_GROUP:
            return super().rollout(state, u0, feedback, steps)
        key = (plan, state.batch, state.channels, str(state.buffer.dtype), feedback)
        found = self._rollouts.pop(key, None)
        if found is None:
            found = build_rollout(state, feedback)
        self._rollouts[key] = found
        while len(self._rollouts) > self.rollout_cache_size:
            self._rollouts.popitem(last=False)
        program, consts = found
        t0 = state.step
        buffer, ys = program(state.buffer, u0, t0, t0 + steps, 1, *consts)
        state.buffer = buffer
        state.step = t0 + steps
        return ys[..., t0 : t0 + steps]


def _resolve_device(device: Any) -> Any:
    if device is None or isinstance(device, jax.Device):
        return device
    if isinstance(device, str):
        try:
            return jax.devices(device)[0]
        except RuntimeError as exc:
            raise ValueError(f"JAX has no {device!r} device: {exc}") from exc
    raise TypeError(f"device must be None, a platform name or a jax.Device, got {device!r}")
