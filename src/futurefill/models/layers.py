"""Position-wise building blocks written against the array API (``xp`` passed explicitly).

Nothing here mutates its arguments, so the same code serves NumPy, PyTorch, JAX and
``array_api_strict``. Activations have the feature axis last: ``(B, T, D)`` for a sequence,
``(B, D)`` for one position.
"""

from __future__ import annotations

import math
from typing import Any

from .._compat import device_of

__all__ = ["causal_shift", "embed", "gelu", "mlp", "rms_norm", "short_conv"]

Array = Any

_GELU_C = math.sqrt(2.0 / math.pi)


def rms_norm(x: Array, gain: Array, eps: float, xp: Any) -> Array:
    """``x / rms(x) * gain`` over the last axis."""
    return x / xp.sqrt(xp.mean(x * x, axis=-1, keepdims=True) + eps) * gain


def gelu(x: Array, xp: Any) -> Array:
    """GELU, tanh approximation."""
    return 0.5 * x * (1.0 + xp.tanh(_GELU_C * (x + 0.044715 * (x * x * x))))


def mlp(x: Array, w: dict[str, Array], xp: Any) -> Array:
    """Two-layer perceptron ``gelu(x @ w1 + b1) @ w2 + b2``."""
    return gelu(x @ w["mlp.w1"] + w["mlp.b1"], xp) @ w["mlp.w2"] + w["mlp.b2"]


def embed(table: Array, tokens: Array, xp: Any) -> Array:
    """Rows of ``table`` ``(V, D)`` for integer ``tokens`` of any shape: ``(*shape, D)``."""
    rows = xp.take(table, xp.reshape(tokens, (-1,)), axis=0)
    return xp.reshape(rows, (*tokens.shape, table.shape[-1]))


def causal_shift(x: Array, lag: int, xp: Any) -> Array:
    """``x`` ``(B, T, C)`` delayed by ``lag`` positions along ``T``, zeros shifted in."""
    B, T, C = x.shape
    zeros = xp.zeros((B, min(lag, T), C), dtype=x.dtype, device=device_of(x))
    return xp.concat([zeros, x[:, : max(T - lag, 0), :]], axis=1)


def short_conv(x: Array, taps: Array, xp: Any) -> Array:
    """Causal depthwise convolution of a sequence ``(B, T, C)`` with ``taps`` ``(W, C)``.

    ``y[:, t] = sum_m taps[m] * x[:, t - m]`` (lag ``m`` first), zero before the start.
    """
    y = taps[0, :] * x
    for m in range(1, taps.shape[0]):
        y = y + taps[m, :] * causal_shift(x, m, xp)
    return y
