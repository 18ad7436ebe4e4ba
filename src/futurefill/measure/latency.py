"""Per-step latency of ``OnlineConv.step``: the distribution, not only the mean.

A rollout's time per token hides the worst steps: a schedule whose work comes in large FFT
tasks after some steps (continuous: the task of size ``L`` after step ``L/2 - 1``; epoched: the
refill at every epoch start) has a worst step far above its median. :func:`measure_latency`
times every call of :meth:`futurefill.OnlineConv.step` of every schedule on one stream: the
same filters, the same inputs and the same feedback ``u[t+1] = tanh(y[t])`` for all (the first
schedule's output drives the feedback, so every schedule sees exactly the same inputs), the
schedules stepped in lock-step, their order rotated at every step, so that a slow spell of the
machine hits them alike. A warm-up pass over the stream (FFT plans, first touch of the work
arrays, caches) runs first and is reported apart; the garbage collector is paused during each
pass.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import check_int
from .._registry import get_backend
from ..filters import decaying_random_filters
from ..online import OnlineConv
from ..plan import SCHEDULES, PlanSpec
from ._timing import Run

__all__ = ["LatencyResult", "latency_summary", "measure_latency"]

#: Percentiles reported, as (name, percent).
PERCENTILES = (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9))


def latency_summary(seconds: np.ndarray) -> dict[str, float]:
    """Mean, p50, p99, p99.9 and max of per-step times, in µs."""
    us = np.asarray(seconds, dtype=np.float64) * 1e6
    if us.size == 0:
        return {name: float("nan") for name in ("mean", *dict(PERCENTILES), "max")}
    summary = {"mean": float(us.mean())}
    summary.update({name: float(np.percentile(us, q)) for name, q in PERCENTILES})
    summary["max"] = float(us.max())
    return summary


@dataclass(frozen=True, eq=False)
class LatencyResult(Run):
    """The per-step times of one schedule on the stream.

    Attributes
    ----------
    backend, schedule, length, channels, batch, dtype
        What ran (see :class:`futurefill.measure._timing.Run`).
    seconds : ndarray, shape (length,)
        Time of every ``step()`` call of the measured pass.
    warmup_seconds : ndarray
        Time of every ``step()`` call of the warm-up pass (reported apart).
    max_deviation : float or None
        ``max |y - y_ref| / max |y_ref|`` against the first schedule's outputs.
    """

    seconds: np.ndarray
    warmup_seconds: np.ndarray
    max_deviation: float | None

    @property
    def summary(self) -> dict[str, float]:
        """:func:`latency_summary` of the measured pass (µs)."""
        return latency_summary(self.seconds)

    @property
    def worst_vs_median(self) -> float:
        """The slowest step over the median step."""
        s = self.summary
        return s["max"] / s["p50"]

    @property
    def p999_vs_median(self) -> float:
        """The 99.9th percentile over the median step."""
        s = self.summary
        return s["p99.9"] / s["p50"]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``: the summaries in µs (the per-step times left out)."""
        warm = latency_summary(self.warmup_seconds)
        return {
            **self.head(),
            **{f"{name}_us": value for name, value in self.summary.items()},
            "worst_vs_median": self.worst_vs_median,
            "p999_vs_median": self.p999_vs_median,
            "warmup_steps": int(self.warmup_seconds.size),
            "warmup_mean_us": warm["mean"],
            "warmup_max_us": warm["max"],
            "warmup_total_seconds": float(self.warmup_seconds.sum()),
            "max_deviation": self.max_deviation,
        }


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run_pass(
    convs: list[OnlineConv], u0: Any, steps: int, times: np.ndarray, deviation: np.ndarray
) -> None:
    """Step every conv ``steps`` times on one stream, timing each call into ``times[k, t]``
    (nanoseconds). The largest ``|y - y_ref|`` of conv ``k > 0`` goes to ``deviation[k]``,
    the largest ``|y_ref|`` (the scale) to ``deviation[0]``."""
    ex = convs[0].backend
    tanh, sync, clock = ex.xp.tanh, ex.synchronize, time.perf_counter_ns
    n = len(convs)
    u = u0
    outputs: list[Any] = [None] * n
    for t in range(steps):
        for j in range(n):
            k = (t + j) % n  # rotate the order: no schedule always runs first
            start = clock()
            outputs[k] = convs[k].step(u)
            sync()
            times[k, t] = clock() - start
        reference = ex.to_numpy(outputs[0])
        for k in range(1, n):
            gap = float(np.abs(ex.to_numpy(outputs[k]) - reference).max(initial=0.0))
            deviation[k] = max(deviation[k], gap)
        deviation[0] = max(deviation[0], float(np.abs(reference).max(initial=0.0)))
        u = tanh(outputs[0])


def measure_latency(
    *,
    length: int,
    channels: int,
    batch: int = 1,
    backend: Any = None,
    dtype: str = "float64",
    schedules: Iterable[str | PlanSpec] = SCHEDULES,
    warmup_steps: int | None = None,
    seed: int = 0,
) -> list[LatencyResult]:
    """Time every ``OnlineConv.step`` call of every schedule on one stream.

    Parameters
    ----------
    length, channels, batch : int
        Steps, depthwise channels ``D`` and batch size.
    backend : str or Executor, optional
        Backend; the one in force by default.
    dtype : {"float64", "float32"}
        Working precision.
    schedules : iterable of str or PlanSpec
        Schedules to time; the first one's outputs drive the feedback and are the reference
        of the deviations.
    warmup_steps : int, optional
        Steps of the warm-up pass, run and timed apart before the measured pass (then every
        schedule is reset); the whole stream by default, 0 for none.
    seed : int
        Seed of the filters and of the first input.

    Returns
    -------
    list of LatencyResult
        One per schedule, in the order given.
    """
    length = check_int("length", length, 1)
    warm = length if warmup_steps is None else check_int("warmup_steps", warmup_steps, 0, length)
    ex = get_backend(backend)
    filters = ex.asarray(
        decaying_random_filters(channels, length, seed=seed, normalize=True, dtype=dtype),
        dtype=dtype,
    )
    rng = np.random.default_rng(seed + 1)
    u0 = ex.asarray(rng.standard_normal((batch, channels)).astype(dtype), dtype=dtype)
    specs = [PlanSpec.coerce(s) for s in schedules]
    if not specs:
        raise ValueError("name at least one schedule")
    convs = [
        OnlineConv(filters, length, schedule=spec, batch=batch, dtype=dtype, backend=ex)
        for spec in specs
    ]
    warm_times = np.zeros((len(convs), warm), dtype=np.int64)
    times = np.zeros((len(convs), length), dtype=np.int64)
    deviation = np.zeros(len(convs))
    with _gc_paused():
        _run_pass(convs, u0, warm, warm_times, np.zeros(len(convs)))
    for conv in convs:
        conv.reset()
    with _gc_paused():
        _run_pass(convs, u0, length, times, deviation)
    scale = deviation[0] or 1.0
    return [
        LatencyResult(
            **Run(ex.name, str(spec), length, channels, batch, dtype).head(),
            seconds=times[k] * 1e-9,
            warmup_seconds=warm_times[k] * 1e-9,
            max_deviation=None if k == 0 else float(deviation[k]) / scale,
        )
        for k, spec in enumerate(specs)
    ]
