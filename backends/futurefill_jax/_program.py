"""The compiled whole-generation path: every step of a rollout inside one XLA program.

The program is generated from the plan's tables alone (window slots, block size, kernel
classes of its step patterns), whatever built the plan. Inside it the state buffer is split
in two padded arrays, ``U`` (the inputs, valid below the current slot) and ``A`` (the
accumulated future, valid from the current slot on); they are merged back into one buffer at
the end, exactly as the step-by-step path leaves it. Sizes are static and positions traced,
so one compilation per (plan, shapes, dtype, feedback) serves every start position and step
count.

Tasks run class by class (:mod:`futurefill_jax._classes`): the tasks of class ``j`` planned
after steps ``t0 .. t1-1`` are rows ``ptr_j[t0] .. ptr_j[t1]-1`` of the class's table, run by
a loop whose trip count is read from the table (XLA copies whole buffers passed through a
conditional, but updates loop state in place).

Two program shapes:

* **blocked**, when every step's window starts at the first step of an aligned block of
  ``G <= MAX_GROUP`` steps (:attr:`futurefill.Plan.window_block_size`) and tasks only write
  blocks not yet started: each block is straight-line code in which every output sums the
  block's earlier inputs directly, and the block's tasks run at its end. Classes whose tasks
  all come at the end of a chunk of ``CHUNK`` steps are only looked at once per chunk. A
  rollout that starts or stops inside a block runs that block one step at a time.
* **stepwise**, for any other plan: one step at a time with a masked window of static size
  (phases of doubling size as the windows grow), the tasks after every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from futurefill.executor import ConvState
from futurefill.plan import Plan

from ._kernels import after
from ._spectral import spectral_runner
from ._tasks import put, taps_at, task_runner, window, window_phases

__all__ = ["CHUNK", "MAX_GROUP", "build_program", "check_feedback"]

Array = Any

#: Largest window block run as straight-line code (larger blocks run step by step).
#: Measured at D=1, L=65536 on 2 shared CPU cores (jax 0.10.2): blocks of 16 steps ~0.5
#: us/token, 32 ~0.7, 64 ~0.8; larger ones also compile slower (quadratic straight-line code).
MAX_GROUP = 64
#: Classes whose tasks all come after the last step of a chunk of about this many steps are
#: looked at once per chunk instead of once per block.
CHUNK = 1024


def _i32(x: Any) -> Array:
    return jnp.asarray(x, dtype=jnp.int32)


def check_feedback(feedback: Callable[[Array], Array], shape: tuple[int, ...], dtype: Any) -> None:
    """Raise unless ``feedback`` traces to an array of ``shape`` and ``dtype``."""
    out = jax.eval_shape(feedback, jax.ShapeDtypeStruct(shape, dtype))
    if not hasattr(out, "shape") or tuple(out.shape) != shape or out.dtype != dtype:
        got = (tuple(getattr(out, "shape", ())), getattr(out, "dtype", type(out).__name__))
        raise ValueError(
            f"feedback must return shape {shape} and dtype {np.dtype(dtype)}, got {got[0]} and "
            f"{got[1]}"
        )


def build_program(state: ConvState, feedback: Callable[[Array], Array]) -> tuple[Any, tuple]:
    """Compile-ready program and its constant operands for ``state``'s plan and shapes.

    Returns
    -------
    program, consts
        ``program(buffer, u0, t_start, t_end, *consts) -> (buffer, ys)``, jitted, the
        buffer donated; ``ys`` has ``length`` entries on its last axis and holds each output
        at its step index.
    """
    plan = state.plan
    B, C = state.batch, state.channels
    dtype = state.buffer.dtype
    check_feedback(feedback, (B, C), dtype)
    filters = np.asarray(state.filters, dtype=np.float64)
    G = plan.window_block_size
    if G is not None and G <= MAX_GROUP and plan.tasks_start_windows:
        body, consts = _blocked(plan, filters, state, feedback, G)
    else:
        body, consts = _stepwise(plan, filters, state, feedback)
    device_consts = tuple(
        jnp.asarray(c, dtype=dtype if np.issubdtype(c.dtype, np.floating) else c.dtype)
        for c in consts
    )
    return jax.jit(body, donate_argnums=0), device_consts


def _merge(U: Array, A: Array, F: int, Lb: int, stop: Array) -> Array:
    """The buffer: inputs below slot ``stop``, accumulators from it on."""
    q = jnp.arange(Lb, dtype=jnp.int32)
    return jnp.where(q < stop, U[..., F : F + Lb], A[..., F : F + Lb])


# ---------------------------------------------------------------------- blocked
def _blocked(
    plan: Plan, filters: np.ndarray, state: ConvState, feedback: Any, G: int
) -> tuple[Any, list]:
    L, Lb = plan.length, plan.buffer_length
    base = int(plan.slot[0])
    B, C = state.batch, state.channels
    spectral = spectral_runner(plan, G)
    tasks = task_runner(plan, 0, spectral)
    R = max(tasks.pad, G, 0 if spectral is None else spectral.pad)
    chunk = G * max(1, CHUNK // G)
    per = chunk // G
    rare = tasks.rare(chunk)
    frequent = [j for j in range(len(tasks.classes)) if j not in rare]
    rare_sizes = [] if spectral is None else spectral.rare(chunk)
    frequent_sizes = [] if spectral is None else [
        i for i in spectral.every if i not in rare_sizes
    ]  # fmt: skip
    every = list(range(len(tasks.classes)))
    i = np.arange(G)
    toe = taps_at(filters, i[:, None] - i[None, :]) * (i[:, None] >= i[None, :])  # (C, G, G)
    push = np.transpose(toe * (i[:, None] > i[None, :]), (2, 0, 1))  # (G, C, G): [s, c, j]
    consts = [filters[:, 0], toe, push, *tasks.constants(state.spectra, filters)]
    n_tasks = len(consts) - 3
    if spectral is not None:
        consts += spectral.constants(state.spectra)

    def program(buf: Array, u0: Array, t_start: Any, t_end: Any, *cs: Array) -> tuple:
        phi0, toe_c, push_c = cs[:3]
        task_cs, spec_cs = list(cs[3 : 3 + n_tasks]), list(cs[3 + n_tasks :])
        t_a, t_b = _i32(t_start), _i32(t_end)
        pad = ((0, 0), (0, 0), (0, R))
        U, A = jnp.pad(buf, pad), jnp.pad(buf, pad)
        ys = jnp.zeros((B, C, L), buf.dtype)
        pos = jnp.arange(G, dtype=jnp.int32)
        regs: tuple = ()
        if spectral is not None:  # the registers alive across t_a, from the inputs
            regs = spectral.reload(U, spectral.registers(B, C, buf.dtype), spec_cs, t_a)

        def shared(
            U: Array, A: Array, regs: tuple, t0: Array, t1: Array, which: list[int] | None = None
        ) -> tuple:
            if spectral is None:
                return A, regs
            return spectral.run(U, A, regs, spec_cs, t0, t1, which)

        def one_step(t: Array, carry: tuple) -> tuple:
            """Step t inside a block, its window summed from the block's stored inputs."""
            U, A, u, ys, regs = carry
            s = base + t
            j = t % G
            row = lax.dynamic_index_in_dim(toe_c, j, axis=1, keepdims=False)  # (C, G)
            win = jnp.where(pos < j, window(U, s - j, G), 0)
            y = lax.dynamic_index_in_dim(A, s, axis=-1, keepdims=False) + phi0 * u
            y = y + jnp.sum(win * row, axis=-1)
            U = put(U, u[..., None], after(s, y))
            ys = put(ys, y[..., None], t)
            A = tasks.run(U, A, task_cs, t, t + 1, every)
            A, regs = shared(U, A, regs, t, t + 1)
            return U, A, feedback(y), ys, regs

        def block(g: Array, carry: tuple) -> tuple:
            """One whole block of G steps, straight-line, then its tasks."""
            U, A, u, ys, regs, a = carry
            g0 = g * G
            us, yl = [], []
            r = a
            for j in range(G):
                y = r[..., j] + phi0 * u
                if j + 1 < G:
                    r = r + u[..., None] * push_c[j]
                us.append(u)
                yl.append(y)
                u = feedback(y)
            U = put(U, jnp.stack(us, axis=-1), base + g0)
            ys = put(ys, jnp.stack(yl, axis=-1), g0)
            A = tasks.run(U, A, task_cs, g0, g0 + G, frequent)
            A, regs = shared(U, A, regs, g0, g0 + G, frequent_sizes)
            return U, A, u, ys, regs, window(A, base + g0 + G, G)

        def blocks(g_from: Array, g_to: Array, carry: tuple) -> tuple:
            U, A, u, ys, regs = carry
            a = window(A, base + g_from * G, G)
            U, A, u, ys, regs, _ = lax.fori_loop(
                g_from, jnp.maximum(g_from, g_to), block, (U, A, u, ys, regs, a)
            )
            return U, A, u, ys, regs

        def whole_chunk(h: Array, carry: tuple) -> tuple:
            U, A, u, ys, regs = blocks(h * per, (h + 1) * per, carry)
            A = tasks.run(U, A, task_cs, h * chunk, (h + 1) * chunk, rare)
            A, regs = shared(U, A, regs, h * chunk, (h + 1) * chunk, rare_sizes)
            return U, A, u, ys, regs

        g_lo, g_hi = (t_a + G - 1) // G, t_b // G
        h_lo, h_hi = (t_a + chunk - 1) // chunk, t_b // chunk
        # 1. the block t_a starts inside, up to its end or t_b, one step at a time
        head_end = jnp.minimum(t_b, g_lo * G)
        carry = lax.fori_loop(t_a, head_end, one_step, (U, A, u0, ys, regs))
        # 2. whole blocks up to the first chunk boundary (or t_b)
        g2 = jnp.maximum(g_lo, jnp.minimum(g_hi, h_lo * per))
        U, A, u, ys, regs = blocks(g_lo, g2, carry)
        A = tasks.run(U, A, task_cs, g_lo * G, g2 * G, rare)
        A, regs = shared(U, A, regs, g_lo * G, g2 * G, rare_sizes)
        # 3. whole chunks
        carry = lax.fori_loop(h_lo, jnp.maximum(h_lo, h_hi), whole_chunk, (U, A, u, ys, regs))
        # 4. whole blocks after the last chunk
        carry = blocks(jnp.maximum(g2, h_hi * per), g_hi, carry)
        # 5. the block t_b stops inside, one step at a time
        U, A, _, ys, _ = lax.fori_loop(jnp.maximum(g_hi * G, head_end), t_b, one_step, carry)
        return _merge(U, A, 0, Lb, base + t_b), ys

    return program, consts


# ---------------------------------------------------------------------- stepwise
def _stepwise(plan: Plan, filters: np.ndarray, state: ConvState, feedback: Any) -> tuple[Any, list]:
    L, Lb = plan.length, plan.buffer_length
    base = int(plan.slot[0])
    B, C = state.batch, state.channels
    phases = window_phases(plan)
    widths = sorted({M for _, _, M in phases if M})
    F = max([0, *widths])
    tasks = task_runner(plan, F)
    every = list(range(len(tasks.classes)))
    consts = [filters[:, 0], plan.window_slot.astype(np.int32)]
    consts += [taps_at(filters, M - np.arange(M)) for M in widths]  # phi[M], ..., phi[1]
    consts += tasks.constants(state.spectra, filters)
    n_w = len(widths)

    def program(buf: Array, u0: Array, t_start: Any, t_end: Any, *cs: Array) -> tuple:
        phi0, wslot = cs[0], cs[1]
        taps = dict(zip(widths, cs[2 : 2 + n_w], strict=True))
        task_cs = list(cs[2 + n_w :])
        t_a, t_b = _i32(t_start), _i32(t_end)
        pad = ((0, 0), (0, 0), (F, tasks.pad))
        U, A = jnp.pad(buf, pad), jnp.pad(buf, pad)
        ys = jnp.zeros((B, C, L), buf.dtype)

        def steps(first: Array, stop: Array, M: int, carry: tuple) -> tuple:
            def step(t: Array, carry: tuple) -> tuple:
                U, A, u, ys = carry
                s = F + base + t
                y = lax.dynamic_index_in_dim(A, s, axis=-1, keepdims=False) + phi0 * u
                if M:
                    pos = s - M + jnp.arange(M, dtype=jnp.int32)
                    start = F + lax.dynamic_index_in_dim(wslot, t, keepdims=False)
                    win = window(U, s - M, M)  # a product per channel (see _kernels.known)
                    row = jnp.where(pos >= start, taps[M], 0)  # (full float32 precision)
                    y = y + jnp.einsum("bcm,cm->bc", win, row, precision=lax.Precision.HIGHEST)
                U = put(U, u[..., None], after(s, y))
                ys = put(ys, y[..., None], t)
                A = tasks.run(U, A, task_cs, t, t + 1, every)
                return U, A, feedback(y), ys

            return lax.fori_loop(first, jnp.maximum(first, stop), step, carry)

        carry = (U, A, u0, ys)
        for first, stop, M in phases:
            carry = steps(jnp.maximum(t_a, first), jnp.minimum(t_b, stop), M, carry)
        U, A, _, ys = carry
        return _merge(U, A, F, Lb, base + t_b), ys

    return program, consts
