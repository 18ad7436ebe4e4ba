"""Whole-model greedy decoding as compiled XLA programs: the JAX backend's ``generate``.

The reference models' network (:mod:`futurefill.models.network`) is written against the array
API and is pure, so it traces. Two programs, each compiled once per model, plan and shapes:

* the **prompt pass**: every layer in turn, its long convolution the
  :func:`~futurefill_jax.functional.prefill` of its channels of one shared state;
* the **decode loop**: a ``lax.fori_loop`` over positions in which every layer gets its
  channels' outputs of one shared state and the next token is the ``argmax`` of the logits.
  Positions run in *window blocks* (runs of steps whose local windows start at the same slot:
  aligned blocks of ``G`` steps, or for a plan without tasks one block whose windows grow),
  on position-major copies: the block's accumulated future is read once at its start, its
  inputs go to rows of a ``(B, rows, C)`` array that each window sum reads whole, and are
  written back to the buffer at its end. A channel-major window would touch one memory page
  per channel at every position (with XLA:CPU's masked reduction: 115 us per position for
  1024 channels and 16 taps, against 7 us on position-major rows). The FutureFill tasks of
  all layers run together when a block ends (they only write blocks not yet started), and
  the classes whose tasks all come at the end of a chunk of about ``CHUNK`` steps once per
  chunk, like the compiled rollout. A plan whose windows form
  no such blocks runs position by position on the state itself, in phases of a static window
  (:func:`~futurefill_jax.functional.window_phases`).

``long_conv=False`` compiles the same programs with the long convolution replaced by the
identity: the time of everything else, from which the Amdahl ceiling of a schedule follows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from futurefill.models.decode import DecodableModel, online_steps
from futurefill.models.network import BackendWeights, position_pass, sequence_pass
from futurefill.plan import PlanSpec, make_plan, resolve_spec

from . import functional as ff
from ._kernels import after
from ._program import CHUNK
from ._spectral import spectral_runner
from ._tasks import task_runner

__all__ = ["CompiledGeneration", "greedy"]

Array = Any


@dataclass(frozen=True)
class CompiledGeneration:
    """The tokens of a compiled greedy generation and where the time went.

    Attributes
    ----------
    tokens : ndarray of int64, shape (B, new_tokens)
    logits : ndarray, shape (B, new_tokens, V), or None
    compile_seconds : float
        Tracing and compiling both programs (reported apart, never in the other figures).
    prefill_seconds, decode_seconds : float
        Running the prompt pass and the decode loop, compiled.
    """

    tokens: np.ndarray
    logits: np.ndarray | None
    compile_seconds: float
    prefill_seconds: float
    decode_seconds: float


def _stacked_filters(model: DecodableModel, taps: int) -> np.ndarray:
    filters = np.concatenate([f[:, :taps] for f in model.host_filters()], axis=0)
    if filters.shape[1] < taps:
        filters = np.pad(filters, ((0, 0), (0, taps - filters.shape[1])))
    return filters


def _weights(w: BackendWeights, params: tuple[dict, list]) -> BackendWeights:
    top, layers = params
    return BackendWeights(
        cfg=w.cfg,
        mixer=w.mixer,
        xp=w.xp,
        device=None,
        top=top,
        layers=layers,
        filters=[None] * len(layers),  # the long convolution is the caller's
    )


@dataclass(frozen=True)
class _WindowBlocks:
    """How the decode loop runs a plan's positions in window blocks (runs of steps whose
    local windows start at the same slot).

    ``deferred``: blocks of ``plan.window_block_size`` steps whose tasks only write blocks not
    yet started (so they run when a block ends); otherwise a plan without tasks, one block
    whose windows start ``lead`` slots before its first step and grow, read in ``phases``
    (:func:`~futurefill_jax.functional.window_phases`).
    """

    deferred: bool
    lead: int = 0
    phases: tuple[tuple[int, int, int], ...] = ()


def _row_sums(x: Array) -> Array:
    """``x.sum(axis=1)`` for ``x`` of shape ``(B, m, C)``, as one vector-matrix product per
    batch row: XLA:CPU reduces a non-minor axis element by element (50x slower than this
    product at ``m = 15``, ``C = 1024``; more as ``m`` grows)."""
    ones = jnp.ones((x.shape[1],), x.dtype)
    return jnp.stack([ones @ x[b] for b in range(x.shape[0])])


def _window_blocks(plan: Any, steps: int) -> _WindowBlocks | None:
    """The window blocks of ``plan``'s first ``steps`` steps, or ``None`` when its windows
    form no such blocks (then every position reads and writes the state itself)."""
    if plan.num_tasks:
        ok = plan.tasks_start_windows and plan.window_block_size is not None
        return _WindowBlocks(deferred=True) if ok else None
    start = int(plan.window_slot[0])
    if np.any(plan.window_slot != start):
        return None
    phases = tuple(
        (lo, min(hi, steps), M) for lo, hi, M in ff.window_phases(plan, per_octave=4) if lo < steps
    )
    return _WindowBlocks(deferred=False, lead=int(plan.slot[0]) - start, phases=phases)


def greedy(
    model: DecodableModel,
    prompt: np.ndarray | None,
    new_tokens: int,
    *,
    executor: Any,
    schedule: str | PlanSpec = "continuous",
    batch: int = 1,
    return_logits: bool = False,
    long_conv: bool = True,
    repeats: int = 1,
) -> CompiledGeneration:
    """Greedy generation of ``new_tokens`` tokens as two compiled programs.

    Parameters
    ----------
    model : DecodableModel
        A reference model (:class:`futurefill.models.ConvLM`).
    prompt : ndarray of int, shape (B, P), or None
        Checked token ids (``None``: start from the start token).
    new_tokens : int
        Tokens to generate, ``>= 1``.
    executor : JaxExecutor
        The JAX executor (device, dtype rules).
    schedule : str or PlanSpec
        Online convolution schedule.
    batch : int
        Sequences, when there is no prompt.
    return_logits : bool
        Also return the logits each token was chosen from.
    long_conv : bool
        ``False``: replace the long convolution by the identity (to time the rest).
    repeats : int
        Runs of each compiled program (they are pure); the times are the best run's, so a
        benchmark passes ``repeats >= 2`` to time them warm.

    Returns
    -------
    CompiledGeneration
    """
    cfg = model.config
    P = 0 if prompt is None else int(prompt.shape[1])
    B = batch if prompt is None else int(prompt.shape[0])
    N = int(new_tokens)
    S = online_steps(P, N)
    w = model.backend_weights(executor)
    dtype = executor.resolve_dtype(cfg.dtype)
    filters = _stacked_filters(model, P + max(S, 1))
    spec = resolve_spec(schedule, executor, batch=B, channels=filters.shape[0], dtype=dtype)
    plan = make_plan(max(S, 1), spec, prompt=P)
    state = ff.init(plan, filters, batch=B, dtype=dtype)
    layout_base = state.layout.base
    slices = tuple(model.channel_slices)
    params = (w.top, w.layers)
    V = w.top["head"].shape[-1]

    def conv_of(holder: list, call: Any) -> Any:
        def conv(layer: int, u: Array) -> Array:
            if not long_conv:
                return u
            holder[0], y = call(holder[0], u, slices[layer])
            return y

        return conv

    def prompt_pass(params: Any, state: ff.StreamState, tokens: Array) -> tuple:
        holder = [state]
        result = sequence_pass(_weights(w, params), tokens, long_conv=conv_of(holder, ff.prefill))
        return holder[0], result.states, result.logits[:, -1, :]

    blocks = _window_blocks(plan, S) if long_conv else None
    G = plan.window_block_size
    deferred = blocks is not None and blocks.deferred
    chunk = (G or 1) * max(1, CHUNK // (G or 1))
    # The plan's shared transforms (spectrum registers carried by the loop), when it has any
    # in a shape the blocked loop serves; the other tasks run task by task.
    spectral = spectral_runner(plan, G) if deferred else None
    runner = task_runner(plan, 0, spectral)
    # (without them, the state's own task tables serve)
    shared = (
        ((), ()) if spectral is None else ff.task_operands(plan, filters, dtype, runner, spectral)
    )
    pad = 0 if spectral is None else max(runner.pad, spectral.pad)
    rare = runner.rare(chunk) if deferred else []
    frequent = [j for j in runner.every if j not in rare]
    rare_sizes = [] if spectral is None else spectral.rare(chunk)
    frequent_sizes = [] if spectral is None else [
        i for i in spectral.every if i not in rare_sizes
    ]  # fmt: skip

    def decode(
        params: Any,
        state: ff.StreamState,
        states: Any,
        first: Array,
        logits0: Array,
        shared: tuple[tuple, tuple],
    ) -> tuple[Array, Array]:
        weights = _weights(w, params)
        offset = 1 if P else 0  # with a prompt, token 0 comes from the prompt's last logits
        tokens = jnp.zeros((B, N), jnp.int32)
        kept = jnp.zeros((B, N, V) if return_logits else (0,), logits0.dtype)
        if P:
            tokens = tokens.at[:, 0].set(first)
            if return_logits:
                kept = kept.at[:, 0].set(logits0)

        def emitted(s: Array, logits: Array, tokens: Array, kept: Array) -> tuple:
            tok = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            tokens = tokens.at[:, s + offset].set(tok)
            if return_logits:
                kept = kept.at[:, s + offset].set(logits)
            return tok, tokens, kept

        def position(s: Array, carry: tuple, M: int) -> tuple:
            """Position ``s`` on the state itself (plans without window blocks, and the model
            without its long convolution): the state is read once (:func:`ff.known`), every
            layer gets its channels' outputs, all inputs are stored at once; then the tasks
            of the step run."""
            state, states, feed, tokens, kept = carry
            inputs: list[Array] = []
            past = ff.known(state, window=M) if long_conv else None

            def conv(layer: int, u: Array) -> Array:
                if not long_conv:
                    return u
                inputs.append(u)
                return ff.output(state, past, u, slices[layer])

            logits, states = position_pass(weights, feed, states, conv)
            if long_conv:
                state = ff.store(state, jnp.concatenate(inputs, axis=1), read=past)
                state = ff.advance(state)
            return (state, states, *emitted(s, logits, tokens, kept))

        def steps(lo: Any, hi: Any, M: int, carry: tuple) -> tuple:
            def body(s: Array, carry: tuple) -> tuple:
                return position(s, carry, M)

            return jax.lax.fori_loop(lo, jnp.maximum(lo, hi), body, carry)

        if blocks is None:
            stepped = (state, states, first, tokens, kept)
            for lo, hi, M in ff.window_phases(plan):
                stepped = steps(lo, min(hi, S), M, stepped)
            return stepped[3], stepped[4]

        task_constants, spectral_constants = shared if spectral is not None else (state.tasks, ())
        regs: tuple = ()
        if spectral is not None:  # targets cut at the end write into back padding
            state = state.replace(buffer=jnp.pad(state.buffer, ((0, 0), (0, 0), (0, pad))))
            regs = spectral.registers(B, state.buffer.shape[1], state.buffer.dtype)
        carry = (state, states, first, tokens, kept, regs)

        taps = state.taps.T  # (2 W, C): a window's taps are contiguous rows
        W = taps.shape[0] // 2

        def window_block(
            carry: tuple, first: Any, count: int, lead: int, phases: Sequence[tuple[int, int, int]]
        ) -> tuple:
            """Positions ``first .. first + count - 1`` (``count`` static), whose windows all
            start ``lead`` (static) slots before ``first``, on a position-major copy.

            The block's accumulated future is final when it starts (tasks only write blocks
            not yet started), so it is read once, transposed; the window's inputs go to rows
            of a ``(B, lead + count, C)`` array (rows not yet written are zero, so the window
            sum needs no mask, and reads whole rows: a channel-major window touches one memory
            page per channel); the inputs are written back to the buffer when the block ends.
            ``phases`` give the static number of rows each position's window sum reads.
            """
            state, states, feed, tokens, kept, regs = carry
            slot = jnp.asarray(layout_base + first, jnp.int32)
            buffer = state.buffer
            future = jnp.swapaxes(jax.lax.dynamic_slice_in_dim(buffer, slot, count, 2), 1, 2)
            rows = jnp.zeros((B, lead + count, buffer.shape[1]), buffer.dtype)
            if lead:
                older = jax.lax.dynamic_slice_in_dim(buffer, slot - lead, lead, 2)
                rows = rows.at[:, :lead].set(jnp.swapaxes(older, 1, 2))

            def at(i: Array, inner: tuple, M: int) -> tuple:
                rows, states, feed, tokens, kept = inner
                r = lead + i
                past = jax.lax.dynamic_index_in_dim(future, i, 1, keepdims=False)
                if M:
                    m = min(M, lead + count)
                    window_taps = jax.lax.dynamic_slice_in_dim(taps, W - 1 - r, m, 0)
                    past = past + _row_sums(rows[:, :m] * window_taps)
                inputs: list[Array] = []

                def conv(layer: int, u: Array) -> Array:
                    inputs.append(u)
                    return ff.output(state, past, u, slices[layer])

                logits, states = position_pass(weights, feed, states, conv)
                new = jnp.concatenate(inputs, axis=1)[:, None, :]
                rows = jax.lax.dynamic_update_slice_in_dim(rows, new, r, 1)
                return (rows, states, *emitted(first + i, logits, tokens, kept))

            inner = (rows, states, feed, tokens, kept)
            for lo, hi, M in phases:
                inner = jax.lax.fori_loop(lo, hi, lambda i, c, M=M: at(i, c, M), inner)
            rows = inner[0]
            written = jnp.swapaxes(rows[:, lead:], 1, 2)
            buffer = jax.lax.dynamic_update_slice_in_dim(buffer, written, after(slot, written), 2)
            state = state.replace(buffer=buffer, step=jnp.asarray(first + count, jnp.int32))
            return (state, *inner[1:], regs)

        def run_tasks(carry: tuple, t0: Any, t1: Any, which: list[int], sizes: list[int]) -> tuple:
            state, regs = carry[0], carry[-1]
            buffer = runner.run(None, state.buffer, task_constants, t0, t1, which,
                                padded=spectral is not None)  # fmt: skip
            if spectral is not None:
                buffer, regs = spectral.run(buffer, buffer, regs, spectral_constants, t0, t1,
                                            sizes)  # fmt: skip
            return (state.replace(buffer=buffer), *carry[1:-1], regs)

        if not blocks.deferred:  # no tasks: one block, its windows growing
            return window_block(carry, 0, S, blocks.lead, blocks.phases)[3:5]

        # Blocks of G positions (window G - 1): their tasks wait for the end of the block
        # (they only write later blocks), the rare ones for the end of their chunk.
        assert G is not None
        per = chunk // G
        whole = [(0, G, G - 1)]

        def block(g: Array, carry: tuple) -> tuple:
            carry = window_block(carry, g * G, G, 0, whole)
            return run_tasks(carry, g * G, (g + 1) * G, frequent, frequent_sizes)

        def whole_chunk(h: Array, carry: tuple) -> tuple:
            carry = jax.lax.fori_loop(h * per, (h + 1) * per, block, carry)
            return run_tasks(carry, h * chunk, (h + 1) * chunk, rare, rare_sizes)

        n_chunks, n_blocks = S // chunk, S // G
        carry = jax.lax.fori_loop(0, n_chunks, whole_chunk, carry)
        carry = jax.lax.fori_loop(n_chunks * per, n_blocks, block, carry)
        tail = S - n_blocks * G  # the last, partial block: its tasks write past the end
        if tail:
            carry = window_block(carry, n_blocks * G, tail, 0, [(0, tail, G - 1)])
        return carry[3], carry[4]

    start = time.perf_counter()
    prompt_program = jax.jit(prompt_pass)
    decode_program = jax.jit(decode)
    tok_dtype = jnp.int32
    if P:
        tokens_in = jnp.asarray(prompt, tok_dtype)
        lowered = prompt_program.lower(params, state, tokens_in).compile()
        shapes = jax.eval_shape(prompt_pass, params, state, tokens_in)
        first_shape = jax.ShapeDtypeStruct((B,), tok_dtype)
        decoded = decode_program.lower(
            params, state, shapes[1], first_shape, shapes[2], shared
        ).compile()
    else:
        states0 = [w.mixer.initial_state(lw, B, w.xp, w.device) for lw in w.layers]
        first = jnp.full((B,), cfg.bos, tok_dtype)
        logits0 = jnp.zeros((B, V), dtype)
        decoded = decode_program.lower(params, state, states0, first, logits0, shared).compile()
    compile_seconds = time.perf_counter() - start

    prefill_seconds = decode_seconds = float("inf")
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        if P:
            prompted, states0, logits0 = lowered(params, state, tokens_in)
            first = jnp.argmax(logits0, axis=-1).astype(tok_dtype)
            jax.block_until_ready(first)
        else:
            prompted = state
        prefill_seconds = min(prefill_seconds, time.perf_counter() - start)
        start = time.perf_counter()
        tokens, kept = jax.block_until_ready(
            decoded(params, prompted, states0, first, logits0, shared)
        )
        decode_seconds = min(decode_seconds, time.perf_counter() - start)
    tokens = np.asarray(tokens).astype(np.int64)
    return CompiledGeneration(
        tokens=tokens,
        logits=np.asarray(kept) if return_logits else None,
        compile_seconds=compile_seconds,
        prefill_seconds=prefill_seconds,
        decode_seconds=decode_seconds,
    )
