"""A pool of streams at different positions against one lock-step batch.

The slots of a StreamPool stand at positions 0, T, 2T, ... (T = length / capacity) and all
step together, so they visit every position once; the baseline is one OnlineConv of batch
capacity stepping through the same positions in lock-step: the same tasks and window sums,
grouped differently. Reports microseconds per slot-step (per row-step), warm, best of the
repeats, their ratio, the pool's batched transform calls per tick against the distinct FFT
sizes due per tick (the bound of the grouping), and the pool's memory.
"""

from __future__ import annotations

import argparse

from ..measure.bench_pool import PoolResult, measure_pool
from ._args import (
    add_choice,
    add_clock,
    add_options,
    as_usage_error,
    clock_timer,
    count,
    resolve_backend,
    schedule_names,
)
from ._table import print_or_json, print_table

__all__ = ["add_arguments", "run"]

_HEADERS = (
    "backend",
    "schedule",
    "D",
    "L",
    "slots",
    "pool us/slot-step",
    "lock-step us/row-step",
    "ratio",
    "transforms/tick",
    "FFT sizes due/tick",
    "most extra",
    "memory MiB",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``futurefill bench-pool`` to ``parser``."""
    add_choice(parser, "--dtype", ("float64", "float32"), "working precision")
    add_clock(parser)
    add_options(
        parser,
        [
            ("--channels", count(1), 64, "channels of the layer (D)"),
            ("--length", count(2), 32768, "steps of a slot; the positions 0 .. length-1"),
            ("--capacity", count(1), 64, "slots"),
            ("--repeats", count(1), 2, "timed rounds after a warm-up, best kept"),
        ],
    )
    parser.add_argument(
        "--schedules",
        type=schedule_names,
        default=("continuous",),
        metavar="S1,S2,...",
        help="comma-separated schedules (default: continuous)",
    )
    parser.add_argument("--backend", help="backend (default: $FUTUREFILL_BACKEND, else numpy)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def _row(r: PoolResult) -> tuple[str, ...]:
    return (
        r.backend,
        r.schedule,
        str(r.channels),
        str(r.length),
        str(r.capacity),
        f"{r.pool_us:.1f}",
        f"{r.lockstep_us:.1f}",
        f"{r.ratio:.2f}",
        f"{r.transforms_per_tick:.2f}",
        f"{r.sizes_per_tick:.2f}",
        str(r.most_extra_transforms),
        f"{r.memory_bytes / 2**20:.0f}",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``futurefill bench-pool``; return the exit status."""
    executor = resolve_backend(args.backend, args.dtype)
    if args.length < args.capacity:
        with as_usage_error():
            raise ValueError(f"--length {args.length} is less than --capacity {args.capacity}")
    results = [
        measure_pool(
            executor,
            channels=args.channels,
            length=args.length,
            capacity=args.capacity,
            schedule=schedule,
            dtype=args.dtype,
            repeats=args.repeats,
            timer=clock_timer(args),
        )
        for schedule in args.schedules
    ]
    print_or_json(
        results,
        args.json,
        lambda rows: print_table(
            "pool at staggered positions vs lock-step batch (same run)",
            _HEADERS,
            [_row(r) for r in rows],
        ),
    )
    return 0
