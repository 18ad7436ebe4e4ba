"""The functional JAX face of the interpreter: pure functions over a pytree state.

``OnlineConv`` keeps its state in Python objects; inside ``jax.jit``, ``lax.scan`` or a sharded
computation, use these functions instead::

    import jax, jax.numpy as jnp
    from futurefill import make_plan
    from futurefill_jax import functional as ff

    plan = make_plan(4096, "continuous", direct_below=16)
    state = ff.init(plan, filters, batch=1, dtype=jnp.float32)   # a registered pytree

    @jax.jit
    def generate(state, u0):
        def body(carry, _):
            state, u = carry
            state, y = ff.step(state, u)
            return (state, jnp.tanh(y)), y
        (state, _), ys = jax.lax.scan(body, (state, u0), length=plan.length)
        return state, ys

Every function is generated from the plan's tables (window slots, kernel classes of its step
patterns): any plan runs, whatever built it. The state's arrays are its leaves (buffer, step
counter, window taps, task tables, spectra); the plan and the kernel layout are static.
Nothing is checked inside traced code: give the prompt (if any) before the first step and
take at most ``plan.length`` steps — :class:`futurefill.OnlineConv` is the checked face.
The step-by-step JAX executor runs these same functions, so both agree bit for bit.

Differentiation: forward mode (``jax.jvp``, ``jax.jacfwd``, ``jax.linearize``) works, with
respect to the inputs and the state's arrays; reverse mode (``jax.grad``, ``jax.vjp``) is not
supported (the tasks run in loops with traced trip counts) and raises ``NotImplementedError``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from futurefill import ops
from futurefill.plan import Plan

from . import _kernels
from ._forward_only import forward_only
from ._kernels import Spmd
from ._spectral import SpectralRunner
from ._tasks import TaskRunner, task_runner, window_phases

__all__ = [
    "StreamState",
    "advance",
    "emit",
    "init",
    "known",
    "output",
    "prefill",
    "rollout",
    "shard",
    "step",
    "store",
    "window_phases",
]

Array = Any


@dataclass(frozen=True, eq=False)
class Layout:
    """The static part of a state: the plan and the traced code it compiles to (cached per
    plan, so equal plans share one layout and one compilation)."""

    plan: Plan
    runner: TaskRunner
    window: int  # static window of older inputs summed at each emit
    spmd: Spmd | None = None  # where a sharded state lies (see shard)

    @property
    def base(self) -> int:
        """Buffer slot of step 0."""
        return int(self.plan.slot[0])


@functools.lru_cache(maxsize=64)
def layout_for(plan: Plan, spmd: Spmd | None = None) -> Layout:
    """The (cached) :class:`Layout` of ``plan``, sharded as ``spmd`` says (not by default)."""
    return Layout(plan=plan, runner=task_runner(plan, 0), window=plan.window_length - 1, spmd=spmd)


@jax.tree_util.register_pytree_node_class
class StreamState:
    """The state of one online convolution as a pytree (see :func:`init`).

    Attributes
    ----------
    buffer : array, shape (B, C, plan.buffer_length)
        Inputs kept and future accumulated, one slot per position (as in ``ConvState``).
    step : int32 array, shape ()
        The next online step.
    taps : array, shape (C, 2 W)
        The first ``W`` filter taps reversed, then ``W`` zeros (the emit kernel's operand).
    window_slot : int32 array, shape (length,)
        First slot of each step's local window.
    tasks : tuple of arrays
        Per kernel class: spectrum or Toeplitz taps, step pointers, task rows.
    prompt_spectrum : array or None
        Spectrum of the filters for the prefill convolution (``None`` without a prompt).
    layout : Layout
        Static: the plan and its kernel classes.
    """

    def __init__(
        self,
        buffer: Array,
        step: Array,
        taps: Array,
        window_slot: Array,
        tasks: tuple[Array, ...],
        prompt_spectrum: Array | None,
        layout: Layout,
    ) -> None:
        self.buffer = buffer
        self.step = step
        self.taps = taps
        self.window_slot = window_slot
        self.tasks = tasks
        self.prompt_spectrum = prompt_spectrum
        self.layout = layout

    @property
    def plan(self) -> Plan:
        """The schedule."""
        return self.layout.plan

    def replace(self, **changes: Any) -> StreamState:
        """A copy with some leaves replaced."""
        fields = {name: getattr(self, name) for name in _LEAVES}
        fields.update(changes)
        return StreamState(**fields, layout=self.layout)

    def tree_flatten(self) -> tuple[tuple[Any, ...], Layout]:
        return tuple(getattr(self, name) for name in _LEAVES), self.layout

    @classmethod
    def tree_unflatten(cls, layout: Layout, leaves: tuple[Any, ...]) -> StreamState:
        return cls(**dict(zip(_LEAVES, leaves, strict=True)), layout=layout)

    def __repr__(self) -> str:
        return (
            f"StreamState(plan={self.plan!r}, buffer={getattr(self.buffer, 'shape', '?')}, "
            f"dtype={getattr(self.buffer, 'dtype', '?')})"
        )


_LEAVES = ("buffer", "step", "taps", "window_slot", "tasks", "prompt_spectrum")


def init(plan: Plan, filters: Any, *, batch: int = 1, dtype: Any = None) -> StreamState:
    """A fresh state for ``plan``: filter spectra and task tables computed once, zero buffer.

    Parameters
    ----------
    plan : Plan
        From :func:`futurefill.make_plan` or :meth:`futurefill.Plan.from_tasks`.
    filters : array, shape (C, N), N >= plan.total
        Filter taps (NumPy or JAX).
    batch : int
        Batch size ``B``.
    dtype : dtype, optional
        ``float32`` or ``float64`` (needs ``jax_enable_x64``); the filters' by default.

    Returns
    -------
    StreamState
    """
    dtype = jnp.dtype(dtype if dtype is not None else np.asarray(filters).dtype)
    if dtype not in (jnp.float32, jnp.float64):
        raise TypeError(f"futurefill computes in float32 or float64, not {dtype}")
    host = np.asarray(filters, dtype=np.float64)
    if host.ndim != 2 or host.shape[1] < plan.total:
        raise ValueError(f"filters must be (C, N) with N >= {plan.total}, got {host.shape}")
    layout = layout_for(plan)
    filt = jnp.asarray(host, dtype=dtype)
    W = plan.window_length
    rev = ops.reversed_taps(filt, W, xp=jnp)
    tasks, _ = task_operands(plan, host, dtype, layout.runner)
    prompt_spectrum = None
    if plan.prompt:
        stop = plan.total if plan.prefill_fills_future else plan.prompt
        prompt_spectrum = ops.filter_spectrum(filt, 0, stop, plan.prefill_fft_size, xp=jnp)
    return StreamState(
        buffer=jnp.zeros((batch, host.shape[0], plan.buffer_length), dtype),
        step=jnp.zeros((), jnp.int32),
        taps=jnp.concatenate([rev, jnp.zeros_like(rev)], axis=-1),
        window_slot=jnp.asarray(plan.window_slot, jnp.int32),
        tasks=tasks,
        prompt_spectrum=prompt_spectrum,
        layout=layout,
    )


def task_operands(
    plan: Plan,
    filters: np.ndarray,
    dtype: Any,
    runner: TaskRunner,
    spectral: SpectralRunner | None = None,
) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
    """The operands of ``runner``'s kernel classes (filter spectra or Toeplitz taps, step
    pointers, task rows) and of ``spectral``'s shared transforms (none without), from the
    host filters ``(C, N)``, in ``dtype``."""
    filt = jnp.asarray(filters, dtype=dtype)
    spectra = {key: ops.filter_spectrum(filt, *key, xp=jnp) for key in plan.spectrum_keys}
    tasks = tuple(
        jnp.asarray(c, dtype=dtype) if np.issubdtype(np.asarray(c).dtype, np.floating) else
        jnp.asarray(c)
        for c in runner.constants(spectra, filters)
    )  # fmt: skip
    if spectral is None:
        return tasks, ()
    return tasks, tuple(jnp.asarray(c) for c in spectral.constants(spectra))


# ---------------------------------------------------------------------- kernels on buffers
def emit_buffer(
    buffer: Array, u: Array, taps: Array, window_slot: Array, t: Any, *, layout: Layout,
    ch0: int, ch1: int, window: int | None = None,
) -> tuple[Array, Array]:  # fmt: skip
    """``y`` of step ``t`` for channels ``ch0:ch1``, and the buffer with ``u`` stored
    (``window``: static number of older inputs read, at least the step's; the plan's longest
    by default)."""
    start = jnp.take(window_slot, t)
    m = layout.window if window is None else min(window, layout.window)
    return _kernels.emit(buffer, u, taps, layout.base + t, start, ch0=ch0, ch1=ch1, m=m)


def advance_buffer(buffer: Array, tasks: tuple[Array, ...], t: Any, *, layout: Layout) -> Array:
    """The buffer with the tasks planned after step ``t`` added."""
    runner = layout.runner
    return runner.run(None, buffer, tasks, t, t + 1, runner.every, padded=False, spmd=layout.spmd)


#: The step-by-step executor's kernels: the same code, jit-compiled with the buffer donated.
emit_donated = jax.jit(emit_buffer, static_argnames=("layout", "ch0", "ch1"), donate_argnums=0)
advance_donated = jax.jit(advance_buffer, static_argnames=("layout",), donate_argnums=0)


# ---------------------------------------------------------------------- the functional API
def _channels(state: StreamState, channels: slice) -> tuple[int, int]:
    start, stop, stride = channels.indices(state.buffer.shape[1])
    if stride != 1 or start >= stop:
        raise ValueError(f"channels must be a non-empty contiguous slice, got {channels}")
    return start, stop


def emit(
    state: StreamState, u: Array, channels: slice = slice(None), *, window: int | None = None
) -> tuple[StreamState, Array]:
    """``y`` of the current step for ``channels`` (static), storing their inputs ``u``.

    Every channel must be emitted once before :func:`advance`. ``window`` (static) bounds the
    older inputs read; it must be at least the current step's (see :func:`window_phases`:
    reading the plan's longest window at every step costs naive schedules twice the work).
    """
    ch0, ch1 = _channels(state, channels)
    buffer, y = emit_buffer(
        state.buffer, u, state.taps, state.window_slot, state.step,
        layout=state.layout, ch0=ch0, ch1=ch1, window=window,
    )  # fmt: skip
    return state.replace(buffer=buffer), y


def known(state: StreamState, *, window: int | None = None) -> Array:
    """What every channel's output at the current step owes to the past ``(B, C)``: the future
    filled so far plus the local window's older inputs (the output is this plus
    ``phi[0] * u``, :func:`output`).

    A model whose layers feed each other within a position reads the state once with this,
    gives each layer its :func:`output`, then :func:`store`\\ s every input at once: one read
    and one write of the buffer per position, which XLA does in place (reads and writes per
    channel range make it copy the buffer). ``window`` as for :func:`emit`.
    """
    lay = state.layout
    m = lay.window if window is None else min(window, lay.window)
    start = jnp.take(state.window_slot, state.step)
    C = state.buffer.shape[1]
    return _kernels.known(state.buffer, state.taps, lay.base + state.step, start, ch0=0, ch1=C, m=m)


def output(state: StreamState, known_part: Array, u: Array, channels: slice) -> Array:
    """The output of ``channels`` at the current step from :func:`known` and their inputs."""
    ch0, ch1 = _channels(state, channels)
    W = state.taps.shape[-1] // 2
    return known_part[:, ch0:ch1] + state.taps[ch0:ch1, W - 1] * u


def store(state: StreamState, u: Array, read: Array) -> StreamState:
    """Store the inputs ``u`` ``(B, C)`` of every channel in the current step's slot, after
    the reads that ``read`` (e.g. the result of :func:`known`) depends on."""
    buffer = _kernels.store(state.buffer, u, state.layout.base + state.step, ch0=0, read=read)
    return state.replace(buffer=buffer)


def advance(state: StreamState) -> StreamState:
    """Run the tasks planned after the current step and move to the next one.

    Forward-mode derivatives pass (``jax.jvp``, ``jax.jacfwd``); reverse mode through the
    tasks raises ``NotImplementedError`` (their loops have traced trip counts).
    """
    buffer = advance_buffer(state.buffer, state.tasks, state.step, layout=state.layout)
    return state.replace(buffer=forward_only(buffer), step=state.step + 1)


def step(state: StreamState, u: Array) -> tuple[StreamState, Array]:
    """One step for every channel: :func:`emit` then :func:`advance`."""
    state, y = emit(state, u)
    return advance(state), y


def prefill(
    state: StreamState, u: Array, channels: slice = slice(None)
) -> tuple[StreamState, Array]:
    """Give the prompt ``u`` ``(B, c, P)`` of ``channels`` (static; all by default); return
    the state and the prompt's outputs. Every channel's prompt is given once.

    On a sharded state (:func:`shard`) the prompt's FFT runs on every device over its own
    shard; for a range of the channels, over all of the range's channels of its batch rows.
    """
    plan = state.plan
    P = plan.prompt
    if P == 0 or state.prompt_spectrum is None:
        raise ValueError("this plan has no prompt (prompt=0)")
    ch0, ch1 = _channels(state, channels)
    stop = plan.total if plan.prefill_fills_future else P
    spectrum = state.prompt_spectrum[ch0:ch1]
    fill = functools.partial(
        ops.fill_future, n=plan.prefill_fft_size, read_start=0, read_stop=stop, xp=jnp
    )
    whole = (ch0, ch1) == (0, state.buffer.shape[1])  # (a range runs on its batch rows' devices)
    z = _kernels.per_shard(fill, state.layout.spmd, channels=whole)(u, spectrum)
    if plan.prefill_fills_future:
        buffer = state.buffer.at[:, ch0:ch1, :].set(z[..., P:].astype(state.buffer.dtype))
    else:
        buffer = state.buffer.at[:, ch0:ch1, :P].set(u)
    return state.replace(buffer=buffer), z[..., :P]


def rollout(
    state: StreamState, u0: Array, feedback: Callable[[Array], Array], steps: int
) -> tuple[StreamState, Array]:
    """``steps`` (static) steps with ``u[t+1] = feedback(y[t])`` as one ``lax.scan``.

    Returns the state and the outputs ``(B, C, steps)``.
    """

    def body(carry: tuple[StreamState, Array], _: Any) -> tuple[tuple[StreamState, Array], Array]:
        state, u = carry
        state, y = step(state, u)
        return (state, feedback(y)), y

    (state, _), ys = jax.lax.scan(body, (state, u0), length=steps)
    return state, jnp.moveaxis(ys, 0, -1)


def shard(
    state: StreamState,
    mesh: Mesh,
    *,
    batch_axis: str | None = None,
    channel_axis: str | None = None,
) -> StreamState:
    """Place ``state`` on ``mesh``: the batch over ``batch_axis``, channels over
    ``channel_axis`` (either may be ``None``).

    A depthwise convolution needs no communication across channels or batch rows, so every
    function above then runs shard by shard; inputs should be sharded alike
    (``NamedSharding(mesh, PartitionSpec(batch_axis, channel_axis))``). The returned state
    remembers the mesh (statically), so that each device runs the FFTs of its own shard.
    """

    def put(x: Any, *spec: str | None) -> Any:
        if x is None:
            return None
        full = (*spec, *([None] * (x.ndim - len(spec))))
        return jax.device_put(x, NamedSharding(mesh, PartitionSpec(*full)))

    per_channel = state.layout.runner.per_channel()
    layout = layout_for(state.plan, Spmd(mesh, batch_axis, channel_axis))
    return StreamState(
        layout=layout,
        buffer=put(state.buffer, batch_axis, channel_axis),
        step=put(state.step),
        taps=put(state.taps, channel_axis),
        window_slot=put(state.window_slot),
        tasks=tuple(
            put(c, channel_axis) if chan else put(c)
            for c, chan in zip(state.tasks, per_channel, strict=True)
        ),
        prompt_spectrum=put(state.prompt_spectrum, channel_axis),
    )
