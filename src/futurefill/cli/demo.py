"""Generation on NumPy: naive vs every FutureFill schedule (about a minute of processor time).

The main job: a same-run comparison of naive, epoched, continuous, deadline and reuse
generation on NumPy float64 (one depthwise layer with feedback), then naive vs continuous
greedy generation from a small random STU and a Hyena language model. At the default sizes it
takes about a minute of processor time (more wall time on a busy machine); at the end it
prints the wall and processor time it took.
"""

from __future__ import annotations

import argparse
from time import perf_counter, process_time

from ..measure.bench import bench_configuration
from ..measure.bench_model import demo_models
from ..plan import MAX_POSITIONS, SCHEDULES
from ._args import add_options, check_positions, check_streams, count, positions
from ._table import console, print_table
from .bench import print_results

__all__ = ["add_arguments", "run"]


_prompt = count(0, MAX_POSITIONS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``futurefill demo`` to ``parser``."""
    add_options(
        parser,
        [
            ("--length", positions, 16384, "tokens to generate"),
            ("--channels", count(1), 64, "depthwise channels D"),
            ("--model-prompt", _prompt, 1024, "prompt length of the reference models, 0: none"),
            ("--model-tokens", positions, 8192, "tokens the reference models generate"),
        ],
    )


def run(args: argparse.Namespace) -> int:
    """Run ``futurefill demo`` with parsed arguments; return the exit status."""
    check_positions(model_prompt=args.model_prompt, model_tokens=args.model_tokens)
    check_streams(args.length, args.channels, streams=len(SCHEDULES))
    wall, cpu = perf_counter(), process_time()
    console().print(
        f"[bold]futurefill demo[/]: one depthwise layer, D={args.channels} channels, "
        f"L={args.length} tokens generated with feedback u(t+1) = tanh(y(t)), NumPy float64"
    )
    results = bench_configuration(
        length=args.length, channels=args.channels, backend="numpy", repeats=2
    )
    print_results(results, "naive vs FutureFill schedules (same run)")
    rows = [
        (
            r.model,
            r.schedule,
            f"{r.tokens_per_second:.0f}",
            f"{r.speedup:.1f}",
            "yes" if r.identical else "NO",
        )
        for r in demo_models(prompt_len=args.model_prompt, new_tokens=args.model_tokens)
    ]
    print_table(
        f"reference models (random weights, NumPy float64): prompt {args.model_prompt}, "
        f"{args.model_tokens} new tokens, greedy",
        ("model", "schedule", "tokens/s", "speedup", "identical tokens"),
        rows,
        left=("model", "schedule"),
    )
    wall, cpu = perf_counter() - wall, process_time() - cpu
    console().print(f"futurefill demo took {wall:.1f} s ({cpu:.1f} s of processor time)")
    return 0
