"""Serving benchmark: continuous batching over a stream pool vs one-by-one and lock-step.

Replays a seeded synthetic trace of greedy requests (Poisson arrivals at --rate per second, prompt
and new-token counts uniform in their ranges) on a random Hyena model, four ways: the pool server
(futurefill.models.serve, --capacity slots, --schedule), the same server with the naive schedule,
every request alone one after another (a batch-1 Decoder, as ConvLM.generate), and lock-step
batches of --capacity requests through the batched Decoder, padded to the longest prompt and token
count (padded work counts as time). Prints requests and tokens per second, the pool's throughput
over each row's, time to first token and per-token latency (median, 99th percentile and longest),
and whether the tokens equal the pool's (--prefill-chunk N adds a row: the pool with prompts run N
tokens per step, chunked prefill). Time waiting for the next arrival is skipped (the replay clock);
--clock cpu measures this process's CPU time instead of the wall clock. The defaults are the
full-size run (Hyena 4 x 256, float32, 16 slots, 32 requests, prompts 0-4096, 64-4096 new tokens:
long); --quick shrinks the trace (16 requests, prompts 0-256, 16-128 new tokens, 40 per second) to
under a minute. --warm-up first serves the trace once every way, untimed (on JAX, compilation:
otherwise the first row pays for the programs the others reuse); its time is printed apart. Exit
status 1 if the one-by-one tokens differ from the pool's.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..measure.bench_serve import ServeSummary, TraceSpec, run_all, synthetic_trace
from ..models import ConvLM, ModelConfig
from ._args import (
    add_choice,
    add_clock,
    add_options,
    as_usage_error,
    clock_timer,
    count,
    positive_real,
    resolve_backend,
    schedule_names,
)
from ._table import print_or_json, print_table

__all__ = ["add_arguments", "run"]

#: The trace of the full-size run, and of --quick.
_FULL = TraceSpec()
_QUICK = TraceSpec(requests=16, rate=40.0, prompt=(0, 256), new=(16, 128))
#: The trace options: type of a value, number of values, help.
_TRACE: dict[str, tuple[Callable[[str], Any], int | None, str]] = {
    "requests": (count(1), None, "requests in the trace"),
    "rate": (positive_real, None, "mean arrivals per second"),
    "prompt": (count(0), 2, "prompt lengths LO HI, drawn uniformly (0: no prompt)"),
    "new": (count(1), 2, "new tokens per request LO HI, drawn uniformly"),
}

_HEADERS = (
    "served by",
    "requests/s",
    "tokens/s",
    "pool speedup",
    "TTFT p50 s",
    "TTFT p99 s",
    "token p50 ms",
    "token p99 ms",
    "token max ms",
    "total s",
    "same tokens",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``futurefill bench-serve`` to ``parser``."""
    parser.add_argument(
        "--quick", action="store_true", help="a small trace that runs in under a minute"
    )
    for name, (kind, nargs, text) in _TRACE.items():
        full, quick = (" ".join(map(str, np.atleast_1d(getattr(t, name)))) for t in (_FULL, _QUICK))
        parser.add_argument(
            f"--{name}",
            type=kind,
            nargs=nargs,
            metavar=("LO", "HI") if nargs else None,
            help=f"{text} (default: {full}; --quick: {quick})",
        )
    add_choice(parser, "--dtype", ("float32", "float64"), "working precision")
    add_clock(parser)
    add_options(
        parser,
        [
            ("--capacity", count(1), 16, "slots of the pool, and the lock-step batch size"),
            ("--layers", count(1), 4, "residual blocks"),
            ("--dim", count(1), 256, "model width D"),
            ("--mlp-ratio", positive_real, 4.0, "MLP hidden width as a multiple of --dim"),
            ("--vocab", count(1), 256, "vocabulary size"),
            ("--seed", count(0), 0, "seed of the weights and of the trace"),
        ],
    )
    parser.add_argument(
        "--schedule",
        type=schedule_names,
        default=("continuous",),
        metavar="S",
        help="schedule of the pool, e.g. reuse:radix=8 (default: continuous)",
    )
    parser.add_argument("--backend", help="backend (default: $FUTUREFILL_BACKEND, else numpy)")
    parser.add_argument(
        "--prefill-chunk",
        type=count(1),
        metavar="N",
        help="also serve with prompts run N tokens per step, between decoding steps (a row "
        "'pool chunks N')",
    )
    parser.add_argument(
        "--warm-up",
        action="store_true",
        help="serve the trace once every way before timing (compilation, caches); its time "
        "is printed apart",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def _trace_spec(args: argparse.Namespace) -> TraceSpec:
    """The trace of the options: given values, else the --quick or full-size defaults."""
    given = {name: getattr(args, name) for name in _TRACE if getattr(args, name) is not None}
    for name in ("prompt", "new"):
        if name in given:
            lo, hi = given[name]
            if lo > hi:
                raise ValueError(f"--{name} LO HI needs LO <= HI, got {lo} {hi}")
            given[name] = (lo, hi)
    return dataclasses.replace(_QUICK if args.quick else _FULL, seed=args.seed, **given)


def _rows(results: Sequence[ServeSummary]) -> list[tuple[str, ...]]:
    pool = results[0]
    return [
        (
            r.name,
            f"{r.requests_per_second:.3f}",
            f"{r.tokens_per_second:.1f}",
            f"{pool.tokens_per_second / r.tokens_per_second:.2f}x",
            f"{r.ttft_p50:.2f}",
            f"{r.ttft_p99:.2f}",
            f"{1e3 * r.token_p50:.1f}",
            f"{1e3 * r.token_p99:.1f}",
            f"{1e3 * r.token_max:.1f}",
            f"{r.seconds:.1f}",
            r.identical,
        )
        for r in results
    ]


def run(args: argparse.Namespace) -> int:
    """Run ``futurefill bench-serve``; 0 when the one-by-one tokens equal the pool's."""
    executor = resolve_backend(args.backend, args.dtype)
    with as_usage_error():
        spec = _trace_spec(args)
        cfg = ModelConfig(
            mixer="hyena",
            vocab_size=args.vocab,
            dim=args.dim,
            layers=args.layers,
            max_len=spec.max_len,
            mlp_ratio=args.mlp_ratio,
            seed=args.seed,
            dtype=args.dtype,
        )
        if len(args.schedule) != 1:
            raise ValueError("--schedule takes one schedule (the naive row always runs)")
    start = time.perf_counter()
    model = ConvLM(cfg)
    requests = synthetic_trace(spec, cfg.vocab_size)
    tokens = sum(r.new_tokens for r in requests)
    if not args.json:
        print(f"{model}, backend {executor.name}, {args.capacity} slots, {args.clock} clock")
        print(
            f"trace: {spec.requests} requests at {spec.rate:g}/s, prompts {spec.prompt[0]}-"
            f"{spec.prompt[1]}, new tokens {spec.new[0]}-{spec.new[1]} ({tokens} in all), "
            f"seed {spec.seed}; model built in {time.perf_counter() - start:.1f} s"
        )

    def serve_all() -> list[ServeSummary]:
        return run_all(
            model,
            requests,
            capacity=args.capacity,
            schedule=args.schedule[0],
            backend=executor,
            timer=clock_timer(args),
            prefill_chunk=args.prefill_chunk,
        )

    if args.warm_up:
        begin = time.perf_counter()
        serve_all()
        if not args.json:
            print(f"warm-up: the trace served once every way, untimed, in "
                  f"{time.perf_counter() - begin:.1f} s")  # fmt: skip
    results = serve_all()

    def show(rows: Sequence[ServeSummary]) -> None:
        print_table(
            "serving the trace",
            _HEADERS,
            _rows(rows),
            left=("served by", "same tokens"),
            caption="pool speedup: the pool's tokens/s over the row's; token: the gap "
            "between a request's consecutive tokens",
        )

    print_or_json(results, args.json, show)
    return 0 if results[2].identical == "yes" else 1
