"""A pool of streams at scattered positions against one lock-step batch, in the same process.

:func:`measure_pool` puts ``capacity`` slots of a :class:`futurefill.StreamPool` at random
positions and steps them all together for ``ticks`` calls; the baseline is one
:class:`futurefill.OnlineConv` of batch ``capacity`` (every row at one position) stepping
through the same positions. Both report time per slot-step (per row-step), warm, best of
``repeats``. It also counts, per tick, the batched transform calls of the pool against the
number of distinct FFT sizes due in that tick -- the bound the grouping aims at.

Positions are set by loading slot states (buffers of zeros at the chosen step): the cost of a
step depends on the step's tasks, not on the numbers in the buffer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .._checks import check_int
from .._registry import get_backend
from ..executor import Executor
from ..filters import decaying_random_filters
from ..online import OnlineConv
from ..plan import PlanSpec
from ..pool import StreamPool

__all__ = ["PoolResult", "measure_pool"]


@dataclass(frozen=True)
class PoolResult:
    """What :func:`measure_pool` measured (times in µs per slot-step, best of the repeats)."""

    backend: str
    schedule: str
    channels: int
    length: int
    capacity: int
    ticks: int
    pool_us: float
    lockstep_us: float
    transforms_per_tick: float
    sizes_per_tick: float
    most_extra_transforms: int
    memory_bytes: int

    @property
    def ratio(self) -> float:
        """Pool time per slot-step over the lock-step batch's time per row-step."""
        return self.pool_us / self.lockstep_us

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for ``--json``), with the ratio."""
        return {**asdict(self), "ratio": self.ratio}


def measure_pool(
    backend: str | Executor | None = None,
    *,
    channels: int = 64,
    length: int = 32768,
    capacity: int = 64,
    schedule: str | PlanSpec = "continuous",
    dtype: str = "float64",
    repeats: int = 2,
    seed: int = 0,
    timer: Callable[[], float] = time.perf_counter,
) -> PoolResult:
    """Time a pool of ``capacity`` slots at staggered positions against a lock-step batch.

    Parameters
    ----------
    backend : str or Executor, optional
        The backend (the one in force by default).
    channels, length, capacity : int
        One layer of ``channels`` channels; slots of ``length`` steps; number of slots
        (``length >= capacity``).
    schedule : str or PlanSpec
        The schedule of both.
    dtype : str
        Working precision.
    repeats : int
        Timed rounds after one warm-up round; the best is kept.
    seed : int
        Seeds the filters and inputs.
    timer : callable
        The seconds measured: wall clock by default; ``time.process_time`` counts this
        process's CPU time only (on a shared CPU: the work without the waits for a core).

    Returns
    -------
    PoolResult
    """
    executor = get_backend(backend)
    channels = check_int("channels", channels, 1)
    capacity = check_int("capacity", capacity, 1)
    length = check_int("length", length, capacity)
    repeats = check_int("repeats", repeats, 1)
    ticks = length // capacity
    rng = np.random.default_rng(seed)
    phi = decaying_random_filters(channels, length, seed=seed, decay=length / 64)
    pool = StreamPool(
        phi, length, capacity=capacity, schedule=schedule, backend=executor, dtype=dtype
    )
    conv = OnlineConv(
        phi, length, batch=capacity, schedule=pool.plan, backend=executor, dtype=dtype
    )
    blank = pool.state_dict(pool.admit())
    pool.release(0)
    u = executor.asarray(rng.standard_normal((capacity, channels)), dtype=dtype)
    plan = pool.plan
    offsets = np.arange(capacity) * ticks

    def run_pool() -> tuple[float, list[int], list[int]]:
        for slot in pool.active_slots:
            pool.release(slot)
        slots = [pool.load_state_dict({**blank, "step": int(o), "closed": True}) for o in offsets]
        calls, sizes = [], []
        executor.synchronize()
        start = timer()
        for _ in range(ticks):
            before = pool.stats.transforms
            pool.step(slots, u)
            calls.append(pool.stats.transforms - before)
        executor.synchronize()
        spent = timer() - start
        for k in range(ticks):
            due = offsets + k
            sizes.append(
                len({int(plan.fft_size[i]) for t in due for i in range(*plan.task_ptr[t : t + 2])})
            )
        return spent, calls, sizes

    def run_lockstep() -> float:
        conv.reset()
        executor.synchronize()
        start = timer()
        for _ in range(ticks * capacity):
            conv.step(u)
        executor.synchronize()
        return timer() - start

    run_pool(), run_lockstep()  # warm-up (compilation on JAX, caches)
    pool_best, lock_best = float("inf"), float("inf")
    calls: list[int] = []
    sizes: list[int] = []
    for _ in range(repeats):
        seconds, calls, sizes = run_pool()
        pool_best = min(pool_best, seconds)
        lock_best = min(lock_best, run_lockstep())
    steps = ticks * capacity
    return PoolResult(
        backend=executor.name,
        schedule=str(plan.spec),
        channels=channels,
        length=length,
        capacity=capacity,
        ticks=ticks,
        pool_us=pool_best / steps * 1e6,
        lockstep_us=lock_best / (steps * capacity) * 1e6,  # length steps of capacity rows
        transforms_per_tick=float(np.mean(calls)),
        sizes_per_tick=float(np.mean(sizes)),
        most_extra_transforms=int(np.max(np.asarray(calls) - np.asarray(sizes))),
        memory_bytes=pool.memory_bytes,
    )
