"""Command line: ``futurefill demo | bench | plan | bench-model``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .bench import BenchResult, bench_configuration, measure_crossover
from .plan import SCHEDULES

__all__ = ["main"]


def _rich() -> Any:
    try:
        import rich.console
        import rich.progress
        import rich.table
    except ModuleNotFoundError as exc:  # pragma: no cover - exercised without the extra
        raise SystemExit("the futurefill CLI needs rich: pip install 'futurefill[cli]'") from exc
    return rich


def _console() -> Any:
    """A console at least 100 columns wide, so that tables are not squeezed in pipes and CI."""
    import shutil

    return _rich().console.Console(width=max(shutil.get_terminal_size().columns, 100))


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def results_table(results: Sequence[BenchResult], title: str) -> Any:
    """A rich table of benchmark rows: time, µs/token, speedup, floor ratio, deviation."""
    rich = _rich()
    table = rich.table.Table(title=title)
    table.caption = (
        "speedup = naive time / time; floor = time / offline FFT conv of the same inputs; "
        "dev = max |y - y_naive| / max |y_naive|"
    )
    for name in ("backend", "D", "L", "method", "s", "µs/token", "speedup", "floor", "dev"):
        table.add_column(name, justify="left" if name in ("backend", "method") else "right")
    for r in results:
        table.add_row(
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
    return table


def _run_configs(
    configs: list[dict[str, Any]], *, quiet: bool = False, **common: Any
) -> list[BenchResult]:
    rich = _rich()
    results: list[BenchResult] = []
    with rich.progress.Progress(
        rich.progress.SpinnerColumn(),
        rich.progress.TextColumn("{task.description}"),
        rich.progress.BarColumn(),
        rich.progress.TimeElapsedColumn(),
        transient=True,
        disable=quiet,
        console=rich.console.Console(stderr=True),
    ) as progress:
        task = progress.add_task("benchmarking", total=len(configs))
        for cfg in configs:
            progress.update(
                task, description=f"{cfg['backend']} D={cfg['channels']} L={cfg['length']}"
            )
            results += bench_configuration(**cfg, **common)
            progress.advance(task)
    return results


def _demo(args: argparse.Namespace) -> int:
    console = _console()
    console.print(
        f"[bold]futurefill demo[/]: one depthwise layer, D={args.channels} channels, "
        f"L={args.length} tokens generated with feedback u(t+1) = tanh(y(t)), NumPy float64"
    )
    results = bench_configuration(
        length=args.length, channels=args.channels, backend="numpy", repeats=2
    )
    console.print(results_table(results, "naive vs FutureFill schedules (same run)"))
    console.print(_model_demo_rows(args.model_prompt, args.model_tokens))
    return 0


def _model_demo_rows(prompt: int, tokens: int) -> Any:
    """The reference-model part of the demo: naive vs continuous generation of real models."""
    from .models.benchmark import demo_models

    table = _rich().table.Table(
        title=f"reference models (random weights, NumPy float64): prompt {prompt}, "
        f"{tokens} new tokens, greedy"
    )
    for name in ("model", "schedule", "tokens/s", "speedup", "identical tokens"):
        table.add_column(name, justify="left" if name in ("model", "schedule") else "right")
    for model, schedule, rate, speedup, same in demo_models(prompt_len=prompt, new_tokens=tokens):
        table.add_row(model, schedule, f"{rate:.0f}", f"{speedup:.1f}", "yes" if same else "NO")
    return table


def _bench(args: argparse.Namespace) -> int:
    rich = _rich()
    console = _console()
    schedules = tuple(args.schedules.split(","))
    unknown = set(schedules) - set(SCHEDULES)
    if unknown:
        raise SystemExit(f"unknown schedules {sorted(unknown)}; choose from {SCHEDULES}")
    if args.crossover:
        for backend in args.backend:
            table = rich.table.Table(title=f"{backend}: continuous, D={args.channels}")
            table.add_column("direct_below", justify="right")
            table.add_column("µs/token", justify="right")
            for k0, us in measure_crossover(
                length=args.length, channels=args.channels, backend=backend, dtype=args.dtype
            ):
                table.add_row(str(k0), f"{us:.2f}")
            console.print(table)
        return 0
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
        console.print(results_table(results, "same-run comparison (ratios are what count)"))
    if args.plot:
        from .plot import plot_scaling

        plot_scaling([r.as_dict() for r in results], args.plot)
        if not args.json:
            console.print(f"wrote {args.plot}")
    return 0


def _forward(module: str, argv: Sequence[str]) -> int:
    import importlib

    return int(importlib.import_module(module, __package__).main(list(argv)) or 0)


def build_parser() -> argparse.ArgumentParser:
    """The ``futurefill`` argument parser."""
    parser = argparse.ArgumentParser(prog="futurefill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generation on NumPy: naive vs epoched vs continuous")
    demo.add_argument("--length", type=int, default=16384, help="tokens to generate")
    demo.add_argument("--channels", type=int, default=64, help="depthwise channels D")
    demo.add_argument("--model-prompt", type=int, default=1024, help="reference-model prompt")
    demo.add_argument("--model-tokens", type=int, default=8192, help="reference-model tokens")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser("bench", help="same-run benchmark of the schedules and the floor")
    bench.add_argument("--backend", action="append", help="backend (repeatable); default numpy")
    bench.add_argument("--length", type=int, default=32768, help="tokens generated (L)")
    bench.add_argument("--lengths", help="comma-separated lengths (scaling runs, --plot)")
    bench.add_argument("--channels", type=int, default=64, help="depthwise channels D")
    bench.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    bench.add_argument("--schedules", default=",".join(SCHEDULES))
    bench.add_argument("--repeats", type=int, default=1, help="best-of repeats of each timing")
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    bench.add_argument("--plot", metavar="PNG", help="time per token vs length, log-log")
    bench.add_argument("--crossover", action="store_true", help="measure direct_below")
    bench.set_defaults(func=_bench)

    for name, module, text in (
        ("plan", "._plan_cli", "print (and draw) a plan's tasks and cost"),
        ("bench-model", ".models.benchmark", "end-to-end generation with a reference model"),
    ):
        forwarded = sub.add_parser(name, help=text, add_help=False)
        forwarded.set_defaults(func=None, module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``futurefill`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.func is None:
        return _forward(args.module, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if getattr(args, "backend", "unset") is None:
        args.backend = ["numpy"]
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
