"""Whole-model greedy decoding as compiled XLA programs: the JAX backend's ``generate``.

The reference models' network (:mod:`futurefill.models.network`) is written against the array
API and is pure, so it traces. Two programs, each compiled once per model, plan and shapes:

* the **prompt pass**: every layer in turn, its long convolution the
  :func:`~futurefill_jax.functional.prefill` of its channels of one shared state;
* the **decode loop** (:class:`~futurefill_jax._decode_loop.DecodeLoop`): a ``lax.fori_loop``
  over positions in which every layer gets its channels' outputs of one shared state and the
  next token is the ``argmax`` of the logits. Positions run in *window blocks* (runs of steps
  whose local windows start at the same slot: aligned blocks of ``G`` steps, or for a plan
  without tasks one block whose windows grow), on position-major copies: the block's
  accumulated future is read once at its start, its inputs go to rows of a ``(B, rows, C)``
  array that each window sum reads whole, and are written back to the buffer at its end. A
  channel-major window would touch one memory page per channel at every position (with
  XLA:CPU's masked reduction: 115 us per position for 1024 channels and 16 taps, against 7 us
  on position-major rows). The FutureFill tasks of all layers run together when a block ends
  (they only write blocks not yet started), and the classes whose tasks all come at the end of
  a chunk of about ``CHUNK`` steps once per chunk, like the compiled rollout. A plan whose
  windows form no such blocks runs position by position on the state itself, in phases of a
  static window (:func:`~futurefill_jax.functional.window_phases`).

``long_conv=False`` compiles the same programs with the long convolution replaced by the
identity: the time of everything else, from which the Amdahl ceiling of a schedule follows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from futurefill.models.decode import DecodableModel, online_steps
from futurefill.models.network import BackendWeights, sequence_pass
from futurefill.plan import PlanSpec, make_plan, resolve_spec

from . import functional as ff
from ._decode_loop import DecodeLoop, LoopTasks, loop_weights, window_blocks
from ._program import CHUNK

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


def _prompt_pass(w: BackendWeights, slices: tuple[slice, ...], long_conv: bool) -> Any:
    """The prompt pass as a traceable function ``(params, state, tokens) -> (state, layer
    states, last logits)``: every layer in turn, its long convolution the prefill of its
    channels of the shared state."""

    def prompt_pass(params: Any, state: ff.StreamState, tokens: Array) -> tuple:
        holder = [state]

        def conv(layer: int, u: Array) -> Array:
            if not long_conv:
                return u
            holder[0], y = ff.prefill(holder[0], u, slices[layer])
            return y

        result = sequence_pass(loop_weights(w, params), tokens, long_conv=conv)
        return holder[0], result.states, result.logits[:, -1, :]

    return prompt_pass


def _compile(
    prompt_pass: Any, loop: DecodeLoop, args: tuple, prompt: Array | None, start: tuple
) -> tuple[Any, Any]:
    """The compiled prompt pass (``None`` without a prompt) and decode loop, for ``args =
    (params, state, shared)``; ``start`` is ``(layer states, first token, its logits)``
    without a prompt (with one, the prompt pass gives them).

    Every matrix product of both, the model's included, is traced at full float32 precision
    (on GPUs, JAX's default precision multiplies float32 in TF32).
    """
    params, state, shared = args
    decode_program = jax.jit(loop.decode)
    with jax.default_matmul_precision("highest"):
        if prompt is None:
            return None, decode_program.lower(params, state, *start, shared).compile()
        prefill = jax.jit(prompt_pass).lower(params, state, prompt).compile()
        shapes = jax.eval_shape(prompt_pass, params, state, prompt)
        first_shape = jax.ShapeDtypeStruct((loop.batch,), jnp.int32)
        decoded = decode_program.lower(
            params, state, shapes[1], first_shape, shapes[2], shared
        ).compile()
    return prefill, decoded


def _best_runs(
    prefill: Any, decoded: Any, args: tuple, prompt: Array | None, start: tuple, repeats: int
) -> tuple[Array, Array, float, float]:
    """Tokens, kept logits, and the best prompt-pass and decode times of ``repeats`` runs of
    the compiled programs (see :func:`_compile` for the arguments)."""
    params, state, shared = args
    prefill_seconds = decode_seconds = float("inf")
    for _ in range(max(repeats, 1)):
        begin = time.perf_counter()
        if prefill is not None:
            prompted, states0, logits0 = prefill(params, state, prompt)
            first = jnp.argmax(logits0, axis=-1).astype(jnp.int32)
            jax.block_until_ready(first)
            start = (states0, first, logits0)
        else:
            prompted = state
        prefill_seconds = min(prefill_seconds, time.perf_counter() - begin)
        begin = time.perf_counter()
        tokens, kept = jax.block_until_ready(decoded(params, prompted, *start, shared))
        decode_seconds = min(decode_seconds, time.perf_counter() - begin)
    return tokens, kept, prefill_seconds, decode_seconds


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
        The JAX executor (device, dtype rules): the programs' operands are placed on its
        device, and every matrix product runs at full float32 precision.
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
    S = online_steps(P, int(new_tokens))
    w = model.backend_weights(executor)
    dtype = executor.resolve_dtype(cfg.dtype)
    filters = _stacked_filters(model, P + max(S, 1))
    spec = resolve_spec(schedule, executor, batch=B, channels=filters.shape[0], dtype=dtype)
    plan = make_plan(max(S, 1), spec, prompt=P)
    state = executor.place(ff.init(plan, filters, batch=B, dtype=dtype))
    blocks = window_blocks(plan, S) if long_conv else None
    tasks = LoopTasks.of(plan, blocks is not None and blocks.deferred, CHUNK)
    loop = DecodeLoop(
        w=w, plan=plan, slices=tuple(model.channel_slices), batch=B, new_tokens=int(new_tokens),
        steps=S, offset=1 if P else 0, return_logits=return_logits, long_conv=long_conv,
        blocks=blocks, tasks=tasks,
    )  # fmt: skip
    args = ((w.top, w.layers), state, executor.place(tasks.operands(plan, filters, dtype)))

    begin = time.perf_counter()
    tokens_in = None if prompt is None else executor.place(jnp.asarray(prompt, jnp.int32))
    start: tuple = ()
    if prompt is None:
        states0 = [w.mixer.initial_state(lw, B, w.xp, w.device) for lw in w.layers]
        logits0 = jnp.zeros((B, w.top["head"].shape[-1]), dtype)
        start = executor.place((states0, jnp.full((B,), cfg.bos, jnp.int32), logits0))
    prefill, decoded = _compile(_prompt_pass(w, loop.slices, long_conv), loop, args, tokens_in,
                                start)  # fmt: skip
    compile_seconds = time.perf_counter() - begin

    tokens, kept, prefill_seconds, decode_seconds = _best_runs(
        prefill, decoded, args, tokens_in, start, repeats
    )
    return CompiledGeneration(
        tokens=np.asarray(tokens).astype(np.int64),
        logits=np.asarray(kept) if return_logits else None,
        compile_seconds=compile_seconds,
        prefill_seconds=prefill_seconds,
        decode_seconds=decode_seconds,
    )
