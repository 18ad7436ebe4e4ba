"""Token ids at the models' boundary: integers in ``0 .. vocab_size - 1``, on every backend.

An embedding lookup would not catch a bad id the same way everywhere: NumPy and PyTorch wrap
``-1`` around to the last token and raise ``IndexError`` beyond the end, JAX clamps or gives
NaN. So ids are checked once, here, with one message.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..executor import Executor

__all__ = ["check_token_range", "token_array"]

Array = Any


def check_token_range(low: int, high: int, vocab_size: int, what: str) -> None:
    """Raise a ``ValueError`` unless ``0 <= low`` and ``high < vocab_size``."""
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(
            f"{what} must be token ids in 0..{vocab_size - 1} (vocab_size = {vocab_size}), "
            f"got {bad}"
        )


def token_array(tokens: Any, vocab_size: int, executor: Executor, what: str = "tokens") -> Array:
    """``tokens`` as an integer array of ``executor``, every id checked.

    Parameters
    ----------
    tokens : array-like of integers
        Host data (lists, NumPy arrays) or an array of the backend.
    vocab_size : int
        Number of token ids.
    executor : Executor
        The backend.
    what : str
        Name of the argument in error messages.

    Returns
    -------
    array of the backend
        Host data converted to int64; a backend array as given.

    Raises
    ------
    TypeError
        If the ids are not integers (floats are not rounded, booleans not counted).
    ValueError
        If an id lies outside ``0 .. vocab_size - 1`` (``-1`` does not mean the last token).
    """
    if executor.is_native(tokens):
        xp = executor.xp
        if not xp.isdtype(tokens.dtype, "integral"):
            raise TypeError(f"{what} must hold integer token ids, got dtype {tokens.dtype}")
        if math.prod(tokens.shape):
            low, high = int(xp.min(tokens)), int(xp.max(tokens))
            check_token_range(low, high, vocab_size, what)
        return tokens
    host = np.asarray(tokens)
    if host.size and host.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integer token ids, got dtype {host.dtype}")
    if host.size:
        check_token_range(int(host.min()), int(host.max()), vocab_size, what)
    return executor.asarray(host.astype(np.int64))
