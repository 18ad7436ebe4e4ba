"""Same-run benchmarks of the schedules: one depthwise layer generating with feedback.

Every measurement of one configuration runs in the same process, back to back, on the same
filters and first input, so that methods are compared as ratios (the machines are shared and
noisy). The feedback is ``u[t+1] = tanh(y[t])``: each input depends on the previous output, so
no schedule can look ahead. The offline FFT convolution of the whole input sequence produced by
the run (all inputs known at once) is the floor; like the schedules, whose filter spectra are
computed once when they are built, it is timed with its filter spectrum precomputed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ._backend import get_backend
from ._checks import check_int
from .backends import Executor
from .filters import decaying_random_filters
from .online import OnlineConv
from .ops import fill_future, filter_spectrum, next_pow2
from .plan import SCHEDULES, PlanSpec

__all__ = ["BenchResult", "bench_configuration", "measure_crossover"]

OFFLINE = "offline"


@dataclass(frozen=True)
class BenchResult:
    """One timed method of one configuration."""

    backend: str
    schedule: str
    length: int
    channels: int
    batch: int
    dtype: str
    seconds: float
    us_per_token: float
    speedup_vs_naive: float | None
    ratio_to_floor: float | None
    max_deviation: float | None
    first_run_seconds: float = float("nan")

    @property
    def warmup_seconds(self) -> float:
        """What the first (warm-up) run took beyond the best one: compilation, FFT plans,
        caches. Reported apart, never in :attr:`seconds`."""
        return max(self.first_run_seconds - self.seconds, 0.0)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for ``--json`` and :func:`futurefill.plot.plot_scaling`), with
        ``warmup_seconds`` beside ``first_run_seconds``."""
        return {**asdict(self), "warmup_seconds": self.warmup_seconds}


def _time_rollout(conv: OnlineConv, u0: Any) -> tuple[float, Any]:
    ex = conv.backend
    conv.reset()
    ex.synchronize()
    start = time.perf_counter()
    ys = conv.rollout(u0, ex.xp.tanh)
    ex.synchronize()
    return time.perf_counter() - start, ys


def _time_offline(ex: Executor, u: Any, spectrum: Any, n: int) -> float:
    """The floor, like for like: its filter spectrum is precomputed, as the schedules' are."""
    ex.synchronize()
    start = time.perf_counter()
    fill_future(u, spectrum, n, 0, u.shape[-1], xp=ex.xp)
    ex.synchronize()
    return time.perf_counter() - start


def bench_configuration(
    *,
    length: int,
    channels: int,
    batch: int = 1,
    backend: str | Executor | None = None,
    dtype: str = "float64",
    schedules: Iterable[str | PlanSpec] = SCHEDULES,
    repeats: int = 1,
    seed: int = 0,
) -> list[BenchResult]:
    """Time every schedule and the offline floor on one configuration, in this process.

    Parameters
    ----------
    length, channels, batch : int
        Steps generated, depthwise channels ``D`` and batch size.
    backend : str or Executor, optional
        Backend; the one in force by default.
    dtype : {"float64", "float32"}
        Working precision.
    schedules : iterable of str or PlanSpec
        Schedules to run (with their parameters when a spec is given); ``naive`` is the
        reference of the speedups and deviations. A result is labelled by the schedule's name,
        or by the spec when it has parameters.
    repeats : int
        Timed rounds (at least 1) after one warm-up round (compilation, FFT plans and caches happen
        there; its time is reported apart as ``first_run_seconds``). Each round times every
        method once, in turn (so that a slow spell of the machine hits all methods alike),
        and each method keeps its best round.
    seed : int
        Seed of the filters and the first input.

    Returns
    -------
    list of BenchResult
        One per schedule plus one for the offline floor.
    """
    repeats = check_int("repeats", repeats, 1)
    ex = get_backend(backend)
    filters_host = decaying_random_filters(channels, length, seed=seed, normalize=True, dtype=dtype)
    filters = ex.asarray(filters_host, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    u0 = ex.asarray(rng.standard_normal((batch, channels)).astype(dtype), dtype=dtype)
    specs = [PlanSpec.coerce(s) for s in schedules]
    convs = {
        str(spec): OnlineConv(filters, length, schedule=spec, batch=batch, dtype=dtype, backend=ex)
        for spec in specs
    }
    methods = [*convs, OFFLINE]
    timings: dict[str, float] = dict.fromkeys(methods, float("inf"))
    first: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    u_all = floor_spectrum = None
    n_floor = next_pow2(2 * length - 1)
    for round_ in range(1 + repeats):
        times = {}
        for schedule, conv in convs.items():
            times[schedule], ys = _time_rollout(conv, u0)
            outputs[schedule] = ex.to_numpy(ys)
        if u_all is None:
            # The floor: all inputs of the run known at once (u[0] = u0, u[t+1] = tanh(y[t])).
            some = outputs[next(iter(outputs))]
            host = np.concatenate([ex.to_numpy(u0)[..., None], np.tanh(some[..., :-1])], -1)
            u_all = ex.asarray(host, dtype=dtype)
            floor_spectrum = filter_spectrum(filters, 0, length, n_floor, xp=ex.xp)
        times[OFFLINE] = _time_offline(ex, u_all, floor_spectrum, n_floor)
        for method, seconds in times.items():
            if round_ == 0:
                first[method] = seconds  # the warm-up round
            else:
                timings[method] = min(timings[method], seconds)

    naive_time = timings.get("naive")
    reference = outputs.get("naive")
    scale = 1.0 if reference is None else float(np.abs(reference).max()) or 1.0
    results = []
    for method, seconds in timings.items():
        deviation = None
        if reference is not None and method in outputs:
            deviation = float(np.abs(outputs[method] - reference).max()) / scale
        results.append(
            BenchResult(
                backend=ex.name,
                schedule=method,
                length=length,
                channels=channels,
                batch=batch,
                dtype=dtype,
                seconds=seconds,
                us_per_token=seconds / length * 1e6,
                speedup_vs_naive=None if naive_time is None else naive_time / seconds,
                ratio_to_floor=seconds / timings[OFFLINE],
                max_deviation=deviation,
                first_run_seconds=first[method],
            )
        )
    return results


def measure_crossover(
    *,
    candidates: Iterable[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256),
    length: int,
    channels: int,
    dtype: str = "float64",
    batch: int = 1,
    backend: str | Executor | None = None,
    repeats: int = 3,
) -> Iterator[tuple[int, float]]:
    """Time the continuous schedule for each ``direct_below``; yield ``(k0, us_per_token)``.

    The measured best is what an executor's ``default_direct_below`` should return for this
    width (``batch * channels``).
    """
    for k0 in candidates:
        (result,) = (
            r
            for r in bench_configuration(
                length=length,
                channels=channels,
                batch=batch,
                backend=backend,
                dtype=dtype,
                schedules=(PlanSpec("continuous", direct_below=k0),),
                repeats=repeats,
            )
            if r.schedule != OFFLINE
        )
        yield k0, result.us_per_token
