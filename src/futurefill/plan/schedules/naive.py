"""``naive``: every step sums all past inputs directly (O(L^2)), the baseline."""

from __future__ import annotations

import numpy as np

from .._plan import Tiling
from ..registry import register_schedule

__all__ = ["naive"]


@register_schedule("naive", max_tasks=lambda length, prompt: 0, validate=False)
def naive(length: int, prompt: int) -> Tiling:
    """Sum every past input at each step, O(L^2); the prompt inputs are kept."""
    return Tiling(window_start=np.zeros(length, np.int64), keep_prompt=True)
