"""The one import site of ``array_api_compat``: namespaces and devices of arrays."""

from __future__ import annotations

import importlib
from typing import Any

from array_api_compat import array_namespace as _array_namespace
from array_api_compat import device as _device

__all__ = ["array_namespace", "compat_namespace", "device_of"]


def array_namespace(*arrays: Any) -> Any:
    """The array-API namespace of ``arrays`` (``array_api_compat.array_namespace``)."""
    return _array_namespace(*arrays)


def device_of(x: Any) -> Any:
    """The device of an array (``array_api_compat.device``)."""
    return _device(x)


def compat_namespace(library: str) -> Any:
    """The array-API-compatible namespace of ``library`` ("numpy", "torch", "cupy", ...)."""
    return importlib.import_module(f"array_api_compat.{library}")
