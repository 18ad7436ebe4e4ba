"""Sequence mixers of the reference models, split around their long convolution.

A mixer is a position-wise *input* map (producing the long-convolution inputs ``u``), the
depthwise long convolution itself (run by the caller: offline by FFT for a whole sequence,
online by :class:`futurefill.OnlineConv` during generation) and a position-wise *output* map.
Keeping the convolution outside lets one ``OnlineConv`` serve the channels of every layer.

Weights are dicts keyed ``"mixer.<name>"``; activations have features last.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..filters import hyena_filters, stu_filters
from .config import ModelConfig
from .layers import short_conv

__all__ = ["HyenaMixer", "Mixer", "STUMixer", "get_mixer"]

Array = Any
Weights = dict[str, Array]
#: Per-position state a mixer keeps outside the long convolution (``()`` for none).
State = tuple[Array, ...]


class Mixer:
    """Interface of a mixer (all methods are static in spirit; instances hold no data)."""

    name: ClassVar[str]

    def init(self, cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Seeded random weights (float64, NumPy)."""
        raise NotImplementedError

    def shapes(self, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
        """Shape of every weight :meth:`init` returns."""
        raise NotImplementedError

    def long_channels(self, cfg: ModelConfig) -> int:
        """Number of long-convolution channels of one layer."""
        raise NotImplementedError

    def long_filters(self, cfg: ModelConfig, w: dict[str, np.ndarray]) -> np.ndarray:
        """The layer's long filters ``(C, max_len)`` on the host."""
        raise NotImplementedError

    def sequence_inputs(self, w: Weights, h: Array, xp: Any) -> tuple[Array, Array, State]:
        """``h`` ``(B, T, D)`` -> (conv inputs ``(B, T, C)``, aux for :meth:`outputs`, state
        after the last position)."""
        raise NotImplementedError

    def position_inputs(
        self, w: Weights, h: Array, state: State, xp: Any
    ) -> tuple[Array, Array, State]:
        """``h`` ``(B, D)`` at one position -> (conv inputs ``(B, C)``, aux, new state)."""
        raise NotImplementedError

    def initial_state(self, w: Weights, batch: int, xp: Any, device: Any) -> State:
        """State before the first position."""
        return ()

    def state_values(self, cfg: ModelConfig, batch: int) -> int:
        """Number of values in the state of one layer."""
        return 0

    def outputs(self, w: Weights, y: Array, u: Array, aux: Array, xp: Any) -> Array:
        """Conv outputs ``y`` and inputs ``u`` (``(..., C)``) -> mixer output ``(..., D)``."""
        raise NotImplementedError


class STUMixer(Mixer):
    """STU-T: ``x~ = h @ M_in``; ``y = x~ * phi~ + x~ * alt(phi~)`` with ``phi~ = Phi @ M_filt``.

    ``Phi`` are the ``K`` spectral filters (:func:`futurefill.filters.stu_filters`) and
    ``alt(phi)[m] = (-1)^m phi[m]``. Both convolutions read the same inputs ``x~``, so by
    linearity they are one depthwise convolution with ``phi~ + alt(phi~)``, which is
    ``2 phi~[m]`` at even lags and ``0`` at odd lags: a ``D``-channel long convolution. The
    twin is folded into the filter rather than kept as ``D`` more channels, halving the state
    and the work of generation without changing the function.
    """

    name = "stu"

    def init(self, cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
        D, K = cfg.dim, cfg.stu_k
        return {
            "mixer.m_in": rng.standard_normal((D, D)) / math.sqrt(D),
            "mixer.m_filt": rng.standard_normal((K, D)) / math.sqrt(K),
        }

    def shapes(self, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
        return {"mixer.m_in": (cfg.dim, cfg.dim), "mixer.m_filt": (cfg.stu_k, cfg.dim)}

    def long_channels(self, cfg: ModelConfig) -> int:
        return cfg.dim

    def long_filters(self, cfg: ModelConfig, w: dict[str, np.ndarray]) -> np.ndarray:
        basis = stu_filters(cfg.max_len, cfg.stu_k)  # (K, N), cached
        projected = np.asarray(w["mixer.m_filt"], dtype=np.float64).T @ basis  # (D, N)
        fold = np.where(np.arange(cfg.max_len) % 2 == 0, 2.0, 0.0)
        return projected * fold

    def sequence_inputs(self, w: Weights, h: Array, xp: Any) -> tuple[Array, Array, State]:
        return h @ w["mixer.m_in"], None, ()

    def position_inputs(
        self, w: Weights, h: Array, state: State, xp: Any
    ) -> tuple[Array, Array, State]:
        return h @ w["mixer.m_in"], None, ()

    def outputs(self, w: Weights, y: Array, u: Array, aux: Array, xp: Any) -> Array:
        return y


class HyenaMixer(Mixer):
    """Hyena-style mixer (order 2).

    ``(x0, x1, v) = short_conv(h @ W_in + b_in)`` (causal, depthwise, width 3);
    ``u = v * x1``; ``z = h_long * u + bias * u``; output ``(z * x0) @ W_out + b_out``, with
    ``h_long`` the implicit filters of :func:`futurefill.filters.hyena_filters`. During
    generation the short convolution keeps the last two projected positions (``O(1)`` state).
    """

    name = "hyena"
    width = 3

    def init(self, cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
        D = cfg.dim
        return {
            "mixer.w_in": rng.standard_normal((D, 3 * D)) / math.sqrt(D),
            "mixer.b_in": 0.1 * rng.standard_normal(3 * D),
            "mixer.short": rng.standard_normal((self.width, 3 * D)) / math.sqrt(self.width),
            "mixer.filter": hyena_filters(D, cfg.max_len, seed=int(rng.integers(2**31))),
            "mixer.bias": rng.standard_normal(D),
            "mixer.w_out": rng.standard_normal((D, D)) / math.sqrt(D),
            "mixer.b_out": np.zeros(D),
        }

    def shapes(self, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
        D = cfg.dim
        return {
            "mixer.w_in": (D, 3 * D),
            "mixer.b_in": (3 * D,),
            "mixer.short": (self.width, 3 * D),
            "mixer.filter": (D, cfg.max_len),
            "mixer.bias": (D,),
            "mixer.w_out": (D, D),
            "mixer.b_out": (D,),
        }

    def long_channels(self, cfg: ModelConfig) -> int:
        return cfg.dim

    def long_filters(self, cfg: ModelConfig, w: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(w["mixer.filter"], dtype=np.float64)

    @staticmethod
    def _split(s: Array) -> tuple[Array, Array, Array]:
        D = s.shape[-1] // 3
        return s[..., :D], s[..., D : 2 * D], s[..., 2 * D :]

    def sequence_inputs(self, w: Weights, h: Array, xp: Any) -> tuple[Array, Array, State]:
        proj = h @ w["mixer.w_in"] + w["mixer.b_in"]
        x0, x1, v = self._split(short_conv(proj, w["mixer.short"], xp))
        T = proj.shape[1]
        zeros = xp.zeros_like(proj[:, 0, :])
        state = tuple(proj[:, T - m, :] if m <= T else zeros for m in range(1, self.width))
        return v * x1, x0, state

    def position_inputs(
        self, w: Weights, h: Array, state: State, xp: Any
    ) -> tuple[Array, Array, State]:
        proj = h @ w["mixer.w_in"] + w["mixer.b_in"]
        taps = w["mixer.short"]
        s = taps[0, :] * proj
        for m, past in enumerate(state, start=1):
            s = s + taps[m, :] * past
        x0, x1, v = self._split(s)
        return v * x1, x0, (proj, *state[:-1])

    def initial_state(self, w: Weights, batch: int, xp: Any, device: Any) -> State:
        shape = (batch, w["mixer.w_in"].shape[-1])
        dtype = w["mixer.w_in"].dtype
        return tuple(xp.zeros(shape, dtype=dtype, device=device) for _ in range(1, self.width))

    def state_values(self, cfg: ModelConfig, batch: int) -> int:
        return (self.width - 1) * batch * 3 * cfg.dim

    def outputs(self, w: Weights, y: Array, u: Array, aux: Array, xp: Any) -> Array:
        z = y + w["mixer.bias"] * u
        return (z * aux) @ w["mixer.w_out"] + w["mixer.b_out"]


_MIXERS: dict[str, Mixer] = {m.name: m for m in (STUMixer(), HyenaMixer())}


def get_mixer(name: str) -> Mixer:
    """The mixer called ``name`` (``"stu"`` or ``"hyena"``)."""
    try:
        return _MIXERS[name]
    except KeyError:
        raise ValueError(f"unknown mixer {name!r}; choose one of {sorted(_MIXERS)}") from None
