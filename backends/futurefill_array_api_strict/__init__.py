"""The reference executor under ``array_api_strict``: proof that the algorithm layer needs only
the array API standard. Slow by design; use it to test, not to generate."""

from __future__ import annotations

from typing import Any

from futurefill.executor import ArrayAPIExecutor

__all__ = ["StrictExecutor"]


class StrictExecutor(ArrayAPIExecutor):
    """:class:`~futurefill.executor.ArrayAPIExecutor` over ``array_api_strict``."""

    name = "array_api_strict"

    def __init__(self, device: Any = None) -> None:
        import array_api_strict

        if device is not None and device not in ("cpu", array_api_strict.Device("CPU_DEVICE")):
            raise ValueError(f"array_api_strict runs on its default device only, not {device!r}")
        super().__init__(array_api_strict, None)

    def to_numpy(self, x: Any) -> Any:
        import numpy as np

        return np.asarray(x)
