"""End-to-end generation with a reference model: naive vs FutureFill.

Greedy generation from a random convolutional language model, every schedule in the same
process: tokens per second, speedup over the first schedule and its Amdahl ceiling (the first
schedule's time over the time of everything but the long convolution), whether the tokens
are identical, and where the time goes (prefill, long convolution, the rest; compilation
apart on JAX, which runs whole generations as compiled programs). Exit status 1 if a
schedule's tokens differ from the baseline's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from ..measure.bench_model import RunResult, compare_schedules
from ..memory import check_memory
from ..models import ConvLM, ModelConfig
from ..models.params import model_bytes
from ..plan import MAX_POSITIONS
from ._args import (
    add_choice,
    add_options,
    as_usage_error,
    check_positions,
    count,
    positions,
    positive_real,
    resolve_backend,
    schedule_names,
)
from ._table import print_table

__all__ = ["add_arguments", "run"]

_HEADERS = (
    "prompt",
    "new",
    "schedule",
    "total s",
    "tokens/s",
    "speedup",
    "ceiling",
    "prefill s",
    "long conv s",
    "other s",
    "compile s",
    "identical",
)


def _rows(results: Sequence[RunResult]) -> list[tuple[str, ...]]:
    base = results[0]
    rows: list[tuple[str, ...]] = []
    for r in results:
        same = (
            "baseline" if r is base else ("yes" if np.array_equal(r.tokens, base.tokens) else "NO")
        )
        rows.append(
            (
                str(r.prompt_len),
                str(r.new_tokens),
                r.schedule,
                f"{r.seconds:.2f}",
                f"{r.tokens_per_second:.1f}",
                f"{base.seconds / r.seconds:.2f}x",
                f"{base.seconds / r.rest:.2f}x",
                f"{r.prefill:.2f}",
                f"{r.long_conv:.2f}",
                f"{r.other:.2f}",
                f"{r.compile:.1f}",
                same,
            )
        )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``futurefill bench-model`` to ``parser``."""
    add_choice(parser, "--mixer", ("hyena", "stu"), "sequence mixer")
    add_choice(parser, "--dtype", ("float64", "float32"), "working precision")
    add_options(
        parser,
        [
            ("--layers", count(1), 4, "residual blocks"),
            ("--dim", count(1), 256, "model width D"),
            ("--mlp-ratio", positive_real, 4.0, "MLP hidden width as a multiple of --dim"),
            ("--vocab", count(1), 256, "vocabulary size"),
            ("--stu-k", count(1), 24, "spectral filters of the stu mixer"),
            ("--tokens", positions, 16384, "new tokens per run"),
            ("--batch", count(1), 1, "sequences generated together"),
            ("--seed", count(0), 0, "seed of the weights and the prompts"),
            ("--repeats", count(1), 3, "runs of each compiled program, best kept (JAX)"),
        ],
    )
    parser.add_argument(
        "--prompt",
        type=count(0, MAX_POSITIONS),
        nargs="+",
        default=[0, 4096],
        help="prompt lengths, one run each, 0 for none (default: 0 4096)",
    )
    parser.add_argument(
        "--schedules",
        type=schedule_names,
        default=("naive", "continuous"),
        metavar="S1,S2,...",
        help="comma-separated schedules, the baseline first (default: naive,continuous)",
    )
    parser.add_argument("--backend", help="backend (default: $FUTUREFILL_BACKEND, else numpy)")


def run(args: argparse.Namespace) -> int:
    """Run ``futurefill bench-model``; 0 when every schedule produced the baseline's tokens."""
    executor = resolve_backend(args.backend, args.dtype)
    check_positions(prompt=max(args.prompt), tokens=args.tokens)
    with as_usage_error():
        cfg = ModelConfig(
            mixer=args.mixer,
            vocab_size=args.vocab,
            dim=args.dim,
            layers=args.layers,
            max_len=max(max(args.prompt) + args.tokens, args.stu_k),
            mlp_ratio=args.mlp_ratio,
            stu_k=args.stu_k,
            seed=args.seed,
            dtype=args.dtype,
        )
        check_memory(
            f"a model of --layers {args.layers} x --dim {args.dim} over "
            f"{cfg.max_len} positions (--prompt + --tokens)",
            model_bytes(cfg),
        )
    start = time.perf_counter()
    model = ConvLM(cfg)
    model.host_filters()
    print(f"{model}, batch {args.batch}, backend {executor.name}")
    print(f"model built in {time.perf_counter() - start:.1f} s")
    ok = True
    for prompt_len in args.prompt:
        results = compare_schedules(
            model,
            prompt_len,
            args.tokens,
            args.schedules,
            batch=args.batch,
            backend=executor,
            seed=args.seed,
            repeats=args.repeats,
        )
        ok &= all(np.array_equal(r.tokens, results[0].tokens) for r in results)
        print_table(f"prompt {prompt_len}, {args.tokens} new tokens", _HEADERS, _rows(results))
        size = model.decode_state_size(
            prompt_len, args.tokens, schedule=args.schedules[-1], batch=args.batch
        )
        print(size)
    return 0 if ok else 1
