"""What an open-ended stream costs: stopping at a length nobody knew in advance.

:func:`measure_open_ended` generates ``n`` tokens (one depthwise layer, feedback
``u[t+1] = tanh(y[t])``) twice per stop point ``n``: with ``OnlineConv(filters, None)``, whose
plan grows in segments, and with a plan of exactly ``n`` steps, as a user who knew ``n`` would
build it. Each time counts everything from construction to the last output (plans and
segments, filter spectra, the steps); one warm-up round first (FFT plans, plan caches, JAX
compilation: the same for both), then the best of ``repeats`` rounds, the two methods
alternating so that a slow spell of the machine hits both.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import check_int
from .._registry import get_backend
from ..executor import Executor
from ..filters import decaying_random_filters
from ..online import OnlineConv
from ..plan import PlanSpec
from ._timing import Run, dtype_name

__all__ = ["OpenEndedResult", "measure_open_ended"]

#: Stop points of ``futurefill bench --open-ended`` by default.
DEFAULT_STOPS = (1000, 5000, 20000, 65536)


@dataclass(frozen=True, eq=False)
class OpenEndedResult(Run):
    """Generation stopped after ``length`` steps, open-ended and with a known length.

    Attributes
    ----------
    backend, schedule, length, channels, batch, dtype
        What ran (see :class:`futurefill.measure._timing.Run`); ``length`` is the stop point.
    open_seconds, known_seconds : float
        Best round of each, construction included.
    max_deviation : float
        ``max |y_open - y_known| / max |y_known|``.
    """

    open_seconds: float
    known_seconds: float
    max_deviation: float

    @property
    def ratio(self) -> float:
        """Open-ended time over known-length time (target: at most 1.3)."""
        return self.open_seconds / self.known_seconds

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            **self.head(),
            "open_s": self.open_seconds,
            "known_s": self.known_seconds,
            "ratio": self.ratio,
            "max_deviation": self.max_deviation,
        }


def measure_open_ended(
    stops: Sequence[int] = DEFAULT_STOPS,
    *,
    channels: int = 64,
    backend: str | Executor | None = None,
    dtype: str = "float64",
    schedule: str | PlanSpec = "continuous",
    repeats: int = 3,
    seed: int = 0,
) -> list[OpenEndedResult]:
    """Time open-ended against known-length generation at each stop point.

    Parameters
    ----------
    stops : sequence of int
        Steps generated before stopping; the filters have ``max(stops)`` taps.
    channels : int
        Depthwise channels ``D`` (batch 1).
    backend, dtype, schedule
        What to run.
    repeats : int
        Timed rounds after the warm-up; each method keeps its best.
    seed : int
        Seed of the filters and the first input.

    Returns
    -------
    list of OpenEndedResult
        One per stop point.
    """
    stops = [check_int("stop", n, 1) for n in stops]
    repeats = check_int("repeats", repeats, 1)
    ex = get_backend(backend)
    taps = max(stops)
    host = decaying_random_filters(channels, taps, seed=seed, normalize=True, dtype=dtype)
    filters = ex.asarray(host, dtype=dtype)
    u0 = ex.asarray(
        np.random.default_rng(seed + 1).standard_normal((1, channels)).astype(dtype), dtype=dtype
    )
    tanh = ex.xp.tanh

    def generate(length: int | None, steps: int) -> tuple[float, Any]:
        ex.synchronize()
        start = time.perf_counter()
        conv = OnlineConv(filters, length, schedule=schedule, dtype=dtype, backend=ex)
        ys = conv.rollout(u0, tanh, steps)
        ex.synchronize()
        return time.perf_counter() - start, ys

    results = []
    for n in stops:
        best = {"open": float("inf"), "known": float("inf")}
        outputs: dict[str, np.ndarray] = {}
        for round_ in range(1 + repeats):
            for method, length in (("open", None), ("known", n))[:: 1 if round_ % 2 else -1]:
                seconds, ys = generate(length, n)
                outputs[method] = ex.to_numpy(ys)
                if round_:
                    best[method] = min(best[method], seconds)
        scale = max(float(np.max(np.abs(outputs["known"]))), 1e-300)
        deviation = float(np.max(np.abs(outputs["open"] - outputs["known"]))) / scale
        results.append(
            OpenEndedResult(
                backend=ex.name,
                schedule=str(PlanSpec.coerce(schedule)),
                length=n,
                channels=channels,
                batch=1,
                dtype=dtype_name(dtype),
                open_seconds=best["open"],
                known_seconds=best["known"],
                max_deviation=deviation,
            )
        )
    return results
