"""The Hyena-style mixer of the reference models (order 2, implicit long filters)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..filters import hyena_filters
from .config import ModelConfig
from .layers import short_conv
from .mixer_base import Array, Mixer, State, Weights

__all__ = ["HyenaMixer"]


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

    def sequence_inputs(
        self, w: Weights, h: Array, xp: Any, state: State | None = None
    ) -> tuple[Array, Array, State]:
        proj = h @ w["mixer.w_in"] + w["mixer.b_in"]
        seen = proj  # the projected positions so far that the short convolution reads
        if state is not None:  # the positions before the chunk, oldest first
            seen = xp.concat([*(p[:, None, :] for p in reversed(state)), proj], axis=1)
        T, S = proj.shape[1], seen.shape[1]
        x0, x1, v = self._split(short_conv(seen, w["mixer.short"], xp)[:, S - T :, :])
        zeros = xp.zeros_like(proj[:, 0, :])
        after = tuple(seen[:, S - m, :] if m <= S else zeros for m in range(1, self.width))
        return v * x1, x0, after

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
