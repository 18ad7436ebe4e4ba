"""The decode loop of :func:`futurefill_jax.decode.greedy`: one traced program over positions.

Every layer gets its channels' outputs of one shared state and the next token is the
``argmax`` of the logits. Positions run in *window blocks* (runs of steps whose local windows
start at the same slot: aligned blocks of ``G`` steps, or for a plan without tasks one block
whose windows grow) on position-major copies (:meth:`DecodeLoop.window_block`); the tasks of
all layers run when a block ends (:meth:`DecodeLoop.deferred`), the rare ones once per chunk.
A plan whose windows form no such blocks runs position by position on the state itself
(:meth:`DecodeLoop.stepwise`).

The carry of every loop is ``(state, layer states, feed token, tokens, kept logits)``, and in
window blocks also the spectrum registers of the shared transforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from futurefill.models.network import BackendWeights, position_pass
from futurefill.plan import Plan

from . import functional as ff
from ._kernels import after
from ._spectral import SpectralRunner, spectral_runner
from ._tasks import TaskRunner, task_runner

__all__ = ["DecodeLoop", "LoopTasks", "WindowBlocks", "loop_weights", "window_blocks"]

Array = Any


def loop_weights(w: BackendWeights, params: tuple[dict, list]) -> BackendWeights:
    """``w`` with the traced parameters ``(top, layers)``; the long convolution is the
    caller's."""
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
class WindowBlocks:
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


def window_blocks(plan: Plan, steps: int) -> WindowBlocks | None:
    """The window blocks of ``plan``'s first ``steps`` steps, or ``None`` when its windows
    form no such blocks (then every position reads and writes the state itself)."""
    if plan.num_tasks:
        ok = plan.tasks_start_windows and plan.window_block_size is not None
        return WindowBlocks(deferred=True) if ok else None
    start = int(plan.window_slot[0])
    if np.any(plan.window_slot != start):
        return None
    phases = tuple(
        (lo, min(hi, steps), M) for lo, hi, M in ff.window_phases(plan, per_octave=4) if lo < steps
    )
    return WindowBlocks(deferred=False, lead=int(plan.slot[0]) - start, phases=phases)


@dataclass(frozen=True)
class LoopTasks:
    """The tasks of window blocks: the classes run when a block ends (``frequent``) or when
    a chunk of ``chunk`` steps ends (``rare``), and the plan's shared transforms (spectrum
    registers carried by the loop; ``None`` when the plan has none in a shape the blocked loop
    serves: then the state's own task tables serve)."""

    runner: TaskRunner
    spectral: SpectralRunner | None
    chunk: int
    rare: list[int]
    frequent: list[int]
    rare_sizes: list[int]
    frequent_sizes: list[int]

    @classmethod
    def of(cls, plan: Plan, deferred: bool, chunk_steps: int) -> LoopTasks:
        """The tasks of ``plan`` (``deferred``: in blocks that run them when they end) with
        chunks of about ``chunk_steps`` steps."""
        G = plan.window_block_size
        chunk = (G or 1) * max(1, chunk_steps // (G or 1))
        spectral = spectral_runner(plan, G) if deferred else None
        runner = task_runner(plan, 0, spectral)
        rare = runner.rare(chunk) if deferred else []
        rare_sizes = [] if spectral is None else spectral.rare(chunk)
        return cls(
            runner=runner,
            spectral=spectral,
            chunk=chunk,
            rare=rare,
            frequent=[j for j in runner.every if j not in rare],
            rare_sizes=rare_sizes,
            frequent_sizes=[]
            if spectral is None
            else [i for i in spectral.every if i not in rare_sizes],
        )

    @property
    def pad(self) -> int:
        """Back padding of the buffer (targets cut at the end write into it)."""
        return 0 if self.spectral is None else max(self.runner.pad, self.spectral.pad)

    def operands(self, plan: Plan, filters: np.ndarray, dtype: Any) -> tuple[tuple, tuple]:
        """The operands of the task classes and shared transforms (empty without shared
        transforms)."""
        if self.spectral is None:
            return (), ()
        return ff.task_operands(plan, filters, dtype, self.runner, self.spectral)


def _row_sums(x: Array) -> Array:
    """``x.sum(axis=1)`` for ``x`` of shape ``(B, m, C)``, as one vector-matrix product per
    batch row: XLA:CPU reduces a non-minor axis element by element (50x slower than this
    product at ``m = 15``, ``C = 1024``; more as ``m`` grows), at full float32 precision."""
    ones = jnp.ones((x.shape[1],), x.dtype)
    highest = jax.lax.Precision.HIGHEST
    return jnp.stack([jnp.matmul(ones, x[b], precision=highest) for b in range(x.shape[0])])


class _Traced(NamedTuple):
    """The traced values every position of the blocked loop reads."""

    weights: BackendWeights
    taps: Array  # (2 W, C): a window's taps are contiguous rows
    task_constants: tuple
    spectral_constants: tuple


class _Block(NamedTuple):
    """One window block as its positions see it."""

    state: ff.StreamState  # at the start of the block
    future: Array  # (B, count, C): the accumulated future, final when the block starts
    first: Any  # its first step
    lead: int  # window slots before ``first``
    steps: int  # its positions


@dataclass(frozen=True)
class DecodeLoop:
    """The decode loop as a traceable function (:meth:`decode`) and its static description.

    Attributes
    ----------
    w : BackendWeights
        The model (its parameters are traced arguments of :meth:`decode`).
    plan : Plan
        The schedule of the shared state.
    slices : tuple of slice
        Channels of each layer.
    batch, new_tokens, steps : int
        Sequences, tokens returned, online positions.
    offset : int
        1 with a prompt (token 0 comes from the prompt's last logits), else 0.
    return_logits, long_conv : bool
        Keep the logits; run the long convolution (``False``: the identity).
    blocks : WindowBlocks or None
        The window blocks (``None``: position by position).
    tasks : LoopTasks
        The tasks of window blocks.
    """

    w: BackendWeights
    plan: Plan
    slices: tuple[slice, ...]
    batch: int
    new_tokens: int
    steps: int
    offset: int
    return_logits: bool
    long_conv: bool
    blocks: WindowBlocks | None
    tasks: LoopTasks

    def decode(
        self,
        params: Any,
        state: ff.StreamState,
        states: Any,
        first: Array,
        logits0: Array,
        shared: tuple[tuple, tuple],
    ) -> tuple[Array, Array]:
        """The tokens ``(B, new_tokens)`` and kept logits from the state after the prompt,
        the layers' states, the first feed token and its logits, and the tasks' operands."""
        weights = loop_weights(self.w, params)
        B, N, V = self.batch, self.new_tokens, logits0.shape[-1]
        tokens = jnp.zeros((B, N), jnp.int32)
        kept = jnp.zeros((B, N, V) if self.return_logits else (0,), logits0.dtype)
        if self.offset:
            tokens = tokens.at[:, 0].set(first)
            if self.return_logits:
                kept = kept.at[:, 0].set(logits0)
        if self.blocks is None:
            return self.stepwise(weights, (state, states, first, tokens, kept))
        return self.blocked(weights, state, (states, first, tokens, kept), shared)

    def emitted(self, s: Array, logits: Array, tokens: Array, kept: Array) -> tuple:
        """The token chosen at position ``s`` from ``logits``, recorded."""
        tok = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        tokens = tokens.at[:, s + self.offset].set(tok)
        if self.return_logits:
            kept = kept.at[:, s + self.offset].set(logits)
        return tok, tokens, kept

    # ------------------------------------------------------------------ on the state itself
    def position(self, weights: BackendWeights, s: Array, carry: tuple, M: int) -> tuple:
        """Position ``s`` on the state itself (plans without window blocks, and the model
        without its long convolution): the state is read once (:func:`ff.known`), every
        layer gets its channels' outputs, all inputs are stored at once; then the tasks
        of the step run."""
        state, states, feed, tokens, kept = carry
        inputs: list[Array] = []
        past = ff.known(state, window=M) if self.long_conv else None

        def conv(layer: int, u: Array) -> Array:
            if not self.long_conv:
                return u
            inputs.append(u)
            return ff.output(state, past, u, self.slices[layer])

        logits, states = position_pass(weights, feed, states, conv)
        if self.long_conv:
            state = ff.store(state, jnp.concatenate(inputs, axis=1), read=past)
            state = ff.advance(state)
        return (state, states, *self.emitted(s, logits, tokens, kept))

    def stepwise(self, weights: BackendWeights, carry: tuple) -> tuple[Array, Array]:
        """Every position on the state itself, in phases of a static window."""
        for lo, hi, M in ff.window_phases(self.plan):
            stop = min(hi, self.steps)

            def body(s: Array, carry: tuple, M: int = M) -> tuple:
                return self.position(weights, s, carry, M)

            carry = jax.lax.fori_loop(lo, jnp.maximum(lo, stop), body, carry)
        return carry[3], carry[4]

    # ------------------------------------------------------------------ window blocks
    def blocked(
        self, weights: BackendWeights, state: ff.StreamState, rest: tuple, shared: tuple
    ) -> tuple[Array, Array]:
        """Every position in window blocks; ``rest`` is the carry after the state."""
        spectral = self.tasks.spectral
        task_constants, spectral_constants = shared if spectral is not None else (state.tasks, ())
        regs: tuple = ()
        if spectral is not None:  # targets cut at the end write into back padding
            pad = self.tasks.pad
            state = state.replace(buffer=jnp.pad(state.buffer, ((0, 0), (0, 0), (0, pad))))
            regs = spectral.registers(self.batch, state.buffer.shape[1], state.buffer.dtype)
        carry = (state, *rest, regs)
        traced = _Traced(weights, state.taps.T, task_constants, spectral_constants)
        assert self.blocks is not None
        if not self.blocks.deferred:  # no tasks: one block, its windows growing
            lead, phases = self.blocks.lead, self.blocks.phases
            return self.window_block(traced, carry, 0, self.steps, lead, phases)[3:5]
        return self.deferred(traced, carry)

    def deferred(self, traced: _Traced, carry: tuple) -> tuple[Array, Array]:
        """Blocks of ``G`` positions (window ``G - 1``): their tasks wait for the end of the
        block (they only write later blocks), the rare ones for the end of their chunk."""
        G, S, tasks = self.plan.window_block_size, self.steps, self.tasks
        assert G is not None
        chunk = tasks.chunk
        per = chunk // G
        whole = [(0, G, G - 1)]

        def block(g: Array, carry: tuple) -> tuple:
            carry = self.window_block(traced, carry, g * G, G, 0, whole)
            return self.run_tasks(traced, carry, g * G, (g + 1) * G, tasks.frequent,
                                  tasks.frequent_sizes)  # fmt: skip

        def whole_chunk(h: Array, carry: tuple) -> tuple:
            carry = jax.lax.fori_loop(h * per, (h + 1) * per, block, carry)
            return self.run_tasks(traced, carry, h * chunk, (h + 1) * chunk, tasks.rare,
                                  tasks.rare_sizes)  # fmt: skip

        n_chunks, n_blocks = S // chunk, S // G
        carry = jax.lax.fori_loop(0, n_chunks, whole_chunk, carry)
        carry = jax.lax.fori_loop(n_chunks * per, n_blocks, block, carry)
        tail = S - n_blocks * G  # the last, partial block: its tasks write past the end
        if tail:
            carry = self.window_block(traced, carry, n_blocks * G, tail, 0, [(0, tail, G - 1)])
        return carry[3], carry[4]

    def window_block(
        self,
        traced: _Traced,
        carry: tuple,
        first: Any,
        count: int,
        lead: int,
        phases: Sequence[tuple[int, int, int]],
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
        slot = jnp.asarray(int(self.plan.slot[0]) + first, jnp.int32)
        buffer = state.buffer
        future = jnp.swapaxes(jax.lax.dynamic_slice_in_dim(buffer, slot, count, 2), 1, 2)
        rows = jnp.zeros((self.batch, lead + count, buffer.shape[1]), buffer.dtype)
        if lead:
            older = jax.lax.dynamic_slice_in_dim(buffer, slot - lead, lead, 2)
            rows = rows.at[:, :lead].set(jnp.swapaxes(older, 1, 2))
        block = _Block(state, future, first, lead, count)
        inner = (rows, states, feed, tokens, kept)
        for lo, hi, M in phases:

            def body(i: Array, inner: tuple, M: int = M) -> tuple:
                return self.block_position(traced, block, i, inner, M)

            inner = jax.lax.fori_loop(lo, hi, body, inner)
        rows = inner[0]
        written = jnp.swapaxes(rows[:, lead:], 1, 2)
        buffer = jax.lax.dynamic_update_slice_in_dim(buffer, written, after(slot, written), 2)
        state = state.replace(buffer=buffer, step=jnp.asarray(first + count, jnp.int32))
        return (state, *inner[1:], regs)

    def block_position(
        self, traced: _Traced, block: _Block, i: Array, inner: tuple, M: int
    ) -> tuple:
        """Position ``i`` of ``block``: its window sum reads ``M`` (static) rows."""
        rows, states, feed, tokens, kept = inner
        r = block.lead + i
        past = jax.lax.dynamic_index_in_dim(block.future, i, 1, keepdims=False)
        if M:
            m = min(M, block.lead + block.steps)
            W = traced.taps.shape[0] // 2
            window_taps = jax.lax.dynamic_slice_in_dim(traced.taps, W - 1 - r, m, 0)
            past = past + _row_sums(rows[:, :m] * window_taps)
        inputs: list[Array] = []

        def conv(layer: int, u: Array) -> Array:
            inputs.append(u)
            return ff.output(block.state, past, u, self.slices[layer])

        logits, states = position_pass(traced.weights, feed, states, conv)
        new = jnp.concatenate(inputs, axis=1)[:, None, :]
        rows = jax.lax.dynamic_update_slice_in_dim(rows, new, r, 1)
        return (rows, states, *self.emitted(block.first + i, logits, tokens, kept))

    def run_tasks(
        self, traced: _Traced, carry: tuple, t0: Any, t1: Any, which: list[int], sizes: list[int]
    ) -> tuple:
        """The tasks of classes ``which`` and shared transforms of ``sizes`` planned after
        steps ``t0 .. t1-1``."""
        spectral = self.tasks.spectral
        state, regs = carry[0], carry[-1]
        buffer = self.tasks.runner.run(None, state.buffer, traced.task_constants, t0, t1, which,
                                       padded=spectral is not None)  # fmt: skip
        if spectral is not None:
            buffer, regs = spectral.run(buffer, buffer, regs, traced.spectral_constants, t0, t1,
                                        sizes)  # fmt: skip
        return (state.replace(buffer=buffer), *carry[1:-1], regs)
