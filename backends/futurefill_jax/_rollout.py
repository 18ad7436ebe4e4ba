"""The compiled whole-generation path: every step of a rollout inside one XLA program.

Inside the program the state buffer is split in two padded arrays, ``U`` (the inputs, valid
below the current slot) and ``A`` (the accumulated future, valid from the current slot on); they
are merged back into one buffer at the end, exactly as the step-by-step path leaves it. Sizes
are static and positions traced, so one compilation per (plan, shapes, dtype, feedback) serves
every start position and step count.

Continuous schedule (the fast one). Steps run in aligned *groups* of ``G >= direct_below``
steps, straight-line code in which each output sums the group's earlier inputs directly (all
pairs inside an aligned group, whatever their level in the plan, are exact either way). After a
group ends at step ``t1`` the plan's task of level ``lowbit(t1) >= G`` runs, in place on the
buffers, as a loop of 0 or 1 trips per level (XLA copies whole buffers passed through
``lax.cond``/``lax.switch``): a direct Toeplitz product below ``FFT_FROM``, an FFT above.
Levels from ``CHUNK`` on are only checked once per chunk of ``CHUNK`` steps.

A rollout that starts or stops inside a group runs that group one step at a time with masks
that reproduce exactly which pairs the plan has already filled (``_covered``).

Epoched and naive schedules run one step at a time with a masked local window of static size
(naive: in phases of doubling window size), and the epoched FutureFill as one fixed-size FFT
per epoch, masked when the epoch is not completed.
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

__all__ = ["CHUNK", "FFT_FROM", "GROUP", "MAX_GROUP", "build_rollout"]

Array = Any

#: Steps per straight-line group (continuous schedule). Measured at D=1, L=65536 on 2 shared
#: CPU cores (jax 0.10.2, ``python -m futurefill_jax._bench``): groups of 16 steps ~0.5
#: us/token, 32 ~0.7, 64 ~0.8; larger groups also compile slower (quadratic straight-line code).
GROUP = 16
#: Largest ``direct_below`` run with unrolled groups; larger ones loop step by step in Python.
MAX_GROUP = 64
#: Levels from this size on are checked once per chunk of CHUNK steps instead of every group.
CHUNK = 1024
#: Block size from which a task uses an FFT rather than a direct Toeplitz product. Measured on
#: a prototype of this loop at D=1, L=65536: FFT from 128 ~0.54 us/token, from 64 ~0.8, from 32
#: ~2.3, from 256 ~0.7 (XLA:CPU FFT calls have a fixed cost of several microseconds).
FFT_FROM = 128


def _i32(x: Any) -> Array:
    return jnp.asarray(x, dtype=jnp.int32)


def _ctz(x: Array) -> Array:
    """Number of trailing zero bits of a positive int32."""
    return lax.population_count((x & -x) - 1)


def _slice(x: Array, start: Array, size: int) -> Array:
    return lax.dynamic_slice_in_dim(x, start, size, axis=-1)


def _put(x: Array, value: Array, start: Array) -> Array:
    return lax.dynamic_update_slice_in_dim(x, value, start, axis=-1)


def _taps(filters: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """``filters[:, lags]`` with zeros for lags outside ``0 .. N-1``."""
    N = filters.shape[-1]
    ok = (lags >= 0) & (lags < N)
    return np.where(ok, filters[:, np.clip(lags, 0, N - 1)], 0.0)


def _check_feedback(feedback: Callable[[Array], Array], shape: tuple[int, ...], dtype: Any) -> None:
    spec = jax.ShapeDtypeStruct(shape, dtype)
    out = jax.eval_shape(feedback, spec)
    if not hasattr(out, "shape") or tuple(out.shape) != shape or out.dtype != dtype:
        got = (tuple(getattr(out, "shape", ())), getattr(out, "dtype", type(out).__name__))
        raise ValueError(
            f"feedback must return shape {shape} and dtype {np.dtype(dtype)}, got {got[0]} and "
            f"{got[1]}"
        )


def build_rollout(state: ConvState, feedback: Callable[[Array], Array]) -> tuple[Any, tuple]:
    """Compile-ready program and its constant operands for ``state``'s plan and shapes.

    Returns
    -------
    program, consts
        ``program(buffer, u0, t_start, t_end, 1, *consts) -> (buffer, ys)``, jitted, the
        buffer donated (the literal 1 is an operand on purpose, see ``tasks``); ``ys`` has at
        least ``length`` entries on its last axis and holds each output at its step index.
    """
    plan = state.plan
    B, C = state.batch, state.channels
    dtype = state.buffer.dtype
    _check_feedback(feedback, (B, C), dtype)
    filters = np.asarray(state.filters, dtype=np.float64)
    if plan.schedule == "continuous":
        body, consts = _continuous(plan, filters, state, feedback, B, C)
    else:
        body, consts = _stepwise(plan, filters, state, feedback, B, C)
    device_consts = tuple(
        jnp.asarray(c, dtype=c.dtype if np.iscomplexobj(c) else dtype) for c in consts
    )
    return jax.jit(body, donate_argnums=0), device_consts


# ---------------------------------------------------------------------- continuous
def _covered(s: Array, j: Array, e: Array, k0: int) -> Array:
    """Whether the plan has added pair (input ``s``, output ``j``), ``s < j`` in one group,
    to the accumulator once steps ``0 .. e-1`` of the group have run (group-local indices)."""
    x = jnp.maximum(s ^ j, 1)
    m = 31 - lax.clz(x)  # highest differing bit: the pair belongs to the task of level 2^m
    t1 = (j >> m) << m  # that task runs after step t1 - 1
    return (s < j) & (s < e) & ((1 << m) >= k0) & (t1 <= e)


def _continuous(
    plan: Plan, filters: np.ndarray, state: ConvState, feedback: Any, B: int, C: int
) -> tuple[Any, list]:
    k0 = plan.direct_below
    L = plan.length
    G = max(k0, GROUP)
    if G > MAX_GROUP:
        raise NotImplementedError("direct_below above MAX_GROUP has no compiled rollout")
    levels = sorted(key[2] // 2 for key in plan.spectrum_keys if key[2] // 2 >= G)
    small = [k for k in levels if k < CHUNK]
    F = 0  # no front pad: blocks never start before slot 0
    R = max([CHUNK, *levels])  # back pad: targets (and whole groups) may run past the buffer
    Lb = plan.buffer_length
    i = np.arange(G)
    toe = _taps(filters, i[:, None] - i[None, :]) * (i[:, None] >= i[None, :])  # (C, G, G)
    push = np.transpose(toe * (i[:, None] > i[None, :]), (2, 0, 1))  # (G, C, G): [s, c, j]
    consts: list = [toe, push]
    kinds = []
    for k in levels:
        if k < FFT_FROM:
            r = np.arange(k)
            consts.append(_taps(filters, k + r[:, None] - r[None, :]))  # (C, k, k)
            kinds.append("direct")
        else:
            consts.append(np.asarray(state.spectra[(1, min(2 * k, L), 2 * k)]))
            kinds.append("fft")
    n_small = len(small)

    def conv(block: Array, const: Array, k: int, kind: str) -> Array:
        if kind == "direct":
            return jnp.einsum("bcs,cjs->bcj", block, const)
        n = 2 * k
        z = jnp.fft.irfft(jnp.fft.rfft(block, n=n, axis=-1) * const, n=n, axis=-1)
        return z[..., k - 1 : 2 * k - 1]

    def program(buf: Array, u0: Array, t_start: Any, t_end: Any, one: Any, *cs: Array) -> tuple:
        toe_c, push_c, *lv_c = cs
        one = _i32(one)
        phi0 = toe_c[:, 0, 0]
        t_a, t_b = _i32(t_start), _i32(t_end)
        pad = ((0, 0), (0, 0), (F, R))
        U = jnp.pad(buf, pad)
        A = jnp.pad(buf, pad)
        ys = jnp.zeros((B, C, L + G), buf.dtype)  # whole groups may run past L

        def tasks(U: Array, A: Array, t1: Array, run: Array, which: range) -> Array:
            """The plan's task after step t1 - 1 if its level is one of ``which``.

            Each level is a loop of 0 or 1 trips rather than a branch of a conditional: XLA
            copies whole buffers passed through a conditional but updates loop state in place.
            The trip count is a runtime ``one``: were it provably at most 1, XLA would inline
            the body and run every level's task at every group.
            """
            low = t1 & -t1
            for i in which:
                k = levels[i]

                def add(_: Array, A: Array, k: int = k, i: int = i) -> Array:
                    old = _slice(A, F + t1, k)
                    # Reading the block at an index computed from A keeps XLA from hoisting
                    # the task out of its 0-or-1-trip loop (it would then always run).
                    block = _slice(U, after(F + t1 - k, old[..., :1]), k)
                    return _put(A, old + conv(block, lv_c[i], k, kinds[i]), F + t1)

                trips = jnp.where(run & (t1 < L) & (low == k), one, 0)
                A = lax.fori_loop(0, trips, add, A)
            return A

        def small_task(U: Array, A: Array, t1: Array, run: Array) -> tuple[Array, Array]:
            A = tasks(U, A, t1, run, range(n_small))
            return A, _slice(A, F + t1, G)

        def big_task(U: Array, A: Array, t1: Array, run: Array) -> Array:
            return tasks(U, A, t1, run, range(n_small, len(levels)))

        def group(g: Array, carry: tuple) -> tuple:
            """One full group of G steps, straight-line, then its small task."""
            U, A, u, ys, a = carry
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
            U = _put(U, jnp.stack(us, axis=-1), F + g0)
            ys = _put(ys, jnp.stack(yl, axis=-1), g0)
            A, a = small_task(U, A, g0 + G, jnp.bool_(True))
            return U, A, u, ys, a

        def groups(g_from: Array, g_to: Array, U: Array, A: Array, u: Array, ys: Array) -> tuple:
            a = _slice(A, F + g_from * G, G)
            U, A, u, ys, _ = lax.fori_loop(
                g_from, jnp.maximum(g_from, g_to), group, (U, A, u, ys, a)
            )
            return U, A, u, ys

        def chunk(h: Array, carry: tuple) -> tuple:
            U, A, u, ys = carry
            per = CHUNK // G
            U, A, u, ys = groups(h * per, (h + 1) * per, U, A, u, ys)
            A = big_task(U, A, (h + 1) * CHUNK, jnp.bool_(True))
            return U, A, u, ys

        def partial(g0: Array, j0: Array, j1: Array, U: Array, A: Array, u: Array, ys: Array):
            """Steps j0 .. j1-1 of the group starting at step g0, one at a time."""
            s = jnp.arange(G, dtype=jnp.int32)[None, :]
            j = jnp.arange(G, dtype=jnp.int32)[:, None]
            before = _covered(s, j, j0, k0)
            m_step = jnp.where((s <= j) & ~before, toe_c, 0)
            m_end = jnp.where(_covered(s, j, j1, k0) & ~before & (j >= j1), toe_c, 0)
            aG = _slice(A, F + g0, G)
            uG = _slice(U, F + g0, G)
            uvec = jnp.where(s[0] < j0, uG, 0)

            def step(jj: Array, carry: tuple) -> tuple:
                uvec, u, ys = carry
                uvec = _put(uvec, u[..., None], jj)
                row = lax.dynamic_index_in_dim(m_step, jj, axis=1, keepdims=False)
                y = lax.dynamic_index_in_dim(aG, jj, axis=-1, keepdims=False)
                y = y + jnp.sum(uvec * row, axis=-1)
                ys = _put(ys, y[..., None], g0 + jj)
                return uvec, feedback(y), ys

            uvec, u, ys = lax.fori_loop(j0, jnp.maximum(j0, j1), step, (uvec, u, ys))
            A = _put(A, aG + jnp.einsum("cjs,bcs->bcj", m_end, uvec), F + g0)
            U = _put(U, jnp.where(s[0] < j1, uvec, uG), F + g0)
            return U, A, u, ys

        u = u0
        g_lo = (t_a + G - 1) // G
        g_hi = t_b // G
        h_lo = (t_a + CHUNK - 1) // CHUNK
        h_hi = t_b // CHUNK
        per = CHUNK // G
        # 1. the group t_a starts inside, up to its end or t_b
        g_head = t_a // G
        head_done = (t_a % G != 0) & (g_lo * G <= t_b)
        U, A, u, ys = partial(
            g_head * G, t_a - g_head * G, jnp.minimum(t_b, g_lo * G) - g_head * G, U, A, u, ys
        )
        A, _ = small_task(U, A, g_lo * G, head_done)
        A = big_task(U, A, g_lo * G, head_done)
        # 2. whole groups up to the first chunk boundary
        g2 = jnp.maximum(g_lo, jnp.minimum(g_hi, h_lo * per))
        U, A, u, ys = groups(g_lo, g2, U, A, u, ys)
        A = big_task(U, A, g2 * G, g2 > g_lo)
        # 3. whole chunks
        U, A, u, ys = lax.fori_loop(h_lo, jnp.maximum(h_lo, h_hi), chunk, (U, A, u, ys))
        # 4. whole groups after the last chunk
        g3 = jnp.maximum(g2, h_hi * per)
        U, A, u, ys = groups(g3, g_hi, U, A, u, ys)
        # 5. the group t_b stops inside
        g_tail = jnp.maximum(g_lo, g_hi)
        j_from = jnp.maximum(t_a, g_tail * G) - g_tail * G
        U, A, u, ys = partial(
            g_tail * G, jnp.minimum(j_from, t_b - g_tail * G), t_b - g_tail * G, U, A, u, ys
        )
        q = jnp.arange(Lb, dtype=jnp.int32)
        out = jnp.where(q < t_b, U[..., F : F + Lb], A[..., F : F + Lb])
        return out, ys

    return program, consts


# ---------------------------------------------------------------------- epoched and naive
def _stepwise(
    plan: Plan, filters: np.ndarray, state: ConvState, feedback: Any, B: int, C: int
) -> tuple[Any, list]:
    L, P, o = plan.length, plan.prompt, plan.origin
    Lb = plan.buffer_length
    base = P - o  # slot of step 0
    if plan.schedule == "epoched":
        assert plan.epoch is not None  # every epoched plan has an epoch length
        E = plan.epoch
        phases = [(0, L, max(E - 1, 0))]  # (first step, stop step, window size)
        key = plan.spectrum_keys[0] if plan.num_tasks else None
    else:
        # The window of step t has base + t taps: run in phases of doubling static window size.
        E, key = L, None
        phases, lo, M = [], 0, 2
        while lo < L:
            stop = max(lo + 1, min(L, M - base + 1))
            phases.append((lo, stop, base + stop - 1))  # widest window of the phase
            lo, M = stop, 2 * M
    F = max(M for _, _, M in phases) + 1
    widths = sorted({M for _, _, M in phases})
    consts: list = [filters[:, :1]]  # phi0 as (C, 1)
    consts += [_taps(filters, M - np.arange(M)) for M in widths]  # phi[M], ..., phi[1]
    if key is not None:
        consts.append(np.asarray(state.spectra[key]))
        n, lo_tap = key[2], key[0]

    def program(buf: Array, u0: Array, t_start: Any, t_end: Any, one: Any, *cs: Array) -> tuple:
        phi0 = cs[0][:, 0]
        taps = dict(zip(widths, cs[1 : 1 + len(widths)], strict=True))
        t_a, t_b = _i32(t_start), _i32(t_end)
        pad = ((0, 0), (0, 0), (F, 1))
        U = jnp.pad(buf, pad)
        A = jnp.pad(buf, pad)
        ys = jnp.zeros((B, C, L), buf.dtype)

        def steps(first: Array, stop: Array, M: int, carry: tuple) -> tuple:
            def step(t: Array, carry: tuple) -> tuple:
                U, A, u, ys = carry
                s = F + base + t
                y = lax.dynamic_index_in_dim(A, s, axis=-1, keepdims=False) + phi0 * u
                if M:
                    win = _slice(U, s - M, M)
                    pos = s - M + jnp.arange(M, dtype=jnp.int32)
                    w0 = F + base + (t // E) * E if plan.schedule == "epoched" else F
                    y = y + jnp.sum(jnp.where(pos >= w0, win, 0) * taps[M], axis=-1)
                U = _put(U, u[..., None], after(s, y))
                ys = _put(ys, y[..., None], t)
                return U, A, feedback(y), ys

            return lax.fori_loop(first, jnp.maximum(first, stop), step, carry)

        carry = (U, A, u0, ys)
        if plan.schedule == "naive" or key is None:
            for first, stop, M in phases:
                carry = steps(jnp.maximum(t_a, first), jnp.minimum(t_b, stop), M, carry)
        else:
            M = phases[0][2]

            def epoch(e: Array, carry: tuple) -> tuple:
                carry = steps(jnp.maximum(t_a, e * E), jnp.minimum(t_b, (e + 1) * E), M, carry)
                U, A, u, ys = carry
                t1 = (e + 1) * E
                run = (t1 <= t_b) & (t1 < L)
                mlen = min(n, Lb)
                q = jnp.arange(Lb, dtype=jnp.int32)
                x = jnp.where(q[:mlen] < base + t1, U[..., F : F + mlen], 0)
                z = jnp.fft.irfft(jnp.fft.rfft(x, n=n, axis=-1) * cs[-1], n=n, axis=-1)
                if n < Lb - lo_tap:
                    z = jnp.pad(z, ((0, 0), (0, 0), (0, Lb - lo_tap - n)))
                z = jnp.pad(z[..., : Lb - lo_tap], ((0, 0), (0, 0), (lo_tap, 0)))
                hit = run & (q >= base + t1) & (q < base + jnp.minimum(t1 + E, L))
                A = _put(A, A[..., F : F + Lb] + jnp.where(hit, z, 0), F)
                return U, A, u, ys

            carry = lax.fori_loop(t_a // E, (t_b + E - 1) // E, epoch, carry)
        U, A, _, ys = carry
        q = jnp.arange(Lb, dtype=jnp.int32)
        out = jnp.where(q < base + t_b, U[..., F : F + Lb], A[..., F : F + Lb])
        return out, ys

    return program, consts
