"""The GPU table: one layer and two models, every method timed in one run within a budget.

One run of ``scripts/gpu_table.py`` (``scripts/gpu-table.sh``) measures, on one backend and
float32, what issue 20 asks of a GPU:

* one depthwise layer with feedback ``u[t+1] = tanh(y[t])`` (the workload of
  ``futurefill bench``) per width ``D`` and length ``L``: the naive, continuous and reuse
  schedules and the offline FFT floor -- time per token, ratio to naive and to the floor, and
  the peak device memory of each (:func:`layer_rows`);
* reference models generating greedily, naive vs continuous (the workload of
  ``futurefill bench-model``): total time, the long convolution and the rest of the model,
  the speedup over naive and its Amdahl ceiling, whether the tokens equal naive's, and the
  peak device memory (:func:`model_rows`).

The naive layer at long ``L`` is not run whole (at ``L = 131072, D = 1024`` it alone would
take the budget): with ``window`` it is timed over ``window`` steps around position ``L/2``
and ``window`` steps ending at ``L`` (each after a prompt that brings the stream to that
position, loaded by one untimed ``prefill``). Its per-step cost is affine in the position (a
fixed part and a window sum over every earlier input), so the middle window's mean is the
whole run's mean; the row says it was estimated, and gives the end positions' time beside.

Peak memory comes from a :class:`MemoryProbe` the caller provides for its device (the script
has one per GPU library); :class:`NoProbe` reports ``None`` (the CPU). The budget is checked
before each measurement: what no longer fits is listed as not run, never silently dropped.
Ratios are computed from the measured times by :func:`with_ratios` and :func:`model_rows`.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from .._registry import get_backend
from ..executor import Executor
from ..filters import decaying_random_filters
from ..models import ConvLM, GenerationOptions, generate
from ..online import OnlineConv
from ..ops import filter_spectrum, next_pow2
from .bench import OFFLINE, _offline, _time_offline, _time_rollout
from .bench_model import compare_schedules

__all__ = [
    "Budget",
    "LayerRow",
    "MemoryProbe",
    "ModelRow",
    "ModelSpec",
    "NoProbe",
    "layer_rows",
    "model_rows",
    "with_ratios",
]

NAIVE = "naive"


class MemoryProbe(Protocol):
    """Peak device memory of a stretch of work: :meth:`reset`, run, :meth:`peak`."""

    def reset(self) -> None:
        """Start a new stretch (the peak restarts from what is held now)."""

    def peak(self) -> int | None:
        """Peak bytes since :meth:`reset` (``None``: not known on this device)."""


class NoProbe:
    """The probe of a device without memory statistics (the CPU): every peak is ``None``."""

    def reset(self) -> None:
        """Nothing to reset."""

    def peak(self) -> int | None:
        """Unknown: ``None``."""
        return None


class Budget:
    """A deadline on the monotonic clock; ``seconds=None`` never runs out.

    Parameters
    ----------
    seconds : float or None
        Seconds from now.
    clock : callable
        The clock (``time.monotonic``; tests pass their own).
    """

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadline = None if seconds is None else clock() + seconds

    def spent(self) -> bool:
        """Whether the deadline has passed."""
        return self._deadline is not None and self._clock() >= self._deadline


@dataclass(frozen=True)
class LayerRow:
    """One method of one layer configuration.

    Attributes
    ----------
    backend : str
    channels, length : int
        ``D`` and ``L``.
    method : str
        ``naive``, ``continuous``, ``reuse`` or ``offline`` (the floor).
    seconds : float or None
        The whole run's time (the best timed round); for a windowed naive row the estimate
        ``us_per_token * L``; ``None`` when not run.
    us_per_token : float or None
        ``seconds / L``.
    vs_naive, vs_floor : float or None
        Naive's time over this one's (speedup), and this one's over the floor's.
    peak_bytes : int or None
        Peak device memory while it ran (``None``: unknown here).
    timed_steps : int or None
        Steps actually timed per window when the row is estimated; ``None``: the whole run.
    end_us_per_token : float or None
        Windowed naive: microseconds per step of the window ending at ``L``.
    note : str
        Why the row was not run, or how it was estimated.
    """

    backend: str
    channels: int
    length: int
    method: str
    seconds: float | None
    us_per_token: float | None
    vs_naive: float | None = None
    vs_floor: float | None = None
    peak_bytes: int | None = None
    timed_steps: int | None = None
    end_us_per_token: float | None = None
    note: str = ""


@dataclass(frozen=True)
class ModelRow:
    """One schedule generating from one model.

    Attributes
    ----------
    backend, model : str
    new_tokens : int
    schedule : str
    seconds, long_conv, rest : float or None
        The whole generation, its long convolution (``emit`` + ``advance``) and the same
        generation without it (seconds); ``None`` when not run.
    speedup, ceiling : float or None
        Naive's seconds over this run's, and over this run's ``rest`` (Amdahl: no schedule
        can beat the model without its long convolution).
    identical : bool or None
        Whether the tokens (of both runs, with ``untimed``) equal naive's.
    peak_bytes : int or None
    untimed, untimed_speedup : float or None
        With ``untimed``: the seconds of the same generation not timed layer by layer (no
        synchronisation inside a step; the executor's captured token steps or compiled
        programs where it has them), and naive's untimed seconds over this run's.
    note : str
    """

    backend: str
    model: str
    new_tokens: int
    schedule: str
    seconds: float | None
    long_conv: float | None = None
    rest: float | None = None
    speedup: float | None = None
    ceiling: float | None = None
    identical: bool | None = None
    peak_bytes: int | None = None
    untimed: float | None = None
    untimed_speedup: float | None = None
    note: str = ""


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None or den <= 0 else num / den


def with_ratios(rows: Sequence[LayerRow]) -> list[LayerRow]:
    """``rows`` of one configuration with :attr:`LayerRow.vs_naive` and
    :attr:`LayerRow.vs_floor` computed from their measured times."""
    by_method = {r.method: r.seconds for r in rows}
    naive, floor = by_method.get(NAIVE), by_method.get(OFFLINE)
    return [
        replace(r, vs_naive=_ratio(naive, r.seconds), vs_floor=_ratio(r.seconds, floor))
        for r in rows
    ]


def _best(
    run: Callable[[], float], repeats: int, warm_up: Callable[[], Any] | None = None
) -> float:
    """One warm-up call (compilation, FFT plans, graph capture; ``run`` itself unless
    ``warm_up`` is given), then the best of ``repeats`` calls of ``run``."""
    (warm_up or run)()
    return min(run() for _ in range(repeats))


class _Layer:
    """The shared inputs of one layer configuration: filters, first input, a probe."""

    def __init__(
        self, ex: Executor, channels: int, length: int, dtype: str, seed: int, memory: MemoryProbe
    ) -> None:
        self.ex, self.channels, self.length, self.dtype = ex, channels, length, dtype
        self.warmup_steps: int | None = None
        host = decaying_random_filters(channels, length, seed=seed, normalize=True, dtype=dtype)
        self.filters = ex.asarray(host, dtype=dtype)
        self.rng = np.random.default_rng(seed + 1)
        self.u0 = self.inputs(())
        self.memory = memory

    def inputs(self, tail: tuple[int, ...]) -> Any:
        """Inputs ``(1, D, *tail)`` in ``(-1, 1)``, the range of the feedback ``tanh``."""
        host = self.rng.uniform(-1, 1, (1, self.channels, *tail)).astype(self.dtype)
        return self.ex.asarray(host, dtype=self.dtype)

    def row(self, method: str, seconds: float, **extra: Any) -> LayerRow:
        peak = self.memory.peak()
        gc.collect()
        return LayerRow(
            backend=self.ex.name, channels=self.channels, length=self.length, method=method,
            seconds=seconds, us_per_token=seconds / self.length * 1e6, peak_bytes=peak, **extra,
        )  # fmt: skip

    def rollout(self, method: str, repeats: int) -> LayerRow:
        conv = OnlineConv(
            self.filters, self.length, schedule=method, dtype=self.dtype, backend=self.ex
        )
        self.memory.reset()

        def warm_up() -> None:
            conv.reset()
            conv.rollout(self.u0, self.ex.xp.tanh, steps=self.warmup_steps)
            self.ex.synchronize()

        short = self.warmup_steps is not None and self.warmup_steps < self.length
        seconds = _best(
            lambda: _time_rollout(conv, self.u0)[0][0], repeats, warm_up if short else None
        )
        return self.row(method, seconds)

    def floor(self, repeats: int) -> LayerRow:
        n = next_pow2(2 * self.length - 1)
        spectrum = filter_spectrum(self.filters, 0, self.length, n, xp=self.ex.xp)
        run = _offline(self.ex, self.inputs((self.length,)), spectrum, n)
        self.memory.reset()
        return self.row(OFFLINE, _best(lambda: _time_offline(run, self.ex)[0], repeats))

    def window_seconds(self, end: int, steps: int, repeats: int) -> float:
        """Seconds of the naive steps ``end - steps .. end - 1``, after an untimed prompt."""
        prompt = end - steps
        conv = OnlineConv(
            self.filters[:, : end], steps, schedule=NAIVE, prompt=prompt, dtype=self.dtype,
            backend=self.ex,
        )  # fmt: skip
        prompt_inputs = self.inputs((prompt,))

        def run() -> float:
            conv.reset()
            conv.prefill(prompt_inputs)
            self.memory.reset()  # the peak of the steps, not of the prompt's FFT
            return _time_rollout_kept(conv, self.u0)

        return _best(run, repeats)

    def naive(self, window: int | None, repeats: int) -> LayerRow:
        if window is None or 2 * window >= self.length:
            return self.rollout(NAIVE, repeats)
        middle = self.length // 2 + window // 2
        mean = self.window_seconds(middle, window, repeats) / window
        end = self.window_seconds(self.length, window, repeats) / window  # its peak is kept
        note = (
            f"estimated: {window} steps timed around L/2 (the mean of a per-step cost affine "
            f"in the position) and {window} ending at L"
        )
        return self.row(
            NAIVE, mean * self.length, timed_steps=window, end_us_per_token=end * 1e6, note=note
        )


def _time_rollout_kept(conv: OnlineConv, u0: Any) -> float:
    """Wall seconds of the rest of ``conv``'s rollout, from where its prompt left it."""
    ex = conv.backend
    ex.synchronize()
    start = time.perf_counter()
    conv.rollout(u0, ex.xp.tanh)
    ex.synchronize()
    return time.perf_counter() - start


def _not_run(template: Any, **fields: Any) -> Any:
    return replace(template, **fields, note="not run: out of time")


def layer_rows(
    backend: str | Executor | None,
    channels: int,
    length: int,
    *,
    schedules: Iterable[str] = ("continuous", "reuse"),
    window: int | None = None,
    dtype: str = "float32",
    repeats: int = 1,
    warmup_steps: int | None = None,
    seed: int = 0,
    memory: MemoryProbe | None = None,
    budget: Budget | None = None,
) -> list[LayerRow]:
    """Time one layer configuration: naive, ``schedules`` and the offline floor.

    Parameters
    ----------
    backend : str or Executor, optional
        Backend; the one in force by default.
    channels, length : int
        ``D`` and ``L``.
    schedules : iterable of str
        Schedules run whole beside naive.
    window : int, optional
        Naive is estimated from windows of this many steps (see the module docstring) when
        ``2 * window < L``; run whole otherwise or when ``None``.
    dtype : str
        Working precision.
    repeats : int
        Timed rounds after one warm-up round; each method keeps its best.
    warmup_steps : int, optional
        The warm-up of a schedule run whole generates only this many steps (``None``: a
        whole run). FFT plans of sizes first used later are then made in the first timed
        round (milliseconds each on a GPU); a compiled rollout (JAX) would be compiled there:
        keep ``None`` for JAX.
    seed : int
        Seed of the filters and inputs.
    memory : MemoryProbe, optional
        Peak-memory probe of the device (:class:`NoProbe` by default).
    budget : Budget, optional
        Methods that start after it is spent are returned as not run.

    Returns
    -------
    list of LayerRow
        Naive, the schedules, then the floor, with their ratios.
    """
    ex = get_backend(backend)
    layer = _Layer(ex, channels, length, dtype, seed, memory or NoProbe())
    layer.warmup_steps = warmup_steps
    budget = budget or Budget(None)
    jobs: list[tuple[str, Callable[[], LayerRow]]] = [
        (NAIVE, lambda: layer.naive(window, repeats)),
        *((s, lambda s=s: layer.rollout(s, repeats)) for s in schedules),
        (OFFLINE, lambda: layer.floor(repeats)),
    ]
    empty = LayerRow(ex.name, channels, length, "", None, None)
    rows = [_not_run(empty, method=m) if budget.spent() else job() for m, job in jobs]
    return with_ratios(rows)


@dataclass(frozen=True)
class ModelSpec:
    """A reference model of the table: ``mixer`` with ``layers`` blocks ``dim`` wide."""

    mixer: str
    layers: int
    dim: int

    @property
    def label(self) -> str:
        """E.g. ``hyena 4x256``."""
        return f"{self.mixer} {self.layers}x{self.dim}"

    def build(self, max_len: int, dtype: str) -> ConvLM:
        """The model, random weights (seed 1), 256 tokens."""
        return ConvLM(
            mixer=self.mixer, dim=self.dim, layers=self.layers, vocab_size=256,
            max_len=max_len, dtype=dtype, seed=1,
        )  # fmt: skip


def model_rows(
    backend: str | Executor | None,
    spec: ModelSpec,
    new_tokens: int,
    *,
    schedules: Sequence[str] = (NAIVE, "continuous"),
    dtype: str = "float32",
    memory: MemoryProbe | None = None,
    budget: Budget | None = None,
    untimed: bool = False,
) -> list[ModelRow]:
    """Generate ``new_tokens`` greedily from ``spec``'s model with each schedule (naive first).

    Parameters
    ----------
    backend : str or Executor, optional
    spec : ModelSpec
    new_tokens : int
        Tokens generated from the start token (no prompt).
    schedules : sequence of str
        The baseline (naive) first.
    dtype : str
    memory : MemoryProbe, optional
    budget : Budget, optional
        Schedules that start after it is spent are returned as not run.
    untimed : bool
        Also time each schedule's generation untimed (:attr:`ModelRow.untimed`).

    Returns
    -------
    list of ModelRow
        One per schedule, with its speedup and Amdahl ceiling over the first.
    """
    ex = get_backend(backend)
    memory = memory or NoProbe()
    budget = budget or Budget(None)
    model = spec.build(new_tokens, dtype)
    empty = ModelRow(ex.name, spec.label, new_tokens, "", None)
    rows: list[ModelRow] = []
    tokens: list[np.ndarray | None] = []
    for schedule in schedules:
        if budget.spent():
            rows.append(_not_run(empty, schedule=schedule))
            tokens.append(None)
            continue
        memory.reset()
        (run,) = compare_schedules(model, 0, new_tokens, (schedule,), backend=ex, repeats=1)
        row = replace(
            empty, schedule=schedule, seconds=run.seconds, long_conv=run.long_conv,
            rest=run.rest, peak_bytes=memory.peak(),
        )  # fmt: skip
        same: np.ndarray | None = run.tokens
        if untimed:
            seconds, plain = _untimed(model, new_tokens, schedule, ex)
            row = replace(row, untimed=seconds)
            same = run.tokens if np.array_equal(plain, run.tokens) else None
        rows.append(row)
        tokens.append(same)
        gc.collect()
    base = rows[0].seconds
    return [
        replace(
            r,
            untimed_speedup=_ratio(rows[0].untimed, r.untimed),
            speedup=_ratio(base, r.seconds),
            ceiling=_ratio(base, r.rest),
            identical=_same(t, tokens[0], r.seconds is not None),
        )
        for r, t in zip(rows, tokens, strict=True)
    ]


def _same(tokens: np.ndarray | None, naive: np.ndarray | None, ran: bool) -> bool | None:
    """Whether a run's tokens equal naive's: ``None`` if either did not run, ``False`` if its
    two runs (timed, untimed) disagreed (``tokens`` is then ``None`` though it ran)."""
    if not ran or naive is None:
        return None
    return tokens is not None and bool(np.array_equal(tokens, naive))


def _untimed(model: ConvLM, new_tokens: int, schedule: str, ex: Executor) -> tuple[float, Any]:
    """Seconds and tokens of a greedy generation with no timing inside it."""
    options = GenerationOptions(schedule=schedule, backend=ex, batch=1)
    ex.synchronize()
    start = time.perf_counter()
    run = generate(model, None, new_tokens, options)
    ex.synchronize()
    return time.perf_counter() - start, run.tokens
