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
    load_backend,
    paired_minima,
    prepared_stream,
)

PARAM_NAMES = ["backend", "schedule", "length", "channels"]


class Generation:
    """``length`` calls of ``OnlineConv.step`` (no prompt), one token at a time."""

    params: ClassVar[list[list[Any]]] = [BACKENDS, SCHEDULES, LENGTHS, CHANNELS]
    param_names = PARAM_NAMES
    timeout = 300
    warmup_time = 0.0  # setup warms up (compiles) explicitly

    def setup(self, backend: str, schedule: str, length: int, channels: int) -> None:
        self.stream = prepared_stream(backend, schedule, length, channels)  # warmed up

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
    process are what stays comparable across commits. ``track_speedup_over_naive`` times what
    ``Generation.time_generate`` times, for ``naive`` and for ``schedule``: the same warmed-up
    streams (:func:`~benchmarks.common.prepared_stream`), the garbage collector off as in asv's
    samples. Each time is the smallest of several interleaved calls
    (:func:`~benchmarks.common.paired_minima`), the time of the work without the time slices
    that other processes take from it.
    """

    params: ClassVar[list[list[Any]]] = [BACKENDS, FAST_SCHEDULES, LENGTHS, CHANNELS]
    param_names = PARAM_NAMES
    timeout = 600
    repeat = 1  # each value already is a ratio of minima of several timed calls

    def setup(self, backend: str, schedule: str, length: int, channels: int) -> None:
        self.stream = prepared_stream(backend, schedule, length, channels)
        self.naive = prepared_stream(backend, "naive", length, channels)
        self.stream.offline()  # warm-up of the floor's FFT

    def track_speedup_over_naive(
        self, backend: str, schedule: str, length: int, channels: int
    ) -> float:
        """``time(naive) / time(schedule)`` for a whole generation; above 1 means faster."""
        naive, scheduled = paired_minima(self.naive.generate, self.stream.generate)
        return naive / scheduled

    track_speedup_over_naive.unit = "x"  # type: ignore[attr-defined]

    def track_ratio_to_offline(
        self, backend: str, schedule: str, length: int, channels: int
    ) -> float:
        """``time(schedule) / time(causal_conv)``: how far online generation is from the floor
        of one FFT convolution of the whole, already known, sequence."""
        scheduled, offline = paired_minima(self.stream.generate, self.stream.offline)
        return scheduled / offline

    track_ratio_to_offline.unit = "x"  # type: ignore[attr-defined]
