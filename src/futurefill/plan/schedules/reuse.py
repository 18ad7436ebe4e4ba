"""``reuse``: blocks growing by a radix, each input block transformed once for all its tiles.

Level ``k`` cuts the steps into blocks of ``B = direct_below * radix**k`` and groups them
``radix`` at a time (a *super-block* of ``radix * B``, the block of level ``k + 1``). Pairs
(input ``i``, output ``j``) in the same block of ``direct_below`` are summed by the local
window; any other pair is covered by the tile, at the one level where its blocks differ but
their super-blocks do not, from the input's block ``p`` to the output's block ``q = p + m``
(``1 <= m < radix``): inputs ``pB .. pB+B-1``, outputs ``qB .. qB+B-1``, taps ``mB-B+1 ..
mB+B-1``, FFT size ``2B``, run after step ``qB - 1``.

All the tiles of a level share one FFT size and read offset (``B - 1``), so the plan's
:class:`~futurefill.plan.transforms.TransformProgram` transforms each input block once and
keeps its spectrum (a frequency-domain delay line) for the ``radix - 1 - (p mod radix)``
output blocks of its super-block, and inverts each output block once, after adding the
products of all its tiles. Per level and super-block: ``radix - 1`` forward and ``radix - 1``
inverse transforms of size ``2B`` and ``radix (radix - 1) / 2`` spectral products. With
``radix = 2`` this is ``continuous`` (nothing to share); larger radices trade fewer levels
(fewer transforms per step) for more products. Like ``continuous``, an output block is due
the step after its last tile's input block completes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._checks import check_int
from .._plan import Tiling
from ..registry import executor_direct_below, positive_int, register_schedule

__all__ = ["reuse"]


def _tuned_radix(executor: Any, batch: int, channels: int, dtype: Any) -> int | None:
    """The radix ``futurefill tune --radices`` stored for this backend and width, if any
    (the executor's ``default_radix``: ``None`` for executors without tuning)."""
    return executor.default_radix(batch, channels, dtype)


def _radix(name: str, value: Any) -> int:
    """Parameter check: an int ``>= 2``."""
    return check_int(name, value, 2)


@register_schedule(
    "reuse",
    params={"radix": _radix, "direct_below": positive_int},
    defaults={"radix": lambda length, prompt: 8, "direct_below": lambda length, prompt: 1},
    tuned={"direct_below": executor_direct_below, "radix": _tuned_radix},
    max_tasks=lambda length, prompt, radix, **_: length * radix,
    description="blocks growing by a radix; each input block transformed once, each output "
    "block inverted once",
    validate=False,
)
def reuse(length: int, prompt: int, *, radix: int, direct_below: int) -> Tiling:
    """Tiles of a radix-``radix`` block hierarchy, sharing transforms within a level."""
    L, P, r, b = length, prompt, radix, direct_below
    steps = np.arange(L, dtype=np.int64)
    parts = []
    B = b
    while B < L:
        out = np.arange(-(-L // B), dtype=np.int64)  # block indices at this level
        place = out % r  # position inside the super-block
        for m in range(1, r):
            q = out[place >= m]
            src = (q - m) * B
            dst_stop = np.minimum((q + 1) * B, L)
            parts.append(
                (q * B - 1, src, src + B, q * B, dst_stop, np.full_like(q, m * B - B + 1), B)
            )
        B *= r
    if not parts:
        return Tiling(window_start=P + (steps // b) * b)
    t, a, bb, c, d, lo, sizes = zip(*parts, strict=True)
    a_all, d_all = np.concatenate(a), np.concatenate(d)
    tasks = {
        "after_step": np.concatenate(t),
        "src_start": P + a_all,
        "src_stop": P + np.concatenate(bb),
        "dst_start": P + np.concatenate(c),
        "dst_stop": P + d_all,
        "filter_start": np.concatenate(lo),
        "filter_stop": d_all - a_all,  # the largest lag + 1 (cut where the outputs end)
        "fft_size": np.concatenate(
            [np.full(len(x), 2 * s, np.int64) for x, s in zip(t, sizes, strict=True)]
        ),
    }
    return Tiling(window_start=P + (steps // b) * b, tasks=tasks)
