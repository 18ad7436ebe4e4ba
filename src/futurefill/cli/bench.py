"""Same-run benchmark of the schedules and the offline floor.

Times naive, epoched and continuous generation (one depthwise layer with feedback
u[t+1] = tanh(y[t])) and the offline FFT floor in one process, so that their ratios are
comparable on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..bench import BenchResult, bench_configuration, measure_crossover
from ..plan import SCHEDULES
from ._args import UsageError
from ._table import console, print_table

__all__ = ["add_arguments", "print_results", "run"]

_CAPTION = (
    "speedup = naive time / time; floor = time / offline FFT conv of the same inputs; "
    "dev = max |y - y_naive| / max |y_naive|"
)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_results(results: Sequence[BenchResult], title: str) -> None:
    """Print benchmark rows: time, µs/token, speedup, floor ratio, deviation."""
    headers = ("backend", "D", "L", "method", "s", "µs/token", "speedup", "floor", "dev")
    rows = [
        (
            r.backend,
            str(r.channels),
            str(r.length),
            r.schedule,
            f"{r.seconds:.3f}",
            f"{r.us_per_token:.2f}",
            _fmt(r.speedup_vs_naive, ".1f"),
            _fmt(r.ratio_to_floor, ".2f"),
            _fmt(r.max_deviation, ".1e"),
        )
        for r in results
    ]
    print_table(title, headers, rows, caption=_CAPTION, left=("backend", "method"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``futurefill bench`` to ``parser``."""
    parser.add_argument("--backend", action="append", help="backend (repeatable); default numpy")
    parser.add_argument("--length", type=int, default=32768, help="tokens generated (L)")
    parser.add_argument("--lengths", help="comma-separated lengths (scaling runs, --plot)")
    parser.add_argument("--channels", type=int, default=64, help="depthwise channels D")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--schedules", default=",".join(SCHEDULES))
    parser.add_argument("--repeats", type=int, default=1, help="best-of repeats of each timing")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--plot", metavar="PNG", help="time per token vs length, log-log")
    parser.add_argument("--crossover", action="store_true", help="measure direct_below")


def _run_configs(
    configs: list[dict[str, Any]], *, quiet: bool = False, **common: Any
) -> list[BenchResult]:
    results: list[BenchResult] = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=quiet,
        console=console(stderr=True),
    ) as progress:
        task = progress.add_task("benchmarking", total=len(configs))
        for cfg in configs:
            progress.update(
                task, description=f"{cfg['backend']} D={cfg['channels']} L={cfg['length']}"
            )
            results += bench_configuration(**cfg, **common)
            progress.advance(task)
    return results


def _crossover(args: argparse.Namespace) -> int:
    for backend in args.backend:
        rows = [
            (str(k0), f"{us:.2f}")
            for k0, us in measure_crossover(
                length=args.length, channels=args.channels, backend=backend, dtype=args.dtype
            )
        ]
        title = f"{backend}: continuous, D={args.channels}"
        print_table(title, ("direct_below", "µs/token"), rows)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``futurefill bench`` with parsed arguments; return the exit status."""
    if args.backend is None:
        args.backend = ["numpy"]
    schedules = tuple(args.schedules.split(","))
    unknown = set(schedules) - set(SCHEDULES)
    if unknown:
        raise UsageError(f"unknown schedules {sorted(unknown)}; choose from {SCHEDULES}")
    if args.crossover:
        return _crossover(args)
    lengths = [int(v) for v in args.lengths.split(",")] if args.lengths else [args.length]
    configs = [
        {"backend": b, "length": n, "channels": args.channels, "schedules": schedules}
        for b in args.backend
        for n in lengths
    ]
    results = _run_configs(configs, quiet=args.json, dtype=args.dtype, repeats=args.repeats)
    if args.json:
        json.dump([r.as_dict() for r in results], sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_results(results, "same-run comparison (ratios are what count)")
    if args.plot:
        from ..plot import plot_scaling

        plot_scaling([r.as_dict() for r in results], args.plot)
        if not args.json:
            print(f"wrote {args.plot}")
    return 0
