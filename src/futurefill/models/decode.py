"""Generation: one online convolution for the long-conv channels of every layer.

At each position every layer ``emit``\\ s its own channels of a shared
:class:`futurefill.OnlineConv`; after the last layer one ``advance()`` fills the future of all
layers at once (the FutureFill work of a position is needed only from the next position on).
A prompt goes through one ``prefill``: afterwards only the O(new tokens) future cache is kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .._registry import get_backend
from ..executor import DecodeStep, Executor
from ..interpreter import check_can_step
from ..online import OnlineConv
from ..plan import PlanSpec
from .compiled_rows import CompiledRows
from .config import ModelConfig
from .network import BackendWeights, position_pass, sequence_pass
from .options import GenerationOptions
from .tokens import check_token_range, token_array

__all__ = ["DecodableModel", "Decoder", "Generation", "generate", "online_steps"]

Array = Any


class DecodableModel(Protocol):
    """What generation needs of a model (:class:`~futurefill.models.ConvLM` provides it).

    Examples
    --------
    >>> from futurefill.models import ConvLM
    >>> model = ConvLM(mixer="hyena", dim=8, layers=2, max_len=32, vocab_size=16)
    >>> model.channel_slices  # layer i's channels in the stacked long convolution
    (slice(0, 8, None), slice(8, 16, None))
    >>> [f.shape for f in model.host_filters()]
    [(8, 32), (8, 32)]
    """

    @property
    def config(self) -> ModelConfig:
        """The configuration."""
        ...

    @property
    def channel_slices(self) -> tuple[slice, ...]:
        """Channels of each layer in the stacked long convolution."""
        ...

    def host_filters(self) -> list[np.ndarray]:
        """Per layer, the long filters ``(C_i, max_len)`` on the host."""
        ...

    def backend_weights(self, executor: Executor) -> BackendWeights:
        """The weights converted to ``executor``'s arrays."""
        ...


def online_steps(prompt_len: int, new_tokens: int) -> int:
    """Positions processed online: a prompt's last position yields the first new token; without
    a prompt the start token is the first online position. The last new token is never fed."""
    return new_tokens - 1 if prompt_len else new_tokens


class Decoder:
    """The decode state of a model (:class:`~futurefill.models.ConvLM`) on one backend.

    Parameters
    ----------
    model : DecodableModel
        The model.
    prompt_len : int
        Positions given at once to :meth:`prefill` (0: start with :meth:`step`).
    steps : int or None
        Positions given one at a time to :meth:`step`; ``None`` for as many as the model's
        ``max_len`` allows, with an open-ended online convolution (its plan extended in
        segments as positions come, see :class:`~futurefill.OnlineConv`).
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

    Examples
    --------
    Greedy decoding by hand gives the tokens of :meth:`ConvLM.generate
    <futurefill.models.ConvLM.generate>`:

    >>> from futurefill.models import ConvLM, Decoder
    >>> model = ConvLM(mixer="hyena", dim=8, layers=1, max_len=32, vocab_size=16)
    >>> decoder = Decoder(model, prompt_len=3, steps=3, backend="numpy")
    >>> tokens = [int(decoder.prefill([[1, 2, 3]]).argmax(-1)[0])]
    >>> for _ in range(3):
    ...     tokens.append(int(decoder.step([tokens[-1]]).argmax(-1)[0]))
    >>> tokens == model.generate([1, 2, 3], 4, backend="numpy")[0].tolist()
    True
    >>> decoder.state_size()["conv_buffer"] == model.decode_state_size(3, 4).conv_buffer
    True
    """

    def __init__(
        self,
        model: DecodableModel,
        *,
        prompt_len: int,
        steps: int | None,
        schedule: str | PlanSpec = "continuous",
        batch: int = 1,
        backend: str | Executor | None = None,
        timed: bool = False,
    ) -> None:
        cfg = model.config
        if steps is None and prompt_len >= cfg.max_len:
            raise ValueError(
                f"a prompt of {prompt_len} positions leaves none of the model's "
                f"max_len = {cfg.max_len} to generate"
            )
        if steps is not None and prompt_len + steps > cfg.max_len:
            raise ValueError(
                f"{prompt_len} prompt + {steps} online positions exceed the model's "
                f"max_len = {cfg.max_len}"
            )
        self.model = model
        self.prompt_len = prompt_len
        self.executor = get_backend(backend)
        self.weights: BackendWeights = model.backend_weights(self.executor)
        # Only the first prompt + steps taps can ever be used (a plan has at least one step:
        # the unused step of a one-token generation after a full-length prompt gets zero taps).
        taps = cfg.max_len if steps is None else prompt_len + max(steps, 1)
        filters = np.concatenate([f[:, :taps] for f in model.host_filters()], axis=0)
        if filters.shape[1] < taps:
            filters = np.pad(filters, ((0, 0), (0, taps - filters.shape[1])))
        self.conv = OnlineConv(
            filters,
            length=None if steps is None else max(steps, 1),
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
        #: The token step captured by the executor (e.g. CUDA graphs), or ``None``.
        self.program: DecodeStep | None = None
        compiled = CompiledRows(w, self.executor) if CompiledRows.available(self.executor) else None
        #: The position-wise work as compiled programs where the backend compiles functions.
        self._sequence = None if compiled is None else compiled.sequence
        self._position = None if compiled is None else compiled.position
        if not prompt_len:
            self._capture()

    @property
    def batch(self) -> int:
        """Number of sequences."""
        return self.conv.batch

    def _tokens(self, tokens: Any, shape: tuple[int, ...], what: str) -> Array:
        """``tokens`` on the backend, checked: integer ids below ``vocab_size``, ``shape``."""
        array = token_array(tokens, self.model.config.vocab_size, self.executor, what)
        if tuple(array.shape) != shape:
            raise ValueError(f"{what} must have shape {shape}, got {tuple(array.shape)}")
        return array

    def prefill(self, tokens: Any) -> Array:
        """Consume the prompt ``(B, prompt_len)``; return the logits of its last position.

        The prompt runs layer by layer (each layer needs the previous one's outputs); each
        layer's long convolution is the ``prefill`` of its own channels of the shared online
        convolution: one FFT convolution gives the layer's prompt outputs and keeps only the
        prompt's contribution to the positions still to come. Token ids are checked (integers
        in ``0 .. vocab_size - 1``).
        """
        tokens = self._tokens(tokens, (self.batch, self.prompt_len), "prompt")
        start = time.perf_counter()
        w = self.weights

        def prefill_layer(layer: int, u: Array) -> Array:
            return self.conv.prefill(u, channels=self.slices[layer])

        result = sequence_pass(w, tokens, long_conv=prefill_layer, programs=self._sequence)
        self.states = result.states
        logits = result.logits[:, -1, :]
        if self.timed:
            self.executor.synchronize()
            self.timings["prefill"] += time.perf_counter() - start
        self._capture()
        return logits

    def _capture(self) -> None:
        """Offer the whole token step to the executor (:meth:`Executor.capture_decode`), once,
        before the first decode step: every layer's ``emit`` and the ``advance`` as one
        program per step pattern (CUDA graphs on torch with ``cuda_graphs``). Not for a timed
        decoder (it times the long convolution apart) nor an open-ended one (its plan grows)."""
        if self.timed or self.conv.length is None:
            return

        def body(tokens: Array, states: list[Any]) -> tuple[Array, list[Any]]:
            logits, new = position_pass(self.weights, tokens, states, self._long_conv)
            self.conv.advance()
            return logits, new

        tokens = self.executor.asarray(np.zeros(self.batch, np.int64))
        self.program = self.executor.capture_decode(self.conv.state, body, tokens, self.states)

    def _long_conv(self, layer: int, u: Array) -> Array:
        return self.conv.emit(u, channels=self.slices[layer])

    def _long_conv_timed(self, layer: int, u: Array) -> Array:
        self.executor.synchronize()
        start = time.perf_counter()
        y = self.conv.emit(u, channels=self.slices[layer])
        self.executor.synchronize()
        self.timings["long_conv"] += time.perf_counter() - start
        return y

    def step(self, tokens: Any) -> Array:
        """Feed one token per sequence ``(B,)``; return the next-token logits ``(B, V)``.

        Token ids are checked (integers in ``0 .. vocab_size - 1``).
        """
        return self._step(self._tokens(tokens, (self.batch,), "tokens"))

    def _step(self, tokens: Array) -> Array:
        """:meth:`step` without the checks, for tokens the decoder itself chose."""
        if self.program is not None:
            check_can_step(self.conv.state, whole=True)
            logits, self.states = self.program(tokens, self.states)
            return logits
        if not self.timed:
            logits, self.states = position_pass(
                self.weights, tokens, self.states, self._long_conv, self._position
            )
            self.conv.advance()
            return logits
        start = time.perf_counter()
        logits, self.states = position_pass(
            self.weights, tokens, self.states, self._long_conv_timed, self._position
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


def _prepare_prompt(
    model: DecodableModel, prompt: Any, batch: int | None, executor: Executor
) -> tuple[np.ndarray | None, int]:
    """Validate the prompt on the host: ``(B, P)`` int64 (or None) and the batch size."""
    if prompt is None:
        return None, 1 if batch is None else int(batch)
    host = executor.to_numpy(prompt) if executor.is_native(prompt) else np.asarray(prompt)
    if host.ndim == 1:
        host = host[None, :]
    if host.ndim != 2 or host.shape[1] == 0:
        raise ValueError(f"prompt must have shape (P,) or (B, P) with P >= 1, got {host.shape}")
    if host.dtype.kind not in "iu":
        raise TypeError(f"prompt must hold integer token ids, got dtype {host.dtype}")
    check_token_range(int(host.min()), int(host.max()), model.config.vocab_size, "prompt")
    if batch is not None and batch != host.shape[0]:
        raise ValueError(f"batch={batch} disagrees with the prompt's {host.shape[0]} rows")
    return host.astype(np.int64), host.shape[0]


@dataclass(frozen=True)
class Generation:
    """What :func:`generate` returns.

    Attributes
    ----------
    tokens : ndarray of int64, shape (B, max_new_tokens)
    logits : ndarray, shape (B, max_new_tokens, V), or None
        With ``return_logits`` only.
    decoder : Decoder or None
        The decode state at the end (its ``timings`` with ``timed=True``); ``None`` when the
        backend generated as a compiled program.

    Examples
    --------
    >>> from futurefill.models import ConvLM, GenerationOptions, generate
    >>> model = ConvLM(mixer="hyena", dim=8, layers=1, max_len=32, vocab_size=16)
    >>> options = GenerationOptions(backend="numpy", return_logits=True)
    >>> result = generate(model, [1, 2, 3], 4, options)
    >>> result.tokens.shape, result.logits.shape
    ((1, 4), (1, 4, 16))
    >>> bool((result.logits.argmax(-1) == result.tokens).all())  # greedy
    True
    """

    tokens: np.ndarray
    logits: np.ndarray | None
    decoder: Decoder | None


def generate(
    model: DecodableModel,
    prompt: Any,
    max_new_tokens: int,
    options: GenerationOptions | None = None,
    *,
    timed: bool = False,
) -> Generation:
    """Implementation of :meth:`futurefill.models.ConvLM.generate` (see there).

    Parameters
    ----------
    model : DecodableModel
    prompt : integer array of shape (P,) or (B, P), or None
    max_new_tokens : int
    options : GenerationOptions, optional
        Schedule, sampling, backend, batch (the defaults if None).
    timed : bool
        Time the decoder (see :class:`Decoder`).

    Returns
    -------
    Generation

    Examples
    --------
    The greedy tokens are those a whole-sequence :meth:`~futurefill.models.ConvLM.forward`
    picks from the same positions:

    >>> import numpy as np
    >>> from futurefill.models import ConvLM, GenerationOptions, generate
    >>> model = ConvLM(mixer="hyena", dim=8, layers=1, max_len=32, vocab_size=16)
    >>> run = generate(model, [1, 2, 3], 4, GenerationOptions(backend="numpy"), timed=True)
    >>> logits = model.forward(np.concatenate([[1, 2, 3], run.tokens[0, :-1]]), backend="numpy")
    >>> bool(np.array_equal(logits[2:].argmax(-1), run.tokens[0]))
    True
    >>> sorted(run.decoder.timings)
    ['decode', 'long_conv', 'prefill']
    """
    opts = GenerationOptions() if options is None else options
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int | np.integer):
        raise TypeError("max_new_tokens must be an int")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    ex = get_backend(opts.backend)
    host_prompt, B = _prepare_prompt(model, prompt, opts.batch, ex)
    P = 0 if host_prompt is None else host_prompt.shape[1]
    N = int(max_new_tokens)
    if P + online_steps(P, N) > model.config.max_len:
        raise ValueError(
            f"{P} prompt + {online_steps(P, N)} online positions exceed the model's "
            f"max_len = {model.config.max_len}"
        )
    stop = opts.stop_token
    if stop is not None:
        check_token_range(stop, stop, model.config.vocab_size, "stop_token")
    if opts.temperature == 0 and not timed and stop is None:
        # A backend may compile the whole greedy loop (None: it does not).
        run = ex.generate_greedy(
            model, host_prompt, N, schedule=opts.schedule, batch=B,
            return_logits=opts.return_logits,
        )  # fmt: skip
        if run is not None:
            return Generation(tokens=run.tokens, logits=run.logits, decoder=None)
    steps = online_steps(P, N)
    decoder = Decoder(
        model,
        prompt_len=P,
        steps=None if stop is not None and steps else steps,  # open-ended until the stop
        schedule=opts.schedule,
        batch=B,
        backend=ex,
        timed=timed,
    )
    xp = decoder.weights.xp
    rng = np.random.default_rng(opts.seed)
    if host_prompt is None:
        logits = decoder.step(np.full(B, model.config.bos, dtype=np.int64))
    else:
        logits = decoder.prefill(host_prompt)
    tokens: list[Array] = []
    kept: list[Array] = []
    stopped = np.zeros(B, dtype=bool)
    for i in range(N):
        if opts.temperature == 0:
            tok = xp.argmax(logits, axis=-1)
        else:  # Gumbel-max sampling on the host: the same draws for every schedule and backend
            scores = ex.to_numpy(logits) / opts.temperature
            scores = scores + rng.gumbel(size=(B, logits.shape[-1]))
            tok = ex.asarray(np.argmax(scores, axis=-1).astype(np.int64))
        if stop is not None:  # rows that stopped are padded with the stop token
            host = np.where(stopped, stop, ex.to_numpy(tok)).astype(np.int64)
            stopped |= host == stop
            tok = ex.asarray(host)
        tokens.append(tok)
        if opts.return_logits:
            kept.append(logits)
        if stopped.all():
            break
        if i + 1 < N:
            logits = decoder._step(tok)
    out = ex.to_numpy(xp.stack(tokens, axis=1)).astype(np.int64)
    all_logits = ex.to_numpy(xp.stack(kept, axis=1)) if opts.return_logits else None
    return Generation(tokens=out, logits=all_logits, decoder=decoder)
