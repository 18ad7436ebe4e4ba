"""Per-step latency tails and the cost of open-ended streams, as in-process ratios.

``Latency`` times every ``OnlineConv.step`` of the ``continuous`` and ``deadline`` schedules
on one stream (:func:`futurefill.measure.latency.measure_latency`) and tracks the worst step
and p99.9 over the median. ``OpenEnded`` tracks the time of an open-ended stream
(``length=None``) stopped after ``length`` steps over that of a plan of exactly ``length``
steps (:func:`futurefill.measure.bench_open.measure_open_ended`). Both are ratios measured in
one process, so that they mean the same on a busy machine.
"""

from __future__ import annotations

from typing import Any, ClassVar

from futurefill.measure.bench_open import measure_open_ended
from futurefill.measure.latency import measure_latency

from .common import BACKENDS, CHANNELS, DTYPE, QUICK, load_backend

STREAM_LENGTHS = [4096] if QUICK else [4096, 32768]
TAIL_SCHEDULES = ["continuous", "deadline"]


class Latency:
    """Worst and p99.9 step over the median step, per schedule."""

    params: ClassVar[list[list[Any]]] = [BACKENDS, TAIL_SCHEDULES, STREAM_LENGTHS, CHANNELS]
    param_names: ClassVar[list[str]] = ["backend", "schedule", "length", "channels"]
    timeout = 600

    def setup(self, backend: str, schedule: str, length: int, channels: int) -> None:
        executor = load_backend(backend)
        (self.result,) = measure_latency(
            length=length,
            channels=channels,
            backend=executor,
            dtype=DTYPE,
            schedules=[schedule],
            warmup_steps=min(length, 1024),
        )

    def track_worst_over_median(self, *args: Any) -> float:
        """``max / p50`` of the per-step times."""
        return self.result.worst_vs_median

    track_worst_over_median.unit = "x"  # type: ignore[attr-defined]

    def track_p999_over_median(self, *args: Any) -> float:
        """``p99.9 / p50`` of the per-step times."""
        return self.result.p999_vs_median

    track_p999_over_median.unit = "x"  # type: ignore[attr-defined]


class OpenEnded:
    """An open-ended stream stopped after ``length`` steps over a plan of that length."""

    params: ClassVar[list[list[Any]]] = [BACKENDS, STREAM_LENGTHS, CHANNELS]
    param_names: ClassVar[list[str]] = ["backend", "length", "channels"]
    timeout = 600

    def setup(self, backend: str, length: int, channels: int) -> None:
        executor = load_backend(backend)
        (self.result,) = measure_open_ended(
            [length], channels=channels, backend=executor, dtype=DTYPE, repeats=2
        )

    def track_open_over_known(self, *args: Any) -> float:
        """Open-ended time over known-length time, construction included."""
        return self.result.ratio

    track_open_over_known.unit = "x"  # type: ignore[attr-defined]
