"""Generation: one online convolution for the long-conv channels of every layer.

At each position every layer ``emit``\\ s its own channels of a shared
:class:`futurefill.OnlineConv`; after the last layer one ``advance()`` fills the future of all
layers at once (the FutureFill work of a position is needed only from the next position on).
A prompt goes through one ``prefill``: afterwards only the O(new tokens) future cache is kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._backend import get_backend
from ..backends import Executor
from ..online import OnlineConv
from ..plan import PlanSpec, make_plan, resolve_spec
from .config import ModelConfig
from .mixers import get_mixer
from .network import BackendWeights, position_pass, sequence_pass

if TYPE_CHECKING:
    from .lm import ConvLM

__all__ = ["DecodeStateSize", "Decoder", "decode_state_size", "generate"]

Array = Any


def _online_steps(prompt_len: int, new_tokens: int) -> int:
    """Positions processed online: a prompt's last position yields the first new token; without
    a prompt the start token is the first online position. The last new token is never fed."""
    return new_tokens - 1 if prompt_len else new_tokens


class Decoder:
    """The decode state of a :class:`~futurefill.models.ConvLM` on one backend.

    Parameters
    ----------
    model : ConvLM
        The model.
    prompt_len : int
        Positions given at once to :meth:`prefill` (0: start with :meth:`step`).
    steps : int
        Positions given one at a time to :meth:`step`.
    schedule : str or PlanSpec
        Online-convolution schedule and its parameters (see :func:`futurefill.make_plan`).
    batch : int
        Number of sequences.
    backend : str or Executor, optional
        Backend; the one in force by default.
    timed : bool
        Accumulate wall-clock times in :attr:`timings` (the long convolution is synchronised
        before each reading, so device backends are timed correctly but run slower).

    Attributes
    ----------
    conv : OnlineConv
        The shared online convolution, channels of layer ``i`` at ``model.channel_slices[i]``.
    timings : dict
        Seconds spent in ``prefill``, in ``step`` (``decode``) and, of the latter, in the long
        convolution (``long_conv``: ``emit`` + ``advance``).
    """

    def __init__(
        self,
        model: ConvLM,
        *,
        prompt_len: int,
        steps: int,
        schedule: str | PlanSpec = "continuous",
        batch: int = 1,
        backend: str | Executor | None = None,
        timed: bool = False,
    ) -> None:
        cfg = model.config
        total = prompt_len + steps
        if total > cfg.max_len:
            raise ValueError(
                f"{prompt_len} prompt + {steps} online positions exceed the model's "
                f"max_len = {cfg.max_len}"
            )
        self.model = model
        self.executor = get_backend(backend)
        self.weights: BackendWeights = model.backend_weights(self.executor)
        # Only the first prompt + steps taps can ever be used (a plan has at least one step:
        # the unused step of a one-token generation after a full-length prompt gets zero taps).
        taps = prompt_len + max(steps, 1)
        filters = np.concatenate([f[:, :taps] for f in model.host_filters()], axis=0)
        if filters.shape[1] < taps:
            filters = np.pad(filters, ((0, 0), (0, taps - filters.shape[1])))
        self.conv = OnlineConv(
            filters,
            length=max(steps, 1),
            schedule=schedule,
            prompt=prompt_len,
            batch=batch,
            dtype=cfg.dtype,
            backend=self.executor,
        )
        w = self.weights
        self.slices = model.channel_slices
        self.states = [w.mixer.initial_state(lw, batch, w.xp, w.device) for lw in w.layers]
        self.timed = timed
        self.timings = {"prefill": 0.0, "decode": 0.0, "long_conv": 0.0}

    @property
    def batch(self) -> int:
        """Number of sequences."""
        return self.conv.batch

    def prefill(self, tokens: Array) -> Array:
        """Consume the prompt ``(B, prompt_len)``; return the logits of its last position.

        The prompt runs layer by layer (each layer needs the previous one's outputs); each
        layer's long convolution is the ``prefill`` of its own channels of the shared online
        convolution: one FFT convolution gives the layer's prompt outputs and keeps only the
        prompt's contribution to the positions still to come.
        """
        start = time.perf_counter()
        w = self.weights

        def prefill_layer(layer: int, u: Array) -> Array:
            return self.conv.prefill(u, channels=self.slices[layer])

        result = sequence_pass(w, tokens, long_conv=prefill_layer)
        self.states = result.states
        logits = result.logits[:, -1, :]
        if self.timed:
            self.executor.synchronize()
            self.timings["prefill"] += time.perf_counter() - start
        return logits

    def _long_conv(self, layer: int, u: Array) -> Array:
        return self.conv.emit(u, channels=self.slices[layer])

    def _long_conv_timed(self, layer: int, u: Array) -> Array:
        self.executor.synchronize()
        start = time.perf_counter()
        y = self.conv.emit(u, channels=self.slices[layer])
        self.executor.synchronize()
        self.timings["long_conv"] += time.perf_counter() - start
        return y

    def step(self, tokens: Array) -> Array:
        """Feed one token per sequence ``(B,)``; return the next-token logits ``(B, V)``."""
        if not self.timed:
            logits, self.states = position_pass(self.weights, tokens, self.states, self._long_conv)
            self.conv.advance()
            return logits
        start = time.perf_counter()
        logits, self.states = position_pass(
            self.weights, tokens, self.states, self._long_conv_timed
        )
        mid = time.perf_counter()
        self.conv.advance()
        self.executor.synchronize()
        end = time.perf_counter()
        self.timings["long_conv"] += end - mid
        self.timings["decode"] += end - start
        return logits

    def state_size(self) -> dict[str, int]:
        """Values held now, per component (see :class:`DecodeStateSize`)."""
        conv = self.conv.state_size
        cfg = self.model.config
        mixer_values = sum(int(np.prod(a.shape)) for state in self.states for a in state)
        return {
            "conv_buffer": conv["buffer"],
            "window_taps": conv["window_taps"],
            "short_conv": mixer_values,
            "spectra": conv["spectra"],
            "layers": cfg.layers,
        }


@dataclass(frozen=True)
class DecodeStateSize:
    """Decode-state size of a model for one generation, in numbers of values (all layers).

    Attributes
    ----------
    conv_buffer : int
        The online convolution's buffer: kept inputs plus future contributions.
    window_taps : int
        Reversed taps of the directly summed local windows.
    short_conv : int
        Short-convolution state of the mixers (Hyena: the last two projected positions).
    spectra : int
        Precomputed filter spectra (complex values).
    naive_buffer : int
        What a naive cache holds: every input of every layer, ``B * C * (P + steps)``.
    layers : int
        Number of layers (for per-layer figures).
    channels_per_layer : int
        Long-convolution channels of one layer.
    plan_total, plan_buffer_length : int
        Positions of the plan and buffer slots per channel.
    """

    conv_buffer: int
    window_taps: int
    short_conv: int
    spectra: int
    naive_buffer: int
    layers: int
    channels_per_layer: int
    plan_total: int
    plan_buffer_length: int

    @property
    def conv_state(self) -> int:
        """Real values of the decode state excluding spectra (buffer + taps + short conv)."""
        return self.conv_buffer + self.window_taps + self.short_conv

    def per_layer(self) -> dict[str, float]:
        """Every component divided by the number of layers."""
        names = ("conv_buffer", "window_taps", "short_conv", "spectra", "naive_buffer")
        out = {k: getattr(self, k) / self.layers for k in names}
        out["conv_state"] = self.conv_state / self.layers
        return out

    def __str__(self) -> str:
        rows = self.per_layer()
        lines = [f"decode state per layer ({self.channels_per_layer} long-conv channels)"]
        for k in ("conv_buffer", "window_taps", "short_conv", "conv_state", "spectra"):
            unit = " (complex)" if k == "spectra" else ""
            lines.append(f"  {k:<14s}{rows[k]:>14,.0f}{unit}")
        lines.append(f"  {'naive (P+K)·C':<14s}{rows['naive_buffer']:>14,.0f}")
        return "\n".join(lines)


def decode_state_size(
    model: ConvLM | ModelConfig,
    prompt_len: int,
    new_tokens: int,
    schedule: str | PlanSpec = "continuous",
    *,
    batch: int = 1,
    backend: str | Executor | None = None,
) -> DecodeStateSize:
    """Size of the decode state of a generation, computed from the plan (nothing allocated).

    Equals what a :class:`Decoder` for the same generation holds (``Decoder.state_size``).
    Only the configuration is needed, so a :class:`ModelConfig` can stand for the model.
    """
    cfg = model if isinstance(model, ModelConfig) else model.config
    mixer = get_mixer(cfg.mixer)
    steps = max(_online_steps(prompt_len, new_tokens), 1)
    channels = mixer.long_channels(cfg) * cfg.layers
    ex = get_backend(backend)
    spec = resolve_spec(
        schedule, ex, batch=batch, channels=channels, dtype=ex.resolve_dtype(cfg.dtype)
    )
    plan = make_plan(steps, spec, prompt=prompt_len)
    mixer_state = mixer.state_values(cfg, batch) * cfg.layers
    return DecodeStateSize(
        conv_buffer=batch * channels * plan.buffer_length,
        window_taps=channels * plan.window_length,
        short_conv=mixer_state,
        spectra=channels * sum(key[2] // 2 + 1 for key in plan.spectrum_keys),
        naive_buffer=batch * channels * plan.total,
        layers=cfg.layers,
        channels_per_layer=channels // cfg.layers,
        plan_total=plan.total,
        plan_buffer_length=plan.buffer_length,
    )


def _prepare_prompt(model: ConvLM, prompt: Any, batch: int | None) -> tuple[np.ndarray | None, int]:
    """Validate the prompt on the host: ``(B, P)`` int64 (or None) and the batch size."""
    if prompt is None:
        return None, 1 if batch is None else int(batch)
    host = np.asarray(prompt)
    if host.ndim == 1:
        host = host[None, :]
    if host.ndim != 2 or host.shape[1] == 0:
        raise ValueError(f"prompt must have shape (P,) or (B, P) with P >= 1, got {host.shape}")
    if host.dtype.kind not in "iu":
        raise TypeError(f"prompt must hold integer token ids, got dtype {host.dtype}")
    if host.min() < 0 or host.max() >= model.config.vocab_size:
        raise ValueError(f"prompt token ids must lie in 0..{model.config.vocab_size - 1}")
    if batch is not None and batch != host.shape[0]:
        raise ValueError(f"batch={batch} disagrees with the prompt's {host.shape[0]} rows")
    return host.astype(np.int64), host.shape[0]


def generate(
    model: ConvLM,
    prompt: Any,
    max_new_tokens: int,
    *,
    schedule: str | PlanSpec = "continuous",
    temperature: float = 0.0,
    seed: int | None = None,
    backend: str | Executor | None = None,
    batch: int | None = None,
    return_logits: bool = False,
    timed: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, Decoder]:
    """Implementation of :meth:`futurefill.models.ConvLM.generate` (see there).

    Returns
    -------
    tokens : ndarray, shape (B, max_new_tokens)
    logits : ndarray, shape (B, max_new_tokens, V), or None
    decoder : Decoder
        The decode state at the end (its ``timings`` with ``timed=True``).
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int | np.integer):
        raise TypeError("max_new_tokens must be an int")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    host_prompt, B = _prepare_prompt(model, prompt, batch)
    P = 0 if host_prompt is None else host_prompt.shape[1]
    N = int(max_new_tokens)
    decoder = Decoder(
        model,
        prompt_len=P,
        steps=_online_steps(P, N),
        schedule=schedule,
        batch=B,
        backend=backend,
        timed=timed,
    )
    ex, xp = decoder.executor, decoder.weights.xp
    rng = np.random.default_rng(seed)
    if host_prompt is None:
        logits = decoder.step(ex.asarray(np.full(B, model.config.bos, dtype=np.int64)))
    else:
        logits = decoder.prefill(ex.asarray(host_prompt))
    tokens: list[Array] = []
    kept: list[Array] = []
    for i in range(N):
        if temperature == 0:
            tok = xp.argmax(logits, axis=-1)
        else:  # Gumbel-max sampling on the host: the same draws for every schedule and backend
            scores = ex.to_numpy(logits) / temperature + rng.gumbel(size=(B, logits.shape[-1]))
            tok = ex.asarray(np.argmax(scores, axis=-1).astype(np.int64))
        tokens.append(tok)
        if return_logits:
            kept.append(logits)
        if i + 1 < N:
            logits = decoder.step(tok)
    out = ex.to_numpy(xp.stack(tokens, axis=1)).astype(np.int64)
    all_logits = ex.to_numpy(xp.stack(kept, axis=1)) if return_logits else None
    return out, all_logits, decoder
