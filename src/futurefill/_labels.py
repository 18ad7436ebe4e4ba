"""Names of dtypes and devices as text (keys of stored tuning, columns of measurements)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .executor import Executor

__all__ = ["device_name", "dtype_name", "on_cpu"]


def dtype_name(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` for a name or any library's dtype object (``np.float64``,
    ``torch.float64``, ``"torch.float64"``, ``array_api_strict.float64``, ...)."""
    if not isinstance(dtype, str):
        try:
            return np.dtype(dtype).name
        except TypeError:
            dtype = str(dtype)
    return dtype.rsplit(".", 1)[-1]


def device_name(executor: Executor) -> str:
    """The executor's device as text (``"default"`` when it does not name one)."""
    return "default" if executor.device is None else str(executor.device)


def on_cpu(executor: Executor) -> bool:
    """Whether the executor computes on the host CPU (so that the processor time of this
    process measures its work)."""
    return executor.name in ("numpy", "array_api_strict") or "cpu" in device_name(executor).lower()
