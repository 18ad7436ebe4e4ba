"""Online generation, prefill, peak memory and in-process ratios of every schedule and backend.

Parameters (asv ``params``): ``backend`` (those that can run here), ``schedule``, ``length``
(online steps, or prompt length for prefill) and ``channels`` (batch 1, float32). Every timed
region ends with ``executor.synchronize()`` so queued device work is counted.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .common import (
    BACKENDS,
    CHANNELS,
    FAST_SCHEDULES,
    LENGTHS,
    SCHEDULES,
    Stream,
    best_time,
    load_backend,
)

PARAM_NAMES = ["backend", "schedule", "length", "channels"]


class Generation:
    """``length`` calls of ``OnlineConv.step`` (no prompt), one token at a time."""

    params: ClassVar[list[list[Any]]] = [BACKENDS, SCHEDULES, LENGTHS, CHANNELS]
    param_names = PARAM_NAMES
    timeout = 300
    warmup_time = 0.0  # setup warms up (compiles) explicitly

    def setup(self, backend: str, schedule: str, length: int, channels: int) -> None:
        executor = load_backend(backend)
        self.stream = Stream(executor, schedule, length, channels)
        self.stream.generate()  # warm-up: compilation, FFT plans, caches

    def time_generate(self, backend: str, schedule: str, length: int, channels: int) -> None:
        """Wall time of a whole generation (divide by ``length`` for time per token)."""
        self.stream.generate()

    def peakmem_generate(self, backend: str, schedule: str, length: int, channels: int) -> None:
        """Peak resident memory of the process after building the state and generating."""
        self.stream.generate()


class Prefill:
    """``OnlineConv.prefill`` of a ``length``-token prompt (64 online steps planned after it)."""

    params: ClassVar[list[list[Any]]] = [BACKENDS, SCHEDULES, LENGTHS, CHANNELS]
    param_names = PARAM_NAMES
    timeout = 300
    warmup_time = 0.0

    def setup(self, backend: str, schedule: str, length: int, channels: int) -> None:
        executor = load_backend(backend)
        self.stream = Stream(executor, schedule, 64, channels, prompt=length)
        self.stream.prefill()

    def time_prefill(self, backend: str, schedule: str, length: int, channels: int) -> None:
        """Wall time of the prefill (prompt outputs, and the future cache where planned)."""
        self.stream.prefill()


class Ratios:
    """Speedup over naive and distance to the offline floor, timed inside one process.

    Machines differ and so do runs on a shared one; ratios measured back to back in the same
    process are what stays comparable across commits. Each time is the best of 3 runs.
    """

    params: ClassVar[list[list[Any]]] = [BACKENDS, FAST_SCHEDULES, LENGTHS, CHANNELS]
    param_names = PARAM_NAMES
    timeout = 600
    repeat = 1  # each value already is the best of 3 timed runs

    def setup(self, backend: str, schedule: str, length: int, channels: int) -> None:
        executor = load_backend(backend)
        self.stream = Stream(executor, schedule, length, channels)
        self.executor = executor
        self.backend, self.length, self.channels = backend, length, channels

    def track_speedup_over_naive(
        self, backend: str, schedule: str, length: int, channels: int
    ) -> float:
        """``time(naive) / time(schedule)`` for a whole generation; above 1 means faster."""
        naive = Stream(self.executor, "naive", length, channels)
        return best_time(naive.generate) / best_time(self.stream.generate)

    track_speedup_over_naive.unit = "x"  # type: ignore[attr-defined]

    def track_ratio_to_offline(
        self, backend: str, schedule: str, length: int, channels: int
    ) -> float:
        """``time(schedule) / time(causal_conv)``: how far online generation is from the floor
        of one FFT convolution of the whole, already known, sequence."""
        return best_time(self.stream.generate) / best_time(self.stream.offline)

    track_ratio_to_offline.unit = "x"  # type: ignore[attr-defined]
