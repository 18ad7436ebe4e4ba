"""``epoched``: at each epoch start, fill the next epoch's outputs from all past inputs.

O(L^1.5 sqrt(log L)) with the authors' epoch ``int(sqrt(L log2 L))``. One fixed filter slice
``phi[1:L]`` and one FFT size ``>= L - 1`` serve every epoch, so a single filter spectrum is
computed once (the fixed-size variant of the algorithm).
"""

from __future__ import annotations

import math

import numpy as np

from ..._checks import next_pow2
from .._plan import Tiling
from ..registry import positive_int, register_schedule

__all__ = ["default_epoch", "epoched"]


def default_epoch(length: int, prompt: int = 0) -> int:
    """The authors' epoch length ``int(sqrt(L * log2 L))``, at least 1 and at most ``L``.

    Examples
    --------
    >>> from futurefill.plan import default_epoch, make_plan
    >>> default_epoch(16), default_epoch(1024)
    (8, 101)
    >>> make_plan(16, "epoched").spec.get("epoch")
    8
    """
    return max(1, min(length, int(math.sqrt(length * math.log2(max(length, 2))))))


@register_schedule(
    "epoched",
    params={"epoch": positive_int},
    defaults={"epoch": default_epoch},
    max_tasks=lambda length, prompt, epoch: length // epoch,
    validate=False,
)
def epoched(length: int, prompt: int, *, epoch: int) -> Tiling:
    """Fill the next ``epoch`` outputs from all past inputs at each epoch start."""
    L, P, E = length, prompt, epoch
    steps = np.arange(L, dtype=np.int64)
    t0 = np.arange(E, L, E, dtype=np.int64)  # first step of every epoch but the first
    tasks = {
        "after_step": t0 - 1,
        "src_start": np.full_like(t0, P),
        "src_stop": P + t0,
        "dst_start": P + t0,
        "dst_stop": P + np.minimum(t0 + E, L),
        "filter_start": np.ones_like(t0),
        "filter_stop": np.full_like(t0, L),
        "fft_size": np.full_like(t0, next_pow2(max(L - 1, 1))),
    }
    return Tiling(window_start=P + (steps // E) * E, tasks=tasks)
