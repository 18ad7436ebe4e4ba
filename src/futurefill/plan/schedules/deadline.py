"""``deadline``: large tiles are due long after their inputs are known (bounded latency).

In ``continuous`` the task after step ``t`` writes output ``t + 1`` on: it is due at the very
next step, so the step after which the tile of size ``L/2`` runs stalls the stream for one
large FFT. Here tiles of size ``k >= slack_from`` (``S``) are due ``k`` steps after the last
input they read, which lets an executor run them in the background or spread them over the
steps before they are due (the NumPy executor does both: a worker thread, earliest deadline
first, and pieces taken over by the stepping thread when the worker falls behind), so that no
step pays for a large transform; the smaller tiles stay due at once, as in ``continuous``.

With block index ``i // k`` of position ``i`` at level ``k``, pairs (input ``i``, output
``j``) are covered as follows, exactly once each:

* same block of ``direct_below = k0``: the local window;
* same block of ``S``, different blocks of ``k0``: the ``continuous`` tiles of the levels
  ``k0 <= k < S``;
* adjacent blocks of ``S``: one ``S x S`` tile after each block of ``S``;
* blocks of ``S`` two or more apart: at the largest level ``k >= S`` with ``j // k - i // k
  >= 2`` (a Whitney decomposition of the triangle): that difference is then 2, or 3 with
  ``i // k`` even, so level ``k`` has a ``k x k`` tile from block ``p`` (odd) to block
  ``p + 2`` and a ``k x 2k`` tile from block ``p`` (even) to blocks ``p + 2, p + 3``, due
  ``k`` steps after block ``p`` is complete.

The price of the slack is work: at each level ``k >= S``, per two blocks, one FFT of size
``3k`` and one of size ``2k`` where ``continuous`` has one of size ``2k`` (at ``L = 65536``,
``S = 512``: 6.4 offline floors of transforms and products against 3.8).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._plan import Tiling
from ..registry import executor_direct_below, power_of_two, register_schedule

__all__ = ["deadline"]


#: Default smallest tile given slack, in units of ``direct_below`` when a backend tunes it.
SLACK_BLOCKS = 8


def _default_slack_from(executor: Any, batch: int, channels: int, dtype: Any) -> int:
    return SLACK_BLOCKS * executor_direct_below(executor, batch, channels, dtype)


@register_schedule(
    "deadline",
    params={"direct_below": power_of_two, "slack_from": power_of_two},
    defaults={
        "direct_below": lambda length, prompt: 1,
        "slack_from": lambda length, prompt: 512,
    },
    tuned={"direct_below": executor_direct_below, "slack_from": _default_slack_from},
    max_tasks=lambda length, prompt, direct_below, slack_from: _max_tasks(
        length, direct_below, slack_from
    ),
    description="tiles of size >= slack_from due as many steps after their inputs",
)
def deadline(length: int, prompt: int, *, direct_below: int, slack_from: int) -> Tiling:
    """``continuous`` below ``slack_from``; a Whitney decomposition with slack above it."""
    L, P, k0 = length, prompt, direct_below
    S = max(slack_from, k0)
    steps = np.arange(L, dtype=np.int64)
    parts = [_small_levels(L, k0, S)]
    ends = np.arange(S, L, S, dtype=np.int64)  # ends of the blocks of S with a future
    parts.append((ends - S, ends, ends, np.minimum(ends + S, L)))
    k = S
    while 2 * k < L:
        starts = np.arange(0, L - 2 * k, k, dtype=np.int64)  # blocks with an output block
        odd = (starts // k) % 2 == 1
        width = np.where(odd, k, 2 * k)  # odd blocks: one output block; even: two
        dst = starts + 2 * k
        parts.append((starts, starts + k, dst, np.minimum(dst + width, L)))
        k *= 2
    a, b, c, d = (np.concatenate(col) for col in zip(*parts, strict=True))
    lo, hi = c - b + 1, d - a  # the lags of the rectangle
    tasks = {
        "after_step": b - 1,
        "src_start": P + a,
        "src_stop": P + b,
        "dst_start": P + c,
        "dst_stop": P + d,
        "filter_start": lo,
        "filter_stop": hi,
        "fft_size": _fft_size(d - a - lo),  # no wrap-around onto the outputs
    }
    return Tiling(window_start=P + (steps // k0) * k0, tasks=tasks)


def _max_tasks(L: int, k0: int, S: int) -> int:
    """The number of tasks :func:`deadline` makes (counted level by level, in O(log L))."""
    S = max(S, k0)
    small, k = 0, k0
    while k < S:  # the steps t with lowbit(t + 1) = k
        small += len(range(k, L, 2 * k))
        k *= 2
    tiles = len(range(S, L, S))
    k = S
    while 2 * k < L:
        tiles += len(range(0, L - 2 * k, k))
        k *= 2
    return small + tiles


def _small_levels(L: int, k0: int, S: int) -> tuple[np.ndarray, ...]:
    """The ``continuous`` tiles of the levels ``k0 <= k < S`` (inside blocks of ``S``)."""
    t1 = np.arange(1, L, dtype=np.int64)  # t + 1 for every step with a future
    k = t1 & -t1
    keep = (k >= k0) & (k < S)
    t1, k = t1[keep], k[keep]
    return t1 - k, t1, t1, np.minimum(t1 + k, L)


def _fft_size(need: np.ndarray) -> np.ndarray:
    """The smallest ``2**m`` or ``3 * 2**m`` at least ``need`` (sizes FFTs do well)."""
    need = np.maximum(need, 1)
    pow2 = 1 << np.ceil(np.log2(need)).astype(np.int64)
    three = 3 * (1 << np.maximum(np.ceil(np.log2(need / 3)), 0).astype(np.int64))
    return np.where((three >= need) & (three < pow2), three, pow2)
