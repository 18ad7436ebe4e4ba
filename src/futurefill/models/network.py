"""The network as pure functions of its weights: a whole sequence at once, or one position.

Both passes share every position-wise computation; they differ only in how the long
convolution runs (offline FFT here, an online convolution supplied by the caller for one
position). Written against the array API: ``xp`` is the weights' namespace.
:func:`convert_weights` moves host weights to a backend, once per backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._compat import device_of
from ..executor import Executor
from ..ops import causal_conv
from .config import ModelConfig
from .layers import embed, mlp, rms_norm
from .mixer_base import Mixer, State

__all__ = [
    "BackendWeights",
    "PassPrograms",
    "convert_weights",
    "head_logits",
    "layer_params",
    "layer_position_inputs",
    "layer_position_outputs",
    "layer_sequence_inputs",
    "layer_sequence_outputs",
    "position_pass",
    "sequence_pass",
]

Array = Any


@dataclass(frozen=True)
class BackendWeights:
    """A model's weights converted to one backend (namespace, device, dtype).

    Attributes
    ----------
    cfg : ModelConfig
        The model configuration.
    mixer : Mixer
        The layers' mixer.
    xp : namespace
        Array namespace of every array below.
    device : Any
        Their device.
    top : dict
        ``embed`` ``(V, D)``, ``norm`` ``(D,)``, ``head`` ``(D, V)``.
    layers : list of dict
        Per layer, the weights with the ``layers.{i}.`` prefix removed.
    filters : list of arrays
        Per layer, the long filters ``(C_i, max_len)`` of the offline convolution.
    """

    cfg: ModelConfig
    mixer: Mixer
    xp: Any
    device: Any
    top: dict[str, Array]
    layers: list[dict[str, Array]]
    filters: list[Array]


def layer_params(params: Mapping[str, np.ndarray], layer: int) -> dict[str, np.ndarray]:
    """The weights of one layer, with the ``layers.{layer}.`` prefix removed."""
    prefix = f"layers.{layer}."
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def convert_weights(
    cfg: ModelConfig,
    mixer: Mixer,
    params: Mapping[str, np.ndarray],
    filters: Sequence[np.ndarray],
    executor: Executor,
) -> BackendWeights:
    """Host weights and long filters converted to ``executor``'s arrays in the model dtype.

    Parameters
    ----------
    cfg : ModelConfig
    mixer : Mixer
    params : mapping of str to ndarray
        Host weights (see :func:`futurefill.models.params.init_params`); read-only arrays are
        copied before a backend that would share their memory sees them.
    filters : sequence of ndarray
        Per layer, the host long filters ``(C_i, max_len)``.
    executor : Executor
        The backend.

    Returns
    -------
    BackendWeights
    """
    dtype = executor.resolve_dtype(cfg.dtype)

    def convert(a: np.ndarray) -> Array:
        return executor.asarray(a if executor.is_native(a) else np.array(a), dtype=dtype)

    top = {k: convert(params[k]) for k in ("embed", "norm", "head")}
    return BackendWeights(
        cfg=cfg,
        mixer=mixer,
        xp=executor.xp,
        device=device_of(top["embed"]),
        top=top,
        layers=[
            {k: convert(v) for k, v in layer_params(params, i).items()} for i in range(cfg.layers)
        ],
        filters=[convert(f) for f in filters],
    )


@dataclass
class SequenceResult:
    """What a whole-sequence pass produces besides the logits (used to start generation).

    Attributes
    ----------
    logits : array, shape (B, T, V)
    conv_inputs : list of arrays, shape (B, C_i, T)
        Per layer, the inputs of its long convolution (time last).
    states : list of tuples
        Per layer, the mixer state after the last position.
    """

    logits: Array
    conv_inputs: list[Array]
    states: list[State]


def layer_sequence_inputs(
    mixer: Mixer, eps: float, xp: Any, lw: dict[str, Array], x: Array, state: State | None
) -> tuple[Array, Array, Array, State]:
    """One layer's work before its long convolution over a sequence ``x`` ``(B, T, D)``:
    the convolution's inputs with time last ``(B, C, T)`` and time second ``(B, T, C)``, what
    the outputs need besides, and the mixer state after the sequence (``state``: before it,
    ``None`` at the start)."""
    u, aux, after = mixer.sequence_inputs(lw, rms_norm(x, lw["norm1"], eps, xp), xp, state)
    return xp.permute_dims(u, (0, 2, 1)), u, aux, after


def layer_sequence_outputs(
    mixer: Mixer,
    eps: float,
    xp: Any,
    lw: dict[str, Array],
    x: Array,
    y_t: Array,
    u: Array,
    aux: Array,
) -> Array:
    """One layer's work after its long convolution ``y_t`` ``(B, C, T)`` over a sequence:
    the residual stream ``(B, T, D)`` leaving the layer."""
    return layer_position_outputs(mixer, eps, xp, lw, x, xp.permute_dims(y_t, (0, 2, 1)), u, aux)


@dataclass(frozen=True)
class PassPrograms:
    """The position-wise work of :func:`sequence_pass` or :func:`position_pass`, as the
    functions themselves or compiled (the same functions through
    :meth:`futurefill.executor.Executor.compile_function`).

    Attributes
    ----------
    enter : callable
        ``enter(embed_table, tokens) -> x``.
    inputs : callable
        ``inputs(layer_weights, x, state) -> (u, aux, state)`` at one position
        (:func:`layer_position_inputs`), ``-> (u_t, u, aux, state)`` over sequences
        (:func:`layer_sequence_inputs`).
    outputs : callable
        ``outputs(layer_weights, x, y, u, aux) -> x`` (:func:`layer_position_outputs`, or
        with ``y_t`` :func:`layer_sequence_outputs`).
    head : callable
        ``head(top, x) -> logits`` (:func:`head_logits`).
    """

    enter: Callable[..., Any]
    inputs: Callable[..., Any]
    outputs: Callable[..., Any]
    head: Callable[..., Any]

    @classmethod
    @functools.lru_cache(maxsize=32)
    def for_sequences(cls, mixer: Mixer, eps: float, xp: Any) -> PassPrograms:
        """The functions of :func:`sequence_pass` for ``mixer``, ``eps`` and ``xp`` (built
        once per combination: the passes ask for them at every call)."""
        return cls._of(mixer, eps, xp, layer_sequence_inputs, layer_sequence_outputs)

    @classmethod
    @functools.lru_cache(maxsize=32)
    def for_positions(cls, mixer: Mixer, eps: float, xp: Any) -> PassPrograms:
        """The functions of :func:`position_pass` for ``mixer``, ``eps`` and ``xp`` (built
        once per combination)."""
        return cls._of(mixer, eps, xp, layer_position_inputs, layer_position_outputs)

    @classmethod
    def _of(
        cls,
        mixer: Mixer,
        eps: float,
        xp: Any,
        inputs: Callable[..., Any],
        outputs: Callable[..., Any],
    ) -> PassPrograms:
        return cls(
            enter=lambda table, tokens: embed(table, tokens, xp),
            inputs=lambda lw, x, state: inputs(mixer, eps, xp, lw, x, state),
            outputs=lambda lw, x, y, u, aux: outputs(mixer, eps, xp, lw, x, y, u, aux),
            head=lambda top, x: head_logits(eps, xp, top, x),
        )

    def compiled(self, compile_function: Callable[..., Any]) -> PassPrograms:
        """Each function passed through ``compile_function`` (e.g. ``jax.jit``)."""
        return PassPrograms(
            *(compile_function(f) for f in (self.enter, self.inputs, self.outputs, self.head))
        )


def sequence_pass(
    w: BackendWeights,
    tokens: Array,
    *,
    keep_inputs: bool = False,
    long_conv: Callable[[int, Array], Array] | None = None,
    states: Sequence[State] | None = None,
    programs: PassPrograms | None = None,
) -> SequenceResult:
    """Run the network on whole sequences ``tokens`` ``(B, T)``.

    Parameters
    ----------
    w : BackendWeights
        Weights on the backend of ``tokens``.
    tokens : integer array, shape (B, T)
    keep_inputs : bool
        Keep every layer's long-convolution inputs in the result.
    long_conv : callable, optional
        ``long_conv(layer, u)`` returns the causal convolution ``(B, C_layer, T)`` of that
        layer's inputs ``u`` ``(B, C_layer, T)``; an offline FFT convolution
        (:func:`futurefill.causal_conv`) by default. A decoder passes the prefill of its
        shared online convolution, which returns the same outputs and keeps the future cache.
    states : sequence of tuples, optional
        Per layer, the mixer state before the first position (the ``states`` of the pass over
        the positions before): the sequences continue from there, so a prompt may run in
        chunks (``long_conv`` must then continue too, as a pool's chunked ``prefill`` does).
        ``None``: the sequences start at ``tokens``.
    programs : PassPrograms, optional
        The position-wise work as compiled programs (:meth:`PassPrograms.for_sequences`
        compiled); the functions themselves by default.
    """
    if states is not None and long_conv is None:
        raise ValueError("a pass continuing from states needs the long_conv that continues too")
    xp, mixer, eps = w.xp, w.mixer, w.cfg.norm_eps
    if programs is None:
        programs = PassPrograms.for_sequences(mixer, eps, xp)
    x = programs.enter(w.top["embed"], tokens)
    before: Sequence[State | None] = [None] * len(w.layers) if states is None else states
    inputs: list[Array] = []
    after: list[State] = []
    for i, (lw, filt) in enumerate(zip(w.layers, w.filters, strict=True)):
        u_t, u, aux, state = programs.inputs(lw, x, before[i])  # u_t: (B, C, T), time last
        y_t = causal_conv(u_t, filt, xp=xp) if long_conv is None else long_conv(i, u_t)
        x = programs.outputs(lw, x, y_t, u, aux)
        after.append(state)
        if keep_inputs:
            inputs.append(u_t)
    logits = programs.head(w.top, x)
    return SequenceResult(logits=logits, conv_inputs=inputs, states=after)


def layer_position_inputs(
    mixer: Mixer, eps: float, xp: Any, lw: dict[str, Array], x: Array, state: State
) -> tuple[Array, Array, State]:
    """One layer's work before its long convolution at one position: the mixer's inputs.

    Parameters
    ----------
    mixer : Mixer
    eps : float
        The model's ``norm_eps``.
    xp : namespace
    lw : dict
        The layer's weights.
    x : array, shape (B, D)
        The residual stream entering the layer.
    state : tuple
        The layer's mixer state before this position.

    Returns
    -------
    u : array, shape (B, C)
        The long convolution's inputs.
    aux : array
        What the mixer's outputs need besides the convolution.
    state : tuple
        The mixer state after this position.
    """
    return mixer.position_inputs(lw, rms_norm(x, lw["norm1"], eps, xp), state, xp)


def layer_position_outputs(
    mixer: Mixer,
    eps: float,
    xp: Any,
    lw: dict[str, Array],
    x: Array,
    y: Array,
    u: Array,
    aux: Array,
) -> Array:
    """One layer's work after its long convolution ``y`` ``(B, C)`` at one position: the
    residual stream ``(B, D)`` leaving the layer (mixer outputs, then the MLP)."""
    x = x + mixer.outputs(lw, y, u, aux, xp)
    return x + mlp(rms_norm(x, lw["norm2"], eps, xp), lw, xp)


def head_logits(eps: float, xp: Any, top: dict[str, Array], x: Array) -> Array:
    """The logits ``(B, V)`` of the residual stream ``x`` ``(B, D)`` after the last layer."""
    return rms_norm(x, top["norm"], eps, xp) @ top["head"]


def position_pass(
    w: BackendWeights,
    tokens: Array,
    states: Sequence[State],
    long_conv: Callable[[int, Array], Array],
    programs: PassPrograms | None = None,
) -> tuple[Array, list[State]]:
    """Run the network on one position of every sequence.

    Parameters
    ----------
    w : BackendWeights
    tokens : integer array, shape (B,)
    states : sequence of tuples
        Per layer, the mixer state before this position.
    long_conv : callable
        ``long_conv(layer, u)`` returns the online convolution output ``(B, C_layer)`` of that
        layer's channels for the inputs ``u`` ``(B, C_layer)``.
    programs : PassPrograms, optional
        The position-wise work as compiled programs (:meth:`PassPrograms.for_positions`
        compiled); the functions themselves by default.

    Returns
    -------
    logits : array, shape (B, V)
    states : list of tuples
        Per layer, the mixer state after this position.
    """
    if programs is None:
        programs = PassPrograms.for_positions(w.mixer, w.cfg.norm_eps, w.xp)
    x = programs.enter(w.top["embed"], tokens)
    new_states: list[State] = []
    for i, (lw, state) in enumerate(zip(w.layers, states, strict=True)):
        u, aux, state = programs.inputs(lw, x, state)
        x = programs.outputs(lw, x, long_conv(i, u), u, aux)
        new_states.append(state)
    return programs.head(w.top, x), new_states
