"""Same-run benchmarks of the schedules: one depthwise layer generating with feedback.

Every measurement of one configuration runs in the same process, back to back, on the same
filters and first input, so that methods are compared as ratios (the machines are shared and
noisy). The feedback is ``u[t+1] = tanh(y[t])``: each input depends on the previous output, so
no schedule can look ahead. The offline FFT convolution of the whole input sequence produced by
the run (all inputs known at once) is the floor; like the schedules, whose filter spectra are
computed once when they are built, it is timed with its filter spectrum precomputed.

Beside the measured times, ``predict=True`` gives each method the time the calibrated cost
model predicts (:mod:`futurefill.measure.calibration`, :func:`futurefill.plan.predict_time`),
how much of it is overhead rather than arithmetic, and its FLOPs in units of the floor's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .._checks import check_int
from .._registry import get_backend
from ..executor import Executor
from ..filters import decaying_random_filters
from ..online import OnlineConv
from ..ops import fill_future, filter_spectrum, next_pow2
from ..plan import SCHEDULES, Plan, PlanSpec, predict_time
from ._timing import Run
from .calibration import Calibration, calibrate, calibration_grid

__all__ = ["BenchResult", "bench_configuration", "measure_crossover"]

OFFLINE = "offline"


@dataclass(frozen=True)
class BenchResult(Run):
    """One timed method of one configuration (first fields:
    :class:`futurefill.measure._timing.Run`)."""

    seconds: float
    us_per_token: float
    speedup_vs_naive: float | None
    ratio_to_floor: float | None
    max_deviation: float | None
    first_run_seconds: float = float("nan")
    cpu_seconds: float = float("nan")
    predicted_seconds: float | None = None
    predicted_overhead: float | None = None
    flops_vs_floor: float | None = None

    @property
    def warmup_seconds(self) -> float:
        """What the first (warm-up) run took beyond the best one: compilation, FFT plans,
        caches. Reported apart, never in :attr:`seconds`."""
        return max(self.first_run_seconds - self.seconds, 0.0)

    @property
    def measured_vs_predicted(self) -> float | None:
        """:attr:`seconds` over :attr:`predicted_seconds` (``None`` without a prediction)."""
        return None if self.predicted_seconds is None else self.seconds / self.predicted_seconds

    @property
    def cpu_vs_predicted(self) -> float | None:
        """:attr:`cpu_seconds` over :attr:`predicted_seconds`: on a shared CPU the processor
        time of the process, which other tenants do not inflate, is what the calibration's
        short rounds approach."""
        if self.predicted_seconds is None:
            return None
        return self.cpu_seconds / self.predicted_seconds

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for ``--json`` and :func:`futurefill.measure.plot.plot_scaling`), with
        ``warmup_seconds`` beside ``first_run_seconds`` and the ratios to the prediction."""
        return {
            **asdict(self),
            "warmup_seconds": self.warmup_seconds,
            "measured_vs_predicted": self.measured_vs_predicted,
            "cpu_vs_predicted": self.cpu_vs_predicted,
        }


Clock = tuple[float, float]  # (wall seconds, processor seconds of this process)


def _clock() -> Clock:
    return time.perf_counter(), time.process_time()


def _since(start: Clock) -> Clock:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def _time_rollout(conv: OnlineConv, u0: Any) -> tuple[Clock, Any]:
    ex = conv.backend
    conv.reset()
    ex.synchronize()
    start = _clock()
    ys = conv.rollout(u0, ex.xp.tanh)
    ex.synchronize()
    return _since(start), ys


def _offline(ex: Executor, u: Any, spectrum: Any, n: int) -> Callable[[], Any]:
    """The floor at its best, like for like: its filter spectrum is precomputed, as the
    schedules' are, and on NumPy it transforms into arrays allocated once, as the executor's
    tasks do (fresh 100 MB temporaries would be faulted in on every call)."""
    if not isinstance(u, np.ndarray):
        return lambda: fill_future(u, spectrum, n, 0, u.shape[-1], xp=ex.xp)
    freq = np.empty((*u.shape[:-1], n // 2 + 1), np.result_type(u.dtype, np.complex64))
    real = np.empty((*u.shape[:-1], n), u.dtype)

    def floor() -> np.ndarray:
        np.fft.rfft(u, n, axis=-1, out=freq)
        np.multiply(freq, spectrum, out=freq)
        return np.fft.irfft(freq, n, axis=-1, out=real)[..., : u.shape[-1]]

    return floor


def _time_offline(floor: Callable[[], Any], ex: Executor) -> Clock:
    ex.synchronize()
    start = _clock()
    floor()
    ex.synchronize()
    return _since(start)


def _predictions(
    plans: dict[str, Plan], floor_size: int, calibration: Calibration
) -> dict[str, tuple[float, float, float]]:
    """``(predicted seconds, overhead share, FLOPs / floor FLOPs)`` of every method."""
    out = {}
    for method, plan in plans.items():
        predicted = predict_time(plan, calibration)
        cost = plan.cost(channels=calibration.channels, batch=calibration.batch)
        out[method] = (predicted.seconds, predicted.overhead_share, cost.total_vs_floor)
    floor, smallest = (float(t) for t in calibration.task_seconds(np.array([floor_size, 2])))
    out[OFFLINE] = (floor, min(smallest / floor, 1.0), 1.0)
    return out


def _predicted_fields(prediction: tuple[float, float, float] | None) -> dict[str, Any]:
    if prediction is None:
        return {}
    seconds, overhead, flops = prediction
    return {"predicted_seconds": seconds, "predicted_overhead": overhead, "flops_vs_floor": flops}


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
    predict: bool = False,
    calibration: Calibration | None = None,
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
    predict : bool
        Also predict every method's time from a calibration of this backend, dtype and width
        (measured first, for the FFT sizes and windows of these plans, unless given).
    calibration : Calibration, optional
        The calibration to predict from (implies ``predict``).

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
    timings: dict[str, Clock] = dict.fromkeys(methods, (float("inf"), float("inf")))
    first: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    floor = None
    n_floor = next_pow2(2 * length - 1)
    plans = {method: conv.plan for method, conv in convs.items()}
    width: dict[str, Any] = {"channels": channels, "batch": batch, "dtype": dtype}
    if predict and calibration is None:
        grid = calibration_grid(plans.values(), extra_sizes=[n_floor])
        calibration = calibrate(
            ex,
            fft_sizes=grid[0],
            window_widths=grid[1],
            positions=length,
            rollout_steps=length,
            seed=seed,
            **width,
        )
    predictions = {} if calibration is None else _predictions(plans, n_floor, calibration)
    for round_ in range(1 + repeats):
        times = {}
        for schedule, conv in convs.items():
            times[schedule], ys = _time_rollout(conv, u0)
            outputs[schedule] = ex.to_numpy(ys)
        if floor is None:
            # The floor: all inputs of the run known at once (u[0] = u0, u[t+1] = tanh(y[t])).
            some = outputs[next(iter(outputs))]
            host = np.concatenate([ex.to_numpy(u0)[..., None], np.tanh(some[..., :-1])], -1)
            u_all = ex.asarray(host, dtype=dtype)
            spectrum = filter_spectrum(filters, 0, length, n_floor, xp=ex.xp)
            floor = _offline(ex, u_all, spectrum, n_floor)
        times[OFFLINE] = _time_offline(floor, ex)
        for method, clocks in times.items():
            if round_ == 0:
                first[method] = clocks[0]  # the warm-up round
            else:
                timings[method] = min(timings[method], clocks)  # the round of least wall time

    naive_time = timings["naive"][0] if "naive" in timings else None
    reference = outputs.get("naive")
    scale = 1.0 if reference is None else float(np.abs(reference).max()) or 1.0
    results = []
    for method, (seconds, cpu_seconds) in timings.items():
        deviation = None
        if reference is not None and method in outputs:
            deviation = float(np.abs(outputs[method] - reference).max()) / scale
        results.append(
            BenchResult(
                backend=ex.name,
                schedule=method,
                length=length,
                **width,
                seconds=seconds,
                us_per_token=seconds / length * 1e6,
                speedup_vs_naive=None if naive_time is None else naive_time / seconds,
                ratio_to_floor=seconds / timings[OFFLINE][0],
                max_deviation=deviation,
                first_run_seconds=first[method],
                cpu_seconds=cpu_seconds,
                **_predicted_fields(predictions.get(method)),
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
