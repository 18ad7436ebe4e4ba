"""Whole-model greedy decoding as compiled XLA programs: the JAX backend's ``generate``.

The reference models' network (:mod:`futurefill.models.network`) is written against the array
API and is pure, so it traces. Two programs, each compiled once per model, plan and shapes:

* the **prompt pass**: every layer in turn, its long convolution the
  :func:`~futurefill_jax.functional.prefill` of its channels of one shared state;
* the **decode loop**: a ``lax.fori_loop`` over positions in which every layer
  :func:`~futurefill_jax.functional.emit`\\ s its channels, one
  :func:`~futurefill_jax.functional.advance` fills the future of all layers, and the next token
  is the ``argmax`` of the logits. The loop runs in phases of a static local window
  (:func:`~futurefill_jax.functional.window_phases`), so the naive schedule reads only as far
  back as it must, like every schedule.

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
from futurefill.models.network import BackendWeights, position_pass, sequence_pass
from futurefill.plan import PlanSpec, make_plan, resolve_spec

from . import functional as ff

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

    def decode(params: Any, state: ff.StreamState, states: Any, first: Array, logits0: Array):
        weights = _weights(w, params)
        offset = 1 if P else 0  # with a prompt, token 0 comes from the prompt's last logits
        tokens = jnp.zeros((B, N), jnp.int32)
        kept = jnp.zeros((B, N, V) if return_logits else (0,), logits0.dtype)
        if P:
            tokens = tokens.at[:, 0].set(first)
            if return_logits:
                kept = kept.at[:, 0].set(logits0)
        carry = (state, states, first, tokens, kept)
        for lo, hi, M in ff.window_phases(plan):
            hi = min(hi, S)
            if lo >= hi:
                continue

            def body(s: Array, carry: tuple, M: int = M) -> tuple:
                state, states, feed, tokens, kept = carry
                holder = [state]

                def emit(st: Any, u: Array, ch: slice) -> tuple:
                    return ff.emit(st, u, ch, window=M)

                logits, states = position_pass(weights, feed, states, conv_of(holder, emit))
                state = ff.advance(holder[0]) if long_conv else holder[0]
                tok = jnp.argmax(logits, axis=-1).astype(jnp.int32)
                tokens = tokens.at[:, s + offset].set(tok)
                if return_logits:
                    kept = kept.at[:, s + offset].set(logits)
                return state, states, tok, tokens, kept

            carry = jax.lax.fori_loop(lo, hi, body, carry)
        return carry[3], carry[4]

    start = time.perf_counter()
    prompt_program = jax.jit(prompt_pass)
    decode_program = jax.jit(decode)
    tok_dtype = jnp.int32
    if P:
        tokens_in = jnp.asarray(prompt, tok_dtype)
        lowered = prompt_program.lower(params, state, tokens_in).compile()
        state_shape = jax.eval_shape(prompt_pass, params, state, tokens_in)
        states0, logits0 = state_shape[1], state_shape[2]
        first = jax.ShapeDtypeStruct((B,), tok_dtype)
        decoded = decode_program.lower(params, state, states0, first, logits0).compile()
    else:
        states0 = [w.mixer.initial_state(lw, B, w.xp, w.device) for lw in w.layers]
        first = jnp.full((B,), cfg.bos, tok_dtype)
        logits0 = jnp.zeros((B, V), dtype)
        decoded = decode_program.lower(params, state, states0, first, logits0).compile()
    compile_seconds = time.perf_counter() - start

    start = time.perf_counter()
    if P:
        state, states0, logits0 = lowered(params, state, tokens_in)
        first = jnp.argmax(logits0, axis=-1).astype(tok_dtype)
        jax.block_until_ready(first)
    prefill_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tokens, kept = decoded(params, state, states0, first, logits0)
    tokens = np.asarray(jax.block_until_ready(tokens)).astype(np.int64)
    decode_seconds = time.perf_counter() - start
    return CompiledGeneration(
        tokens=tokens,
        logits=np.asarray(kept) if return_logits else None,
        compile_seconds=compile_seconds,
        prefill_seconds=prefill_seconds,
        decode_seconds=decode_seconds,
    )
