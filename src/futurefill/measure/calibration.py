"""Calibration of the time model: what one step, one window tap and one FFT task cost here.

:func:`calibrate` measures, for one backend, dtype and width (batch x channels):

* the time of one rollout step as a function of its local window's taps (one tap: the
  per-step overhead of dispatch and feedback; the slope: the time per tap);
* the time of one FutureFill task of each FFT size (the smallest, size 2, is the per-task
  overhead);
* what one ``OnlineConv.step`` call costs beyond a rollout step (argument checks, dispatch).

Each is measured on a throw-away plan built for the purpose (never proven exact: its windows
leave out older inputs), as the best of a few rounds after a warm-up. The resulting
:class:`Calibration` is a :class:`~futurefill.plan.TimeModel`, from which
:func:`~futurefill.plan.predicted_seconds` predicts the time of any plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import interpreter
from .._checks import check_int, next_pow2
from .._registry import get_backend
from ..executor import Executor
from ..filters import decaying_random_filters
from ..online import OnlineConv
from ..plan import Plan
from ..plan import cost as _cost
from ._timing import Target, best_seconds, device_name, dtype_name, on_cpu

__all__ = ["Calibration", "calibrate", "calibration_grid"]

_ALL = slice(None)

#: Steps (or tasks) run by the probe that sizes the timed rounds.
_PROBE = 4
#: Smallest time a calibrated task is given (a task no slower than the step it follows
#: would otherwise measure zero or less, which the log-log interpolation cannot take).
_TINY = 1e-9


def _envelope(seconds: list[float]) -> np.ndarray:
    """Measured times in increasing size, each capped by those of all larger sizes.

    More work never takes less time, and noise on a shared machine only ever adds time: the
    best estimate at one size is the least time measured at that size or any larger one.
    """
    return np.minimum.accumulate(np.asarray(seconds, dtype=np.float64)[::-1])[::-1]


@dataclass(frozen=True)
class Calibration(Target):
    """Measured costs of one backend, dtype and width: a :class:`~futurefill.plan.TimeModel`.

    Attributes
    ----------
    backend, device, dtype, batch, channels
        What was measured (see :class:`futurefill.measure._timing.Target`).
    step_seconds_by_width : mapping of int to float
        Seconds of one rollout step by the taps of its local window.
    task_seconds_by_size : mapping of int to float
        Seconds of one FutureFill task by FFT size.
    call_seconds : float
        What one ``OnlineConv.step`` call costs beyond a rollout step.
    output_seconds : float
        What one step of a long rollout costs beyond a step of the short ones the windows
        were timed in: its share of writing the rollout's large, fresh output array (the
        first touch of new memory; 0 unless measured, see ``rollout_steps``).
    """

    step_seconds_by_width: Mapping[int, float] = field(default_factory=dict)
    task_seconds_by_size: Mapping[int, float] = field(default_factory=dict)
    call_seconds: float = 0.0
    output_seconds: float = 0.0

    @property
    def step_seconds(self) -> float:
        """The per-step overhead: one rollout step with a one-tap window."""
        return float(self.window_seconds(np.ones(1, np.int64))[0])

    @property
    def tap_seconds(self) -> float:
        """Seconds per window tap: the slope between the narrowest and widest window."""
        widths = sorted(self.step_seconds_by_width)
        if len(widths) < 2:
            return 0.0
        lo, hi = widths[0], widths[-1]
        rise = self.step_seconds_by_width[hi] - self.step_seconds_by_width[lo]
        return max(rise, 0.0) / (hi - lo)

    def window_seconds(self, widths: np.ndarray) -> np.ndarray:
        """Seconds of one rollout step with ``widths`` window taps: piecewise linear between
        the measured widths (see :func:`_envelope`), extended with the last slope beyond."""
        x = np.array(sorted(self.step_seconds_by_width), dtype=np.float64)
        y = _envelope([self.step_seconds_by_width[int(w)] for w in x])
        w = np.asarray(widths, dtype=np.float64)
        out = np.interp(w, x, y)
        if x.size > 1:
            slope = max((y[-1] - y[-2]) / (x[-1] - x[-2]), 0.0)
            out = np.where(w > x[-1], y[-1] + slope * (w - x[-1]), out)
        return out

    def task_seconds(self, sizes: np.ndarray) -> np.ndarray:
        """Seconds of one task of FFT size ``sizes``: log-log interpolation between the
        measured sizes (see :func:`_envelope`), ``n log n`` scaling beyond them."""
        x = np.array(sorted(self.task_seconds_by_size), dtype=np.float64)
        y = _envelope([self.task_seconds_by_size[int(n)] for n in x])
        n = np.asarray(sizes, dtype=np.float64)
        out = np.exp(np.interp(np.log(n), np.log(x), np.log(y)))
        nlogn = n * np.log2(np.maximum(n, 2))
        top = x[-1] * math.log2(max(x[-1], 2))
        return np.where(n > x[-1], y[-1] * nlogn / top, out)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON keys are strings); :meth:`from_dict` reads it back."""
        return {
            **self.head(),
            "step_seconds_by_width": {str(k): v for k, v in self.step_seconds_by_width.items()},
            "task_seconds_by_size": {str(k): v for k, v in self.task_seconds_by_size.items()},
            "call_seconds": self.call_seconds,
            "output_seconds": self.output_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """A calibration from :meth:`as_dict`'s output."""
        return cls(
            backend=str(data["backend"]),
            device=str(data["device"]),
            dtype=str(data["dtype"]),
            batch=int(data["batch"]),
            channels=int(data["channels"]),
            step_seconds_by_width={
                int(k): float(v) for k, v in data["step_seconds_by_width"].items()
            },
            task_seconds_by_size={
                int(k): float(v) for k, v in data["task_seconds_by_size"].items()
            },
            call_seconds=float(data["call_seconds"]),
            output_seconds=float(data.get("output_seconds", 0.0)),
        )


def calibration_grid(
    plans: Iterable[Plan], *, extra_sizes: Iterable[int] = ()
) -> tuple[list[int], list[int]]:
    """The FFT sizes and window widths a calibration needs to predict ``plans``.

    Returns
    -------
    fft_sizes : list of int
        Every FFT size of the plans, ``extra_sizes`` and 2 (the per-task overhead).
    window_widths : list of int
        Powers of two up to the widest window of the plans, that width, and 1.
    """
    sizes = {2, *(int(n) for n in extra_sizes)}
    widest = 1
    for plan in plans:
        sizes.update(int(n) for n in np.unique(plan.fft_size))
        widest = max(widest, int(_cost.window_widths(plan).max()))
    widths = {1 << k for k in range(widest.bit_length()) if 1 << k <= widest} | {widest}
    return sorted(sizes), sorted(widths)


def _window_plan(width: int, length: int) -> Plan:
    """Every step sums a window of exactly ``width`` taps (the first ones in a kept prompt)."""
    return Plan.from_tasks(
        length,
        window_start=np.arange(length),
        prompt=width - 1,
        keep_prompt=True,
        validate=False,
    )


def _task_plan(size: int, length: int) -> Plan:
    """After every step, one task of FFT size ``size``: half a size in, the next half out.

    Successive tasks move along the buffer by half a size (wrapping around), as a schedule's
    tasks do, so that each reads and writes memory that the previous one did not touch.
    """
    half = size // 2
    length = max(length, half)
    after = np.arange(length)
    src = (after * half) % (length - half + 1)  # src + size <= half + length positions
    tasks = {
        "after_step": after,
        "src_start": src,
        "src_stop": src + half,
        "dst_start": src + half,
        "dst_stop": src + 2 * half,
        "filter_start": np.ones_like(after),
        "filter_stop": np.full_like(after, size),
        "fft_size": np.full_like(after, size),
    }
    return Plan.from_tasks(
        length,
        window_start=half + after,
        tasks=tasks,
        prompt=half,
        keep_prompt=True,
        validate=False,
        share_transforms=False,  # sources repeat as the tasks wrap around: time each task
    )


def _units(rounds: int, max_units: int) -> int:
    """Units (steps) a measurement may use: two probes (``P`` and ``4 P`` units, twice each),
    then the warm-up and timed rounds of a short and a long run (``count`` and ``2 count``
    units, see :meth:`_Meter.per_unit`)."""
    return 10 * _PROBE + 3 * (rounds + 1) * max_units


@dataclass
class _Meter:
    """What every measurement of one calibration shares."""

    executor: Executor
    dtype: Any
    dtype_text: str
    batch: int
    channels: int
    filters: np.ndarray
    u0: Any
    rng: np.random.Generator
    rounds: int
    budget: float
    max_units: int
    positions: int

    @property
    def units(self) -> int:
        """Steps a calibration plan needs (:func:`_units`)."""
        return _units(self.rounds, self.max_units)

    def state(self, plan: Plan, filters: np.ndarray) -> Any:
        """A state of ``plan`` whose kept prompt holds random inputs (so that no value in a
        measurement decays to a subnormal number, which would slow the arithmetic down)."""
        ex, name = self.executor, self.dtype_text
        state = interpreter.new_state(
            ex, plan, ex.asarray(filters, dtype=name), batch=self.batch, dtype=self.dtype
        )
        ex.clear(state)  # touch every page of the buffer now, not inside a timed round
        if plan.prompt:
            prompt = self.rng.standard_normal((self.batch, filters.shape[0], plan.prompt))
            interpreter.prefill(ex, state, ex.asarray(prompt.astype(name), dtype=name), _ALL)
        return state

    def per_unit(self, run: Callable[[int, int], object]) -> float:
        """Seconds per unit of ``run(first, count)`` (units ``first .. first+count-1``), with
        as many units per round as fit in the budget: the best run of ``2 count`` units less
        the best run of ``count`` units, over ``count``, so that what a call costs beyond
        its units (dispatch; a compiled rollout's fixed work) cancels out. ``count`` follows
        from two probes of ``P`` and ``4 P`` units (the first run also warms up:
        compilation, FFT plans, first touch of the work arrays)."""
        ex, cpu = self.executor, on_cpu(self.executor)
        first = 0

        def best(count: int, rounds: int) -> float:
            nonlocal first
            start, first = first, first + (rounds + 1) * count
            return best_seconds(ex, lambda k: run(start + k * count, count), rounds, cpu=cpu)

        small, large = best(_PROBE, 1), best(4 * _PROBE, 1)
        estimate = max((large - small) / (3 * _PROBE), 1e-9)
        count = int(min(max(self.budget / estimate, _PROBE), self.max_units))
        short = best(count, self.rounds)
        return max(best(2 * count, self.rounds) - short, _TINY * count) / count

    def window(self, width: int) -> float:
        plan = _window_plan(width, max(self.units, self.positions - width + 1))
        # Equal taps: each output is the mean of its window, so the feedback neither grows
        # nor falls to subnormal numbers.
        state = self.state(plan, np.full((self.channels, plan.total), 1.0 / width))
        ex, feedback = self.executor, self.executor.xp.tanh

        def run(first: int, count: int) -> None:
            interpreter.rollout(ex, state, self.u0, feedback, count)

        return self.per_unit(run)

    def task(self, size: int, step_seconds: float) -> float:
        """One task of FFT size ``size``, timed as plans run it: a rollout of one-tap steps
        with one task after each, less ``step_seconds`` (a one-tap step without a task). A
        compiled rollout runs its tasks inside the program, not as separate calls; tasks
        deferred to a background thread are waited for in the round."""
        plan = _task_plan(size, max(self.units, self.positions - size // 2))
        state = self.state(plan, self.filters[:, : plan.total])
        ex, feedback = self.executor, self.executor.xp.tanh

        def run(first: int, count: int) -> None:
            interpreter.rollout(ex, state, self.u0, feedback, count)
            # Tasks an executor runs in the background (due later) are done within the
            # round, and none is left running into later measurements.
            ex.settle(state)

        return max(self.per_unit(run) - step_seconds, _TINY)

    def output(self, steps: int) -> float:
        """Per-step time of one rollout of ``steps`` one-tap steps, in one call."""
        plan = _window_plan(1, max(steps, self.positions))
        state = self.state(plan, np.ones((self.channels, plan.total)))
        ex = self.executor

        def run(_: int) -> None:
            interpreter.rollout(ex, state, self.u0, ex.xp.tanh, steps)

        def reset() -> None:
            interpreter.reset(ex, state)

        cpu = on_cpu(ex)
        return best_seconds(ex, run, self.rounds, cpu=cpu, setup=reset) / steps

    def call(self, steps: int) -> float:
        """Per-call overhead of ``OnlineConv.step`` over a rollout step (one-tap windows)."""
        ex = self.executor
        plan = _window_plan(1, 2 * (self.rounds + 1) * steps)
        filters = np.ones((self.channels, plan.total))  # u[t+1] = tanh(u[t]): no subnormals
        conv = OnlineConv.from_plan(filters, plan, batch=self.batch, dtype=self.dtype, backend=ex)
        tanh = ex.xp.tanh

        def rolled() -> None:
            conv.rollout(self.u0, tanh, steps)

        def stepped() -> None:
            u = self.u0
            for _ in range(steps):
                u = tanh(conv.step(u))

        best = {rolled: float("inf"), stepped: float("inf")}
        cpu = on_cpu(ex)
        for k in range(self.rounds + 1):  # round-robin; round 0 is the warm-up
            for run in best:
                seconds = best_seconds(ex, lambda _: run(), 1, warmup=0, cpu=cpu)  # noqa: B023
                best[run] = min(best[run], seconds) if k else best[run]
        return max(best[stepped] - best[rolled], 0.0) / steps


def calibrate(
    backend: str | Executor | None = None,
    *,
    dtype: str = "float64",
    batch: int = 1,
    channels: int = 1,
    fft_sizes: Iterable[int] = (2, 64, 1024, 16384),
    window_widths: Iterable[int] = (1, 16, 256),
    rounds: int = 3,
    budget: float = 0.02,
    max_steps: int = 4096,
    positions: int = 0,
    rollout_steps: int = 0,
    seed: int = 0,
) -> Calibration:
    """Measure the :class:`Calibration` of a backend, dtype and width.

    Parameters
    ----------
    backend : str or Executor, optional
        Backend; the one in force by default.
    dtype : {"float64", "float32"}
        Working precision.
    batch, channels : int
        The width to measure.
    fft_sizes : iterable of int
        FFT sizes of the tasks to time (size 2 is always timed: the per-task overhead).
        :func:`calibration_grid` gives what a set of plans needs.
    window_widths : iterable of int
        Window taps of the steps to time (1 is always timed: the per-step overhead).
    rounds : int
        Timed rounds per measurement, after a warm-up; each keeps its best round.
    budget : float
        Seconds a round should take (the steps per round follow, at most ``max_steps``).
    max_steps : int
        Most steps (or tasks) per round. Rounds long enough to dwarf a call's fixed costs
        keep their difference (see ``budget``) above the noise of those costs: a compiled
        JAX rollout allocates and pads whole buffers at every call.
    positions : int
        Make every calibration plan at least this long (``prompt + length`` of the plans to
        predict), so that the rows of its buffer lie as far apart in memory as theirs: the
        stride of the per-channel rows decides how many pages and cache sets a step touches.
    rollout_steps : int
        Also time whole rollouts of this many one-tap steps (the plans' length), whose
        output array is as large as theirs: what a step costs beyond the short rounds the
        windows are timed in is :attr:`Calibration.output_seconds`. 0 (the default) skips
        it.
    seed : int
        Seed of the filters and inputs.

    Returns
    -------
    Calibration
    """
    rounds = check_int("rounds", rounds, 1)
    max_steps = check_int("max_steps", max_steps, _PROBE)
    sizes = sorted({2, *(next_pow2(check_int("an FFT size", n, 2)) for n in fft_sizes)})
    widths = sorted({1, *(check_int("a window width", w, 1) for w in window_widths)})
    ex = get_backend(backend)
    name = dtype_name(dtype)
    units = _units(rounds, max_steps)
    positions = check_int("positions", positions, 0)
    # the longest task plan's positions
    taps = max(sizes[-1] // 2 + max(units, sizes[-1] // 2), positions)
    host = decaying_random_filters(channels, taps, seed=seed, normalize=True)
    rng = np.random.default_rng(seed + 1)
    meter = _Meter(
        executor=ex,
        dtype=ex.resolve_dtype(name),
        dtype_text=name,
        batch=check_int("batch", batch, 1),
        channels=check_int("channels", channels, 1),
        filters=host,
        u0=ex.asarray(rng.standard_normal((batch, channels)).astype(name), dtype=name),
        rng=rng,
        rounds=rounds,
        budget=float(budget),
        max_units=max_steps,
        positions=positions,
    )
    steps = {w: meter.window(w) for w in widths}
    rollout_steps = check_int("rollout_steps", rollout_steps, 0)
    output = max(meter.output(rollout_steps) - steps[1], 0.0) if rollout_steps else 0.0
    return Calibration(
        **Target(ex.name, device_name(ex), name, batch, channels).head(),
        step_seconds_by_width=steps,
        task_seconds_by_size={n: meter.task(n, steps[1]) for n in sizes},
        call_seconds=meter.call(min(max_steps, 64)),
        output_seconds=output,
    )
