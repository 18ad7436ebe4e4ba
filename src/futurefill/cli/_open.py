"""``futurefill bench --open-ended``: open-ended against known-length generation."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..executor import Executor
from ..measure.bench_open import DEFAULT_STOPS, OpenEndedResult, measure_open_ended
from ._table import print_or_json, print_table

__all__ = ["print_open_ended", "run_open_ended"]

_CAPTION = (
    "s: best timed round from construction to the last output (feedback u = tanh(y)); "
    "ratio = open-ended / known length (target <= 1.3); dev = max |y_open - y_known| / "
    "max |y_known|"
)


def print_open_ended(results: Sequence[OpenEndedResult]) -> None:
    """One row per backend, schedule and stop point."""
    rows = [
        (
            r.backend,
            r.schedule,
            str(r.length),
            f"{r.known_seconds:.4f}",
            f"{r.open_seconds:.4f}",
            f"{r.ratio:.3f}",
            f"{r.max_deviation:.0e}",
        )
        for r in results
    ]
    widths = ",".join(str(c) for c in sorted({r.channels for r in results}))
    print_table(
        f"stopping where nobody knew: open-ended vs known length, D={widths}",
        ("backend", "schedule", "stop", "known s", "open s", "ratio", "dev"),
        rows,
        caption=_CAPTION,
        left=("backend", "schedule"),
    )


def run_open_ended(args: argparse.Namespace, executors: Sequence[Executor]) -> int:
    """Measure and print (or ``--json``) open-ended generation at each stop point."""
    results: list[OpenEndedResult] = []
    for ex in executors:
        for schedule in args.schedules or ("continuous",):
            results += measure_open_ended(
                args.lengths or DEFAULT_STOPS,
                channels=args.channels,
                backend=ex,
                dtype=args.dtype,
                schedule=schedule,
                repeats=args.repeats,
            )
    print_or_json(results, args.json, print_open_ended)
    return 0
