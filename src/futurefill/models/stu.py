"""The STU mixers of the reference models: STU-T and the full STU layer.

Both are built on the spectral filters of :func:`futurefill.filters.stu_filters` and on the
two branches of the STU: the positive one convolves the input with each filter; the negative
one convolves the sign-alternated input ``(-1)^t u[t]`` with the *same* filters and alternates
the sign of the output back, ``(-1)^t (phi * alt(u))[t] = (alt(phi) * u)[t]``, so it is again a
causal convolution per channel. The sign flip sits on the input and the output, not on the
filter: every channel of both branches is an ordinary channel of the shared
:class:`futurefill.OnlineConv` and runs under any schedule, with no special plan.
"""

from __future__ import annotations

import math
from typing import Any, Literal, cast

import numpy as np

from .._compat import device_of
from ..filters import stu_filters
from .config import ModelConfig
from .mixer_base import Array, Mixer, State, Weights

__all__ = ["FullSTUMixer", "STUMixer", "spectral_basis"]


def spectral_basis(cfg: ModelConfig) -> np.ndarray:
    """The ``K`` spectral filters ``(K, max_len)`` of an STU mixer's configuration (cached)."""
    hankel = cast(Literal["standard", "L"], cfg.stu_hankel)  # checked by ModelConfig
    return cast(np.ndarray, stu_filters(cfg.max_len, cfg.stu_k, hankel=hankel))


class STUMixer(Mixer):
    """STU-T: ``x~ = h @ M_in``; ``y = x~ * phi~ + x~ * alt(phi~)`` with ``phi~ = Phi @ M_filt``.

    ``Phi`` are the ``K`` spectral filters (:func:`futurefill.filters.stu_filters`, Hankel
    matrix ``cfg.stu_hankel``) and ``alt(phi)[m] = (-1)^m phi[m]``. The second term is the
    negative branch (``alt(alt(x~) * phi~)`` is ``x~ * alt(phi~)``); with
    ``cfg.stu_branches == "plus"`` it is left out. Both convolutions read the same inputs
    ``x~``, so by linearity they are one depthwise convolution with ``phi~ + alt(phi~)``, which
    is ``2 phi~[m]`` at even lags and ``0`` at odd lags: a ``D``-channel long convolution. The
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
        basis = spectral_basis(cfg)  # (K, N)
        projected = np.asarray(w["mixer.m_filt"], dtype=np.float64).T @ basis  # (D, N)
        if cfg.stu_branches == "plus":
            return projected
        fold = np.where(np.arange(cfg.max_len) % 2 == 0, 2.0, 0.0)
        return projected * fold

    def sequence_inputs(
        self, w: Weights, h: Array, xp: Any, state: State | None = None
    ) -> tuple[Array, Array, State]:
        return h @ w["mixer.m_in"], None, ()

    def position_inputs(
        self, w: Weights, h: Array, state: State, xp: Any
    ) -> tuple[Array, Array, State]:
        return h @ w["mixer.m_in"], None, ()

    def outputs(self, w: Weights, y: Array, u: Array, aux: Array, xp: Any) -> Array:
        return y


def alternating_sign(length: int, like: Array, xp: Any) -> Array:
    """``(-1)^t`` for ``t = 0 .. length - 1`` as a ``(length, 1)`` column, ``like``'s dtype."""
    t = xp.arange(length, device=device_of(like))
    return xp.reshape(xp.astype(1 - 2 * (t % 2), like.dtype), (length, 1))


class FullSTUMixer(Mixer):
    """The full STU layer: every spectral filter on every input channel, then projections.

    With ``phi_k`` the ``K`` spectral filters (:func:`spectral_basis`) and ``h`` the ``D``
    input channels, the positive branch is ``U+[t, k, d] = (phi_k * h_d)[t]`` and the negative
    branch ``U-[t, k, d] = (-1)^t (phi_k * alt(h_d))[t]`` with ``alt(h)[t] = (-1)^t h[t]``;
    the output is ``y[t] = sum_{k,d} U+[t, k, d] M+[k, d, :] + U-[t, k, d] M-[k, d, :]``
    (``stu_branches="plus"``: the first sum alone, no ``M-``).

    Long-convolution channels, ``K * D`` per branch: channel ``k * D + d`` of the positive
    branch reads ``h_d`` through ``phi_k``; the negative branch follows with the same filters
    on the inputs ``(-1)^t h_d[t]``, its outputs multiplied by ``(-1)^t`` again. The flip is
    on the input and the output, not on the filter, so the negative branch needs no schedule
    of its own. The parity of the position is the mixer's state (one value; any consistent
    start works, since the two flips cancel).
    """

    name = "stu_full"

    @staticmethod
    def _branches(cfg: ModelConfig) -> int:
        return 2 if cfg.stu_branches == "both" else 1

    def init(self, cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
        K, D = cfg.stu_k, cfg.dim
        names = ("mixer.m_plus", "mixer.m_minus")[: self._branches(cfg)]
        return {n: rng.standard_normal((K, D, D)) / math.sqrt(K * D) for n in names}

    def shapes(self, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
        names = ("mixer.m_plus", "mixer.m_minus")[: self._branches(cfg)]
        return {n: (cfg.stu_k, cfg.dim, cfg.dim) for n in names}

    def long_channels(self, cfg: ModelConfig) -> int:
        return self._branches(cfg) * cfg.stu_k * cfg.dim

    def long_filters(self, cfg: ModelConfig, w: dict[str, np.ndarray]) -> np.ndarray:
        per_branch = np.repeat(spectral_basis(cfg), cfg.dim, axis=0)  # row k * D + d: phi_k
        return np.concatenate([per_branch] * self._branches(cfg), axis=0)

    @staticmethod
    def _tiled(w: Weights, h: Array, xp: Any) -> Array:
        """``h`` ``(..., D)`` once per filter: ``(..., K * D)``, channel ``k * D + d`` is ``d``."""
        return xp.concat([h] * w["mixer.m_plus"].shape[0], axis=-1)

    def sequence_inputs(
        self, w: Weights, h: Array, xp: Any, state: State | None = None
    ) -> tuple[Array, Array, State]:
        tiled = self._tiled(w, h, xp)
        if "mixer.m_minus" not in w:
            return tiled, None, ()
        T = h.shape[1]
        sign = alternating_sign(T, h, xp)  # (T, 1)
        if state:  # the sign of the chunk's first position, per sequence (B, 1)
            sign = state[0][:, None, :] * sign  # (B, T, 1)
            return xp.concat([tiled, sign * tiled], axis=-1), sign, (-sign[:, T - 1, :],)
        return xp.concat([tiled, sign * tiled], axis=-1), sign, (-sign[T - 1 :, :],)

    def position_inputs(
        self, w: Weights, h: Array, state: State, xp: Any
    ) -> tuple[Array, Array, State]:
        tiled = self._tiled(w, h, xp)
        if not state:
            return tiled, None, ()
        (sign,) = state  # (1, 1): (-1)^t
        return xp.concat([tiled, sign * tiled], axis=-1), sign, (-sign,)

    def initial_state(self, w: Weights, batch: int, xp: Any, device: Any) -> State:
        if "mixer.m_minus" not in w:
            return ()
        return (xp.ones((1, 1), dtype=w["mixer.m_plus"].dtype, device=device),)

    def state_values(self, cfg: ModelConfig, batch: int) -> int:
        return self._branches(cfg) - 1

    def outputs(self, w: Weights, y: Array, u: Array, aux: Array, xp: Any) -> Array:
        m_plus = w["mixer.m_plus"]
        KD = m_plus.shape[0] * m_plus.shape[1]
        out = y[..., :KD] @ xp.reshape(m_plus, (KD, m_plus.shape[2]))
        if aux is None:
            return out
        m_minus = xp.reshape(w["mixer.m_minus"], (KD, m_plus.shape[2]))
        return out + aux * (y[..., KD:] @ m_minus)
