"""``continuous``: after step ``t``, fill the dyadic block ``lowbit(t + 1)`` (O(L log^2 L)).

The task after step ``t`` (with ``k = lowbit(t + 1)``) adds inputs ``t+1-k .. t`` to outputs
``t+1 .. t+k``. With ``direct_below = k0`` the pairs inside an aligned block of ``k0`` steps
are summed directly at emit time instead (one window per block), so only levels ``k >= k0``
are tasks. Taps ``phi[1:2k]`` serve every block of level ``k`` (one spectrum per level); the
top level may be cut at ``L`` taps, which is all that outputs ``< L`` can need.
"""

from __future__ import annotations

import numpy as np

from .._plan import Tiling
from ..registry import executor_direct_below, power_of_two, register_schedule

__all__ = ["continuous"]


@register_schedule(
    "continuous",
    params={"direct_below": power_of_two},
    defaults={"direct_below": lambda length, prompt: 1},
    tuned={"direct_below": executor_direct_below},
    validate=False,
)
def continuous(length: int, prompt: int, *, direct_below: int) -> Tiling:
    """Fill dyadic blocks: the task after step ``t`` has size ``lowbit(t + 1)``."""
    L, P, k0 = length, prompt, direct_below
    steps = np.arange(L, dtype=np.int64)
    t1 = steps[:-1] + 1  # t + 1 for every step with a future
    k = t1 & -t1  # lowbit(t + 1)
    keep = k >= k0
    t1, k = t1[keep], k[keep]
    tasks = {
        "after_step": t1 - 1,
        "src_start": P + t1 - k,
        "src_stop": P + t1,
        "dst_start": P + t1,
        "dst_stop": P + np.minimum(t1 + k, L),
        "filter_start": np.ones_like(k),
        "filter_stop": np.minimum(2 * k, L),
        "fft_size": 2 * k,
    }
    return Tiling(window_start=P + (steps // k0) * k0, tasks=tasks)
