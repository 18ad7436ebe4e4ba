"""ConvLM: embedding -> M pre-norm residual blocks (conv mixer + MLP) -> norm -> head."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from .._registry import get_backend
from ..executor import Executor
from ..memory import check_memory
from .config import ModelConfig
from .decode import generate as _generate
from .mixers import Mixer, get_mixer
from .network import BackendWeights, convert_weights, layer_params, sequence_pass
from .options import GenerationOptions
from .params import (
    MAX_LEN_LIMIT,
    check_params,
    init_params,
    load_params,
    model_bytes,
    save_params,
)
from .state_size import DecodeStateSize, decode_state_size
from .tokens import token_array

__all__ = ["ConvLM"]

Array = Any


class ConvLM:
    """A convolutional language model with an STU-T, full STU or Hyena-style mixer.

    ``x = embed(tokens)``; per layer ``x += mixer(norm(x))``, ``x += mlp(norm(x))``;
    ``logits = norm(x) @ head``. Each mixer is a depthwise long convolution between
    position-wise maps (see :mod:`futurefill.models.mixers`). The weights live on the host
    (NumPy) and are converted once per backend; the computation is written against the array
    API, so :meth:`forward` and :meth:`generate` run on every futurefill backend.

    Parameters
    ----------
    config : ModelConfig, optional
        Sizes and seed; the keyword arguments override its fields (or build one).
    params : mapping of str to ndarray, optional
        Weights; seeded random ones (:func:`~futurefill.models.params.init_params`) by default.
        Checked (names, shapes, real finite values: see
        :func:`~futurefill.models.params.check_params`) and copied read-only in the model
        dtype.
    **overrides
        Fields of :class:`ModelConfig`.

    Raises
    ------
    MemoryError
        When building the weights and long filters (estimated by
        :func:`~futurefill.models.params.model_bytes`) would not fit, before anything is
        computed (see :mod:`futurefill.memory`).

    Examples
    --------
    >>> from futurefill.models import ConvLM
    >>> model = ConvLM(mixer="hyena", dim=16, layers=2, max_len=64, vocab_size=32)
    >>> tokens = model.generate([1, 2, 3], 5)
    >>> tokens.shape
    (1, 5)
    """

    def __init__(
        self,
        config: ModelConfig | None = None,
        params: Mapping[str, np.ndarray] | None = None,
        **overrides: Any,
    ) -> None:
        cfg = config if config is not None else ModelConfig()
        if overrides:
            cfg = dataclasses.replace(cfg, **overrides)
        check_memory(
            f"a {cfg.mixer} model of {cfg.layers} layers x {cfg.dim} wide over "
            f"{cfg.max_len} positions (its weights and long filters)",
            model_bytes(cfg),
        )
        params = check_params(cfg, init_params(cfg) if params is None else params)
        self._config = cfg
        self._params = dict(params)
        self._mixer = get_mixer(cfg.mixer)
        self._lock = threading.Lock()
        self._filters: list[np.ndarray] | None = None
        self._converted: dict[tuple[str, str, str], BackendWeights] = {}

    # ------------------------------------------------------------------ description
    @property
    def config(self) -> ModelConfig:
        """The configuration."""
        return self._config

    @property
    def params(self) -> Mapping[str, np.ndarray]:
        """The weights (read-only NumPy arrays)."""
        return MappingProxyType(self._params)

    @property
    def mixer(self) -> Mixer:
        """The layers' mixer."""
        return self._mixer

    @property
    def channel_slices(self) -> tuple[slice, ...]:
        """Channels of each layer in the stacked long convolution of generation."""
        c = self._mixer.long_channels(self._config)
        return tuple(slice(i * c, (i + 1) * c) for i in range(self._config.layers))

    def __repr__(self) -> str:
        c = self._config
        return (
            f"ConvLM(mixer={c.mixer!r}, layers={c.layers}, dim={c.dim}, "
            f"vocab_size={c.vocab_size}, max_len={c.max_len}, dtype={c.dtype})"
        )

    # ------------------------------------------------------------------ weights
    def host_filters(self) -> list[np.ndarray]:
        """Per layer, the long filters ``(C_i, max_len)`` (float64, NumPy, computed once).

        Examples
        --------
        >>> from futurefill.models import ConvLM
        >>> model = ConvLM(mixer="hyena", dim=8, layers=2, max_len=32, vocab_size=16)
        >>> [f.shape for f in model.host_filters()]
        [(8, 32), (8, 32)]
        >>> model.host_filters() is model.host_filters()  # computed once
        True
        """
        with self._lock:
            if self._filters is None:
                cfg = self._config
                self._filters = [
                    self._mixer.long_filters(cfg, layer_params(self._params, i))
                    for i in range(cfg.layers)
                ]
            return self._filters

    def backend_weights(self, executor: Executor) -> BackendWeights:
        """The weights converted to ``executor``'s arrays in the model dtype (cached).

        Examples
        --------
        >>> import futurefill
        >>> from futurefill.models import ConvLM
        >>> model = ConvLM(mixer="hyena", dim=8, layers=2, max_len=32, vocab_size=16)
        >>> numpy = futurefill.get_backend("numpy")
        >>> weights = model.backend_weights(numpy)
        >>> len(weights.layers), type(weights.filters[0]).__name__  # NumPy's arrays
        (2, 'ndarray')
        >>> model.backend_weights(numpy) is weights  # cached
        True
        """
        dtype = executor.resolve_dtype(self._config.dtype)
        key = (executor.name, repr(executor.device), str(dtype))
        with self._lock:
            found = self._converted.get(key)
        if found is not None:
            return found
        weights = convert_weights(
            self._config, self._mixer, self._params, self.host_filters(), executor
        )
        with self._lock:
            return self._converted.setdefault(key, weights)

    # ------------------------------------------------------------------ running
    def forward(self, tokens: Any, *, backend: str | Executor | None = None) -> Array:
        """Logits of every position of whole sequences (offline FFT convolutions).

        Parameters
        ----------
        tokens : integer array, shape (B, T) or (T,)
            Token ids in ``0 .. vocab_size - 1`` (checked: a negative or too large id is a
            ``ValueError``, a non-integer dtype a ``TypeError``), ``T <= max_len``; host data
            or arrays of the backend.
        backend : str or Executor, optional
            Backend to compute on; the one in force by default.

        Returns
        -------
        array of the backend, shape (B, T, vocab_size) (``(T, vocab_size)`` for 1-D tokens)

        Examples
        --------
        Causal: a position's logits do not depend on the tokens after it.

        >>> import numpy as np
        >>> from futurefill.models import ConvLM
        >>> model = ConvLM(mixer="hyena", dim=8, layers=2, max_len=32, vocab_size=16)
        >>> a = model.forward([[1, 2, 3, 4]], backend="numpy")
        >>> b = model.forward([[1, 2, 9, 9]], backend="numpy")
        >>> a.shape, bool(np.allclose(a[:, :2], b[:, :2])), bool(np.allclose(a, b))
        ((1, 4, 16), True, False)
        """
        executor = get_backend(backend)
        tokens = token_array(tokens, self._config.vocab_size, executor)
        squeeze = tokens.ndim == 1
        if squeeze:
            tokens = executor.xp.reshape(tokens, (1, -1))
        if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= self._config.max_len:
            raise ValueError(
                f"tokens must have shape (B, T) with 1 <= T <= max_len = {self._config.max_len}"
                f", got {tuple(tokens.shape)}"
            )
        logits = sequence_pass(self.backend_weights(executor), tokens).logits
        return logits[0, ...] if squeeze else logits

    __call__ = forward

    def generate(
        self,
        prompt: Any,
        max_new_tokens: int,
        options: GenerationOptions | None = None,
        **overrides: Any,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Generate tokens autoregressively with an exact online convolution schedule.

        The prompt (if any) runs through the network at once and one ``prefill`` of the online
        convolution shared by all layers; then each new position runs every layer with one
        ``emit`` of its channels and a single ``advance`` after the last layer. Every schedule
        computes the same function as :meth:`forward`, up to floating-point rounding. The
        work is done by :class:`~futurefill.models.Decoder`.

        Parameters
        ----------
        prompt : integer array of shape (P,) or (B, P), or None
            Prompt token ids. ``None`` starts from ``config.bos`` without a prefill.
        max_new_tokens : int
            Tokens to generate; ``prompt length + max_new_tokens - 1 <= max_len`` (without a
            prompt, ``max_new_tokens <= max_len``).
        options : GenerationOptions, optional
            Schedule, sampling, backend, batch and ``return_logits``.
        **overrides
            Fields of :class:`~futurefill.models.GenerationOptions` (``schedule``,
            ``temperature``, ``seed``, ``backend``, ``batch``, ``return_logits``,
            ``stop_token``), documented there; they override those of ``options``.

        Returns
        -------
        tokens : ndarray of int64, shape (B, n)
            ``n = max_new_tokens``, or fewer with ``stop_token``: up to the step where the
            last sequence produced it (earlier-stopped sequences padded with it).
        logits : ndarray, shape (B, max_new_tokens, vocab_size)
            Only with ``return_logits``; ``logits[:, i]`` equals ``forward(sequence)[:, P-1+i]``
            with ``sequence`` the prompt followed by the generated tokens.

        Examples
        --------
        >>> from futurefill.models import ConvLM
        >>> m = ConvLM(mixer="hyena", dim=8, layers=1, max_len=64, vocab_size=16)
        >>> m.generate([1, 2], 4, schedule="naive", temperature=0.5, seed=0).shape
        (1, 4)
        """
        opts = GenerationOptions.build(options, overrides)
        result = _generate(self, prompt, max_new_tokens, opts)
        if result.logits is not None:
            return result.tokens, result.logits
        return result.tokens

    def decode_state_size(
        self,
        prompt_len: int,
        new_tokens: int,
        options: GenerationOptions | None = None,
        **overrides: Any,
    ) -> DecodeStateSize:
        """Decode-state size of a generation per component, from its plan (nothing allocated).

        ``options`` and ``overrides`` are those of :meth:`generate`; ``schedule``, ``batch``
        and ``backend`` are read.

        Examples
        --------
        >>> from futurefill.models import ConvLM
        >>> m = ConvLM(mixer="hyena", dim=8, layers=1, max_len=64, vocab_size=16)
        >>> s = m.decode_state_size(32, 16, schedule="continuous")
        >>> s.conv_buffer, s.naive_buffer
        (120, 376)
        """
        opts = GenerationOptions.build(options, overrides)
        return decode_state_size(self, prompt_len, new_tokens, opts)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the configuration and weights to a portable ``.npz`` file.

        The file is written at exactly ``path`` (no suffix is added; ``.npz`` is the usual
        one), so ``ConvLM.load(path)`` reads it back.

        Examples
        --------
        >>> import os, tempfile
        >>> from futurefill.models import ConvLM
        >>> model = ConvLM(mixer="hyena", dim=8, layers=2, max_len=32, vocab_size=16)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     model.save(os.path.join(tmp, "model.npz"))
        ...     os.listdir(tmp)
        ['model.npz']
        """
        save_params(path, self._config, self._params)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, max_len_limit: int | None = MAX_LEN_LIMIT
    ) -> ConvLM:
        """Read a model written by :meth:`save`, checking every value in the file.

        Parameters
        ----------
        path : str or path-like
            The file, at exactly this path.
        max_len_limit : int or None
            Largest ``max_len`` accepted (default
            :data:`~futurefill.models.params.MAX_LEN_LIMIT`, ``2**17``): the work and memory
            of the model's filters grow with ``max_len``, which a tiny file can set to any
            value. Pass a larger number (or None) for a file you trust.

        Raises
        ------
        ModelFileError
            (a ``ValueError``) A bad file, configuration or weight, or a ``max_len`` above
            the limit; one line naming the file.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from futurefill.models import ConvLM
        >>> model = ConvLM(mixer="hyena", dim=8, layers=2, max_len=32, vocab_size=16)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     model.save(os.path.join(tmp, "model.npz"))
        ...     copy = ConvLM.load(os.path.join(tmp, "model.npz"))
        >>> copy.config == model.config
        True
        >>> bool(np.array_equal(copy.forward([1, 2, 3]), model.forward([1, 2, 3])))
        True
        """
        cfg, params = load_params(path, max_len_limit=max_len_limit)
        return cls(cfg, params)
