"""``futurefill bench-pool`` and :func:`futurefill.measure.bench_pool.measure_pool` on tiny sizes.

The timings are not checked (a shared machine); what is checked is what a row is made of: the
slots really stand at their staggered positions and step (the pool's counters), the transform
calls per tick against the distinct FFT sizes due per tick counted here from the plan, and the
ratio against its definition.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from futurefill import PlanSpec, make_plan
from futurefill.cli import main
from futurefill.measure.bench_pool import measure_pool

C, L, S = 2, 64, 4
SPEC = PlanSpec("continuous").with_params(direct_below=2)  # tasks (the default here has none)


def sizes_due_per_tick(length: int, capacity: int) -> float:
    """Mean number of distinct FFT sizes due per tick, slots at ``0, T, 2T, ...``."""
    plan = make_plan(length, SPEC)
    ticks = length // capacity
    offsets = np.arange(capacity) * ticks
    counts = []
    for k in range(ticks):
        tasks = [i for t in offsets + k for i in range(*plan.task_ptr[t : t + 2])]
        counts.append(len({int(plan.fft_size[i]) for i in tasks}))
    return float(np.mean(counts))


def test_measure_pool_counts_one_transform_call_per_fft_size_due() -> None:
    r = measure_pool(
        "numpy",
        channels=C,
        length=L,
        capacity=S,
        schedule=SPEC,
        repeats=1,
        timer=time.process_time,
    )
    assert (r.ticks, r.capacity, r.length, r.schedule) == (
        L // S,
        S,
        L,
        str(SPEC),
    )
    want = sizes_due_per_tick(L, S)
    assert want > 0  # the ticks run tasks
    assert r.sizes_per_tick == pytest.approx(want)
    assert r.transforms_per_tick == pytest.approx(want) and r.most_extra_transforms == 0
    assert r.pool_us > 0 and r.lockstep_us > 0
    assert r.ratio == pytest.approx(r.pool_us / r.lockstep_us)


def test_bench_pool_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench-pool", "--channels", str(C), "--length", str(L), "--capacity", str(S)]
    argv += [
        "--schedules",
        "continuous:direct_below=2",
        "--repeats",
        "1",
        "--clock",
        "cpu",
        "--json",
    ]
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["ratio"] == pytest.approx(row["pool_us"] / row["lockstep_us"])
    assert row["transforms_per_tick"] == pytest.approx(row["sizes_per_tick"])
