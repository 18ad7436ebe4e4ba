"""``futurefill bench --latency``: the distribution of per-step times (table, JSON, plot)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..executor import Executor
from ..measure.latency import LatencyResult, measure_latency
from ._args import UsageError
from ._table import print_or_json, print_table

__all__ = ["print_latency", "run_latency"]

_CAPTION = (
    "time of one OnlineConv.step call, in µs, over the measured pass (the warm-up pass, run "
    "first on the same stream, is reported apart: its mean and worst step); latency targets: "
    "max/p50 <= 50, p99.9/p50 <= 10; dev = max |y - y_ref| / max |y_ref| against the first "
    "schedule"
)


def print_latency(results: Sequence[LatencyResult]) -> None:
    """Print one row per schedule: mean, p50, p99, p99.9, max, the tail ratios, the warm-up."""
    headers = (
        "backend",
        "method",
        "mean",
        "p50",
        "p99",
        "p99.9",
        "max",
        "max/p50",
        "p99.9/p50",
        "warm-up mean/max",
        "dev",
    )
    rows = []
    for r in results:
        s, d = r.summary, r.as_dict()
        rows.append(
            (
                r.backend,
                r.schedule,
                *(f"{s[name]:.1f}" for name in ("mean", "p50", "p99", "p99.9", "max")),
                f"{r.worst_vs_median:.1f}",
                f"{r.p999_vs_median:.1f}",
                f"{d['warmup_mean_us']:.1f} / {d['warmup_max_us']:.0f}",
                "—" if r.max_deviation is None else f"{r.max_deviation:.0e}",
            )
        )
    sizes = sorted({(r.channels, r.length, r.batch) for r in results})
    where = ", ".join(f"D={c}, L={n}" + (f", B={b}" if b > 1 else "") for c, n, b in sizes)
    title = f"per-step latency (µs), every schedule on one stream: {where}"
    print_table(title, headers, rows, caption=_CAPTION, left=("backend", "method"))


def run_latency(args: argparse.Namespace, executors: Sequence[Executor]) -> int:
    """Measure, print (or ``--json``) and draw (``--plot``) the per-step latencies."""
    results: list[LatencyResult] = []
    for ex in executors:
        results += measure_latency(
            length=args.length,
            channels=args.channels,
            backend=ex,
            dtype=args.dtype,
            schedules=args.schedules,
            warmup_steps=args.warmup_steps,
        )
    print_or_json(results, args.json, print_latency)
    if args.plot:
        from ..measure.plot import plot_latency

        times = {
            (r.schedule if len(executors) == 1 else f"{r.backend}: {r.schedule}"): r.seconds
            for r in results
        }
        title = f"Per-step latency, D={args.channels}, L={args.length}, {args.dtype}"
        try:
            plot_latency(times, args.plot, title=title)
        except OSError as exc:
            raise UsageError(f"--plot {args.plot}: {exc}") from None
        if not args.json:
            print(f"wrote {args.plot}")
    return 0
