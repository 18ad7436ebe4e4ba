"""Small helpers shared by the measuring modules (benchmarks, calibration, tuning, latency):
what a measurement ran on, names of dtypes and devices as they appear in tables and cache keys,
and best-of-rounds timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .._labels import device_name, dtype_name, on_cpu
from ..executor import Executor

__all__ = ["Run", "Target", "best_seconds", "device_name", "dtype_name", "on_cpu"]


@dataclass(frozen=True, eq=False)
class Run:
    """One schedule run by a benchmark: the fields every row of its results starts with.

    Attributes
    ----------
    backend : str
        The executor's name.
    schedule : str
        The schedule (the spec's text when it has parameters), or ``"offline"``.
    length, channels, batch : int
        Steps, depthwise channels and batch size.
    dtype : str
        The working precision.
    """

    backend: str
    schedule: str
    length: int
    channels: int
    batch: int
    dtype: str

    def head(self) -> dict[str, Any]:
        """These fields as a dict (the first entries of a result's JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(Run)}


@dataclass(frozen=True, eq=False)
class Target:
    """What a calibration or a tuning measured: backend, device, dtype and width.

    Attributes
    ----------
    backend, device, dtype : str
        The executor's name, its device (:func:`device_name`) and the working precision.
    batch, channels : int
        The width measured (time scales with ``batch * channels``).
    """

    backend: str
    device: str
    dtype: str
    batch: int
    channels: int

    def head(self) -> dict[str, Any]:
        """These fields as a dict (the first entries of a result's JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(Target)}


def best_seconds(
    executor: Executor,
    run: Callable[[int], object],
    rounds: int,
    *,
    warmup: int = 1,
    cpu: bool = False,
    setup: Callable[[], object] | None = None,
) -> float:
    """The fastest of ``rounds`` timed calls ``run(k)`` (``k`` counts every call from 0),
    after ``warmup`` untimed ones; device work is waited for inside each timing, and
    ``setup()``, if given, runs untimed before each call.

    With ``cpu``, a round counts the smaller of its wall time and the processor time of this
    process: on a shared machine, time spent waiting for the processor inflates the first,
    never the second, and the wall time bounds a multi-threaded library's processor time.
    """
    best = float("inf")
    for k in range(warmup + rounds):
        if setup is not None:
            setup()
        executor.synchronize()
        wall, processor = time.perf_counter(), time.process_time()
        run(k)
        executor.synchronize()
        if k >= warmup:
            seconds = time.perf_counter() - wall
            if cpu:
                seconds = min(seconds, time.process_time() - processor)
            best = min(best, seconds)
    return best
