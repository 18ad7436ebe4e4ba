"""Traced kernels: one ``emit`` and one task's contribution, shared by the functional API,
the step-by-step executor and the compiled rollout (they are jit-compiled by their callers).

Positions (slot, window start, task ranges) are traced ``int32`` scalars; only sizes are
static, so a handful of compilations serve every step of a plan.

XLA inserts a defensive copy of a donated buffer when a slice of it is read by one fusion and
the buffer is updated by another fusion that does not depend on the read (it cannot prove the
read happens first). :func:`after` makes an update index depend on the values read, at no
numerical cost, which keeps every update in place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, PartitionSpec

from ._classes import Kernel

__all__ = ["Spmd", "after", "contribution", "emit", "known", "per_shard", "store"]

Array = Any


def after(index: Array, value: Array) -> Array:
    """Return ``index`` unchanged, but as a value computed from ``value``.

    ``min(0, isnan(sum(value)))`` is always 0, and XLA cannot fold it away, so an update at
    the returned index is ordered after every read that ``value`` depends on.
    """
    return index + jnp.minimum(0, jnp.isnan(jnp.sum(value)).astype(index.dtype))


def _i32(x: Any) -> Array:
    return jnp.asarray(x, dtype=jnp.int32)


def known(buf: Array, taps: Array, slot: Any, start: Any, *, ch0: int, ch1: int, m: int) -> Array:
    """What the outputs of channels ``ch0:ch1`` at ``slot`` owe to the past: the future filled
    so far plus the local window's older inputs (the buffer is only read).

    Parameters
    ----------
    buf : array, shape (B, C, Lb)
        State buffer.
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
    array, shape (B, ch1 - ch0)
        The output is this plus ``phi[0] * u`` (:func:`emit`).
    """
    B = buf.shape[0]
    nch = ch1 - ch0
    W = taps.shape[-1] // 2
    slot, start = _i32(slot), _i32(start)
    zero = _i32(0)
    y = lax.dynamic_slice(buf, (zero, _i32(ch0), slot), (B, nch, 1))[..., 0]
    if m:
        s0 = jnp.maximum(slot - m, 0)
        win = lax.dynamic_slice(buf, (zero, _i32(ch0), s0), (B, nch, m))
        pos = s0 + jnp.arange(m, dtype=jnp.int32)
        keep = (pos >= start) & (pos < slot)
        tap = lax.dynamic_slice(taps, (_i32(ch0), W - 1 - slot + s0), (nch, m))
        y = y + jnp.sum(jnp.where(keep, win, 0) * tap, axis=-1)
    return y


def store(buf: Array, u: Array, slot: Any, *, ch0: int, read: Array) -> Array:
    """``buf`` with the inputs ``u`` ``(B, c)`` of channels ``ch0 ..`` stored in ``slot``,
    ordered after every read that ``read`` depends on (see :func:`after`)."""
    zero = _i32(0)
    return lax.dynamic_update_slice(buf, u[..., None], (zero, _i32(ch0), after(_i32(slot), read)))


def emit(
    buf: Array, u: Array, taps: Array, slot: Any, start: Any, *, ch0: int, ch1: int, m: int
) -> tuple[Array, Array]:
    """The output ``y`` of channels ``ch0:ch1`` (:func:`known` plus ``phi[0] * u``), then
    their inputs stored (:func:`store`): the updated buffer and ``y``."""
    W = taps.shape[-1] // 2
    y = known(buf, taps, slot, start, ch0=ch0, ch1=ch1, m=m) + taps[ch0:ch1, W - 1] * u
    return store(buf, u, slot, ch0=ch0, read=y), y


class Spmd(NamedTuple):
    """Where a sharded state lies: its mesh and the mesh axes of the batch and the channels
    (``None``: not split)."""

    mesh: Mesh
    batch_axis: str | None
    channel_axis: str | None


def per_shard(
    fn: Callable[[Array, Array], Array], spmd: Spmd | None, *, channels: bool = True
) -> Callable[[Array, Array], Array]:
    """``fn(x, spectrum)`` of blocks ``x`` ``(B, C, ...)`` and filter spectra ``(C, ...)``
    (result ``(B, C, ...)``), run by every device on its own shard when ``spmd`` is given
    (``shard_map``; ``channels=False``: every device gets all channels of its batch rows).

    XLA's SPMD partitioner does not split an FFT over its batch axes: it gathers the operand
    on every device, and XLA:CPU then rejects the gathered operand's layout (``RET_CHECK ...
    fft_thunk.cc ... IsMonotonicWithDim0Major``).
    """
    if spmd is None:
        return fn
    b, c = spmd.batch_axis, spmd.channel_axis if channels else None
    return jax.shard_map(
        fn,
        mesh=spmd.mesh,
        in_specs=(PartitionSpec(b, c), PartitionSpec(c)),
        out_specs=PartitionSpec(b, c),
    )


def _convolve(x: Array, spectrum: Array, *, n: int) -> Array:
    """Circular convolutions of size ``n`` of blocks ``x`` with filter spectra, by real FFTs."""
    return jnp.fft.irfft(jnp.fft.rfft(x, n=n, axis=-1) * spectrum, n=n, axis=-1)


def contribution(
    src: Array,
    operand: Array,
    rows: tuple[Any, Any, Any, Any],
    cls: Kernel,
    *,
    dst_length: int,
    direct: bool = False,
    clamp: bool = True,
    spmd: Spmd | None = None,
) -> tuple[Array, Array]:
    """One task of class ``cls``: where to add (``w``) and what (``piece``, ``m`` slots).

    Parameters
    ----------
    src : array, shape (B, C, Ls)
        Array holding the task's inputs at slots ``a .. b-1``.
    operand : array
        The class's filter spectrum, or with ``direct`` its Toeplitz taps ``(C, m, k)``.
    rows : tuple
        Traced ``(a, b, c, d)``: source and target slots.
    cls : Kernel
        Static sizes of the class.
    dst_length : int
        Length of the array the piece is added to; a window that would run past its end is
        moved back, and the piece with it.
    direct : bool
        Multiply by the Toeplitz taps instead of an FFT (uniform classes only).
    clamp : bool
        Whether windows may run past the end of the arrays (``False`` when they are padded).
    spmd : Spmd, optional
        Where the arrays lie when sharded (see :func:`per_shard`).
    """
    a, b, c, d = (_i32(v) for v in rows)
    k, m, n, lo = cls.k, cls.m, cls.fft_size, cls.filter_start
    s = jnp.minimum(a, src.shape[-1] - k)
    x = lax.dynamic_slice_in_dim(src, s, k, axis=-1)
    w = jnp.minimum(c, dst_length - m)
    if cls.uniform:  # s == a, and the first target is at a fixed place of the convolution
        if direct:
            # The product as k multiply-adds in a fixed order (not a dot, whose order of
            # additions depends on the batch): sharded and unsharded runs agree bit for bit.
            z = x[..., 0, None] * operand[..., 0]
            for i in range(1, k):
                z = z + x[..., i, None] * operand[..., i]
        else:
            z = per_shard(functools.partial(_convolve, n=n), spmd)(x, operand)
            z = z[..., cls.read_start : cls.read_start + m]
        if not clamp:
            return w, z
        # Targets run past the end only for a task cut there: shift z by the same amount.
        padded = jnp.concatenate([jnp.zeros_like(z), z], axis=-1)
        return w, lax.dynamic_slice_in_dim(padded, m - (c - w), m, axis=-1)
    pos = jnp.arange(k, dtype=jnp.int32)
    x = jnp.where((pos >= a - s) & (pos < b - s), x, 0)
    z = per_shard(functools.partial(_convolve, n=n), spmd)(x, operand)
    # Target slot w + i is entry (w + i - s - lo) of the linear convolution; the circular one
    # equals it there (no wrap-around reaches the targets), so read it modulo n.
    piece = lax.dynamic_slice_in_dim(
        jnp.concatenate([z, z], axis=-1), jnp.mod(w - s - lo, n), m, axis=-1
    )
    q = jnp.arange(m, dtype=jnp.int32)
    return w, jnp.where((q >= c - w) & (q < d - w), piece, 0)
