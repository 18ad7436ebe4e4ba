"""Jit-compiled kernels of the step-by-step path (one ``emit`` and the FutureFill tasks).

Every kernel takes the state buffer as its first argument and donates it, so XLA updates it in
place. Positions (slot, window start, task ranges) are traced ``int32`` scalars; only sizes are
static, so a handful of compilations serve every step of a plan.

XLA inserts a defensive copy of a donated buffer when a slice of it is read by one fusion and
the buffer is updated by another fusion that does not depend on the read (it cannot prove the
read happens first). :func:`after` makes an update index depend on the values read, at no
numerical cost, which keeps every update in place.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["after", "block_task", "emit", "prefix_task"]

Array = Any


def after(index: Array, value: Array) -> Array:
    """Return ``index`` unchanged, but as a value computed from ``value``.

    ``min(0, isnan(sum(value)))`` is always 0, and XLA cannot fold it away, so an update at
    the returned index is ordered after every read that ``value`` depends on.
    """
    return index + jnp.minimum(0, jnp.isnan(jnp.sum(value)).astype(index.dtype))


def _i32(x: Any) -> Array:
    return jnp.asarray(x, dtype=jnp.int32)


@functools.partial(jax.jit, static_argnames=("ch0", "ch1", "m"), donate_argnums=0)
def emit(
    buf: Array, u: Array, taps: Array, slot: Any, start: Any, *, ch0: int, ch1: int, m: int
) -> tuple[Array, Array]:
    """One output of channels ``ch0:ch1`` and the input ``u`` stored in its slot.

    Parameters
    ----------
    buf : array, shape (B, C, Lb)
        State buffer (donated).
    u : array, shape (B, ch1 - ch0)
        Inputs of this step.
    taps : array, shape (C, 2 W)
        :attr:`ConvState.taps_reversed` (``W`` columns) followed by ``W`` zeros.
    slot, start : int
        Buffer slot of this step and first slot of its local window.
    ch0, ch1 : int
        Channel range (static).
    m : int
        Static window size, at least ``slot - start`` (0 when the window is empty).

    Returns
    -------
    buffer, y
        The updated buffer and ``y`` of shape ``(B, ch1 - ch0)``.
    """
    B = buf.shape[0]
    nch = ch1 - ch0
    W = taps.shape[-1] // 2
    slot, start = _i32(slot), _i32(start)
    zero = _i32(0)
    acc = lax.dynamic_slice(buf, (zero, _i32(ch0), slot), (B, nch, 1))[..., 0]
    y = acc + taps[ch0:ch1, W - 1] * u
    if m:
        s0 = jnp.maximum(slot - m, 0)
        win = lax.dynamic_slice(buf, (zero, _i32(ch0), s0), (B, nch, m))
        pos = s0 + jnp.arange(m, dtype=jnp.int32)
        keep = (pos >= start) & (pos < slot)
        tap = lax.dynamic_slice(taps, (_i32(ch0), W - 1 - slot + s0), (nch, m))
        y = y + jnp.sum(jnp.where(keep, win, 0) * tap, axis=-1)
    buf = lax.dynamic_update_slice(buf, u[..., None], (zero, _i32(ch0), after(slot, y)))
    return buf, y


@functools.partial(jax.jit, static_argnames=("k", "n", "r", "w"), donate_argnums=0)
def block_task(
    buf: Array, spectrum: Array, src: Any, dst: Any, *, k: int, n: int, r: int, w: int
) -> Array:
    """Add the contribution of slots ``src .. src+k-1`` to slots ``dst .. dst+w-1``.

    The contribution is entries ``r .. r+w-1`` of the size-``n`` FFT convolution of the block
    with the filter slice whose spectrum is given. Slots past the end of the buffer (the last
    task of a level may be cut at the planned length) are dropped.
    """
    Lb = buf.shape[-1]
    src, dst = _i32(src), _i32(dst)
    block = lax.dynamic_slice_in_dim(buf, src, k, axis=-1)
    z = jnp.fft.irfft(jnp.fft.rfft(block, n=n, axis=-1) * spectrum, n=n, axis=-1)
    z = z[..., r : r + w]
    # dynamic_update_slice clamps its start to Lb - w; shift z by the same amount.
    s = jnp.minimum(dst, Lb - w)
    padded = jnp.concatenate([jnp.zeros_like(z), z], axis=-1)
    piece = lax.dynamic_slice_in_dim(padded, w - (dst - s), w, axis=-1)
    old = lax.dynamic_slice_in_dim(buf, s, w, axis=-1)
    return lax.dynamic_update_slice_in_dim(buf, old + piece, s, axis=-1)


@functools.partial(jax.jit, static_argnames=("n", "lo"), donate_argnums=0)
def prefix_task(
    buf: Array, spectrum: Array, a: Any, b: Any, c: Any, d: Any, *, n: int, lo: int
) -> Array:
    """Add the contribution of slots ``a .. b-1`` to slots ``c .. d-1`` by one FFT of the buffer.

    The buffer's first ``min(n, Lb)`` slots, masked to ``[a, b)``, are convolved with the filter
    slice starting at tap ``lo``; slot ``q`` then receives entry ``q - lo``. The FFT size is the
    same for every task, so one compilation serves the whole epoched schedule. Requires
    ``b <= n`` and ``d - lo <= n`` (checked by the caller).
    """
    Lb = buf.shape[-1]
    mlen = min(n, Lb)
    q = jnp.arange(Lb, dtype=jnp.int32)
    x = jnp.where((q[:mlen] >= a) & (q[:mlen] < b), buf[..., :mlen], 0)
    z = jnp.fft.irfft(jnp.fft.rfft(x, n=n, axis=-1) * spectrum, n=n, axis=-1)
    if n < Lb - lo:
        z = jnp.concatenate([z, jnp.zeros((*z.shape[:-1], Lb - lo - n), z.dtype)], axis=-1)
    shifted = jnp.concatenate([jnp.zeros((*z.shape[:-1], lo), z.dtype), z[..., : Lb - lo]], -1)
    return buf + jnp.where((q >= c) & (q < d), shifted, 0)
