"""Same-run benchmark of the schedules and the offline floor.

Times the schedules (default: every built-in one) generating through one depthwise layer
with feedback u[t+1] = tanh(y[t]) and the offline FFT floor in one process, so that ratios are
comparable on a busy machine. Each configuration runs one warm-up round first (compilation,
FFT plans, caches: reported apart in the "warm-up s" column, never in the timings), then
--repeats timed rounds, keeping each method's best.

Beside each measured time it prints the time predicted by the cost model, calibrated first
on the same backend, dtype and width (--no-predict skips it), and where that time goes.

--open-ended times generation stopped at each of --lengths (default 1000, 5000, 20000, 65536)
with an open-ended OnlineConv (length=None) against a plan of exactly that length.

--latency times every OnlineConv.step call instead (all schedules on one stream, in
lock-step, after a warm-up pass reported apart) and prints p50, p99, p99.9, max and the mean
per schedule; with --plot, a histogram per schedule.

The default run (numpy, L=32768, D=64, all five schedules) takes about a minute or more on a
two-core machine, mostly the naive schedule, which runs twice (warm-up, then the timed round);
--length 4096 gives a quick look.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..executor import Executor
from ..measure.bench import BenchResult, bench_configuration, measure_crossover
from ..plan import SCHEDULES
from ._args import (
    UsageError,
    add_choice,
    add_options,
    check_streams,
    count,
    lengths,
    plot_path,
    positions,
    resolve_backend,
    schedule_names,
)
from ._latency import run_latency
from ._open import run_open_ended
from ._table import console, print_or_json, print_table

__all__ = ["add_arguments", "print_results", "run"]

_CAPTION = (
    "s, µs/token: best timed round; warm-up s: what the first round took beyond it "
    "(compilation, FFT plans, caches); speedup = naive time / time; floor = time / offline "
    "FFT conv of the same inputs; dev = max |y - y_naive| / max |y_naive|; "
    "pred s: the calibrated cost model's prediction"
)
_MODEL_CAPTION = (
    "FLOPs ÷ floor: the method's FLOPs in units of the offline floor's; overhead: the share "
    "of the predicted time spent per step and per task rather than on arithmetic; cpu s: "
    "processor time of the same round, which other tenants of a shared machine do not "
    "inflate (on a CPU backend the prediction aims at it)"
)


#: Shortest generation the calibration of the cost model can time (its plans need FFT tasks).
_CALIBRATED = 3


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_results(results: Sequence[BenchResult], title: str) -> None:
    """Print benchmark rows: time, prediction, µs/token, warm-up, speedup, floor ratio,
    deviation; then, when there are predictions, where the predicted time goes."""
    headers = (
        "backend",
        "D",
        "L",
        "method",
        "s",
        "pred s",
        "s/pred",
        "µs/token",
        "warm-up s",
        "speedup",
        "floor",
        "dev",
    )
    rows = [
        (
            r.backend,
            str(r.channels),
            str(r.length),
            r.schedule,
            f"{r.seconds:.3f}",
            _fmt(r.predicted_seconds, ".3f"),
            _fmt(r.measured_vs_predicted, ".2f"),
            f"{r.us_per_token:.2f}",
            f"{r.warmup_seconds:.3f}",
            _fmt(r.speedup_vs_naive, ".1f"),
            _fmt(r.ratio_to_floor, ".2f"),
            _fmt(r.max_deviation, ".1e"),
        )
        for r in results
    ]
    print_table(title, headers, rows, caption=_CAPTION, left=("backend", "method"))
    predicted = [r for r in results if r.predicted_seconds is not None]
    if predicted:
        print_model(predicted)


def print_model(results: Sequence[BenchResult]) -> None:
    """Print the cost model's view of benchmark rows: FLOPs in units of the floor, the
    overhead share of the prediction, processor time and its ratio to the prediction."""
    headers = ("backend", "D", "L", "method", "FLOPs ÷ floor", "overhead", "cpu s", "cpu/pred")
    rows = [
        (
            r.backend,
            str(r.channels),
            str(r.length),
            r.schedule,
            _fmt(r.flops_vs_floor, ".2f"),
            _fmt(None if r.predicted_overhead is None else 100 * r.predicted_overhead, ".0f") + "%",
            f"{r.cpu_seconds:.3f}",
            _fmt(r.cpu_vs_predicted, ".2f"),
        )
        for r in results
    ]
    title = "cost model: arithmetic vs overhead"
    print_table(title, headers, rows, caption=_MODEL_CAPTION, left=("backend", "method"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``futurefill bench`` to ``parser``."""
    parser.add_argument(
        "--backend",
        action="append",
        help="backend, repeatable (default: $FUTUREFILL_BACKEND, else numpy)",
    )
    add_options(
        parser,
        [
            ("--length", positions, 32768, "tokens generated, L"),
            ("--channels", count(1), 64, "depthwise channels D"),
            (
                "--repeats",
                count(1),
                1,
                "timed rounds after the warm-up; each method keeps its best",
            ),
        ],
    )
    parser.add_argument(
        "--lengths",
        type=lengths,
        metavar="L1,L2,...",
        help="comma-separated lengths, one run each, instead of --length (scaling runs, --plot)",
    )
    add_choice(parser, "--dtype", ("float64", "float32"), "working precision")
    parser.add_argument(
        "--schedules",
        type=schedule_names,
        default=None,
        metavar="S1,S2,...",
        help=f"comma-separated schedules (default: {','.join(SCHEDULES)}; continuous only "
        "with --open-ended); parameters as name:param=value, e.g. reuse:radix=8",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument(
        "--plot",
        type=plot_path,
        metavar="PATH",
        help="draw time per token vs length, log-log (with --latency: histograms of the "
        "per-step times); e.g. scaling.png; needs matplotlib",
    )
    parser.add_argument(
        "--crossover",
        action="store_true",
        help="instead: time the continuous schedule for direct_below = 1, 2, 4, ..., 256",
    )
    parser.add_argument(
        "--latency",
        action="store_true",
        help="instead: time every OnlineConv.step call; p50/p99/p99.9/max/mean per schedule "
        "(with --plot: a histogram per schedule)",
    )
    parser.add_argument(
        "--open-ended",
        action="store_true",
        help="instead: generation stopped at each of --lengths (default 1000,5000,20000,65536) "
        "with OnlineConv(length=None) vs a plan of exactly that length (use --repeats 3)",
    )
    parser.add_argument(
        "--warmup-steps",
        type=count(0),
        default=None,
        metavar="N",
        help="--latency: steps of the warm-up pass, reported apart (default: all L)",
    )
    parser.add_argument(
        "--no-predict",
        action="store_true",
        help="skip the calibration of the cost model and the predicted times (a few seconds "
        "per configuration; longer with naive at large L and D)",
    )


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
                task, description=f"{cfg['backend'].name} D={cfg['channels']} L={cfg['length']}"
            )
            results += bench_configuration(**cfg, **common)
            progress.advance(task)
    return results


def _crossover(args: argparse.Namespace, executors: list[Executor]) -> int:
    rows = [
        {"backend": ex.name, "direct_below": k0, "us_per_token": us}
        for ex in executors
        for k0, us in measure_crossover(
            length=args.length, channels=args.channels, backend=ex, dtype=args.dtype
        )
    ]
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    for ex in executors:
        table = [
            (str(r["direct_below"]), f"{r['us_per_token']:.2f}")
            for r in rows
            if r["backend"] == ex.name
        ]
        title = f"{ex.name}: continuous, D={args.channels}, L={args.length}"
        print_table(title, ("direct_below", "µs/token"), table)
    return 0


def _check(args: argparse.Namespace) -> None:
    if args.crossover and (args.plot or args.lengths):
        raise UsageError("--crossover measures one length: it takes neither --plot nor --lengths")
    if args.latency and (args.crossover or args.lengths or args.repeats != 1):
        raise UsageError(
            "--latency measures one pass of one length: it takes no --crossover, --lengths "
            "or --repeats"
        )
    if args.open_ended and (args.latency or args.crossover or args.plot):
        raise UsageError("--open-ended takes no --latency, --crossover or --plot")
    if args.warmup_steps is not None and not args.latency:
        raise UsageError("--warmup-steps goes with --latency")
    if args.warmup_steps is not None and args.warmup_steps > args.length:
        raise UsageError(f"--warmup-steps must be at most --length {args.length}")
    sizes = args.lengths or [args.length]
    calibrated = not (args.no_predict or args.latency or args.crossover or args.open_ended)
    if calibrated and min(sizes) < _CALIBRATED:
        option = "--lengths" if args.lengths else "--length"
        raise UsageError(
            f"{option} must be >= {_CALIBRATED} for the cost model's calibration, got "
            f"{min(sizes)} (or pass --no-predict)"
        )
    streams = 1 if args.crossover else len(args.schedules or SCHEDULES)
    check_streams(max(sizes), args.channels, streams=streams)


def run(args: argparse.Namespace) -> int:
    """Run ``futurefill bench`` with parsed arguments; return the exit status."""
    _check(args)
    executors = [resolve_backend(name, args.dtype) for name in args.backend or [None]]
    if args.crossover:
        return _crossover(args, executors)
    if args.open_ended:
        return run_open_ended(args, executors)
    schedules = args.schedules or SCHEDULES
    if args.latency:
        args.schedules = schedules
        return run_latency(args, executors)
    configs = [
        {"backend": ex, "length": n, "channels": args.channels, "schedules": schedules}
        for ex in executors
        for n in args.lengths or [args.length]
    ]
    results = _run_configs(
        configs,
        quiet=args.json,
        dtype=args.dtype,
        repeats=args.repeats,
        predict=not args.no_predict,
    )
    print_or_json(
        results,
        args.json,
        lambda rows: print_results(rows, "same-run comparison (ratios are what count)"),
    )
    if args.plot:
        from ..measure.plot import plot_scaling

        try:
            plot_scaling([r.as_dict() for r in results], args.plot)
        except OSError as exc:
            raise UsageError(f"--plot {args.plot}: {exc}") from None
        if not args.json:
            print(f"wrote {args.plot}")
    return 0
