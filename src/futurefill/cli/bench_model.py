"""End-to-end generation with a reference model: naive vs FutureFill.

Greedy generation from a random convolutional language model, every schedule in the same
process: tokens per second, speedup over the first schedule, whether the tokens are
identical, and where the time goes (prefill, long convolution, the rest). Exit status 1 if a
schedule's tokens differ from the baseline's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from ..bench_model import RunResult, compare_schedules
from ..models import ConvLM, ModelConfig
from ._table import print_table

__all__ = ["add_arguments", "run"]

_HEADERS = (
    "prompt",
    "new",
    "schedule",
    "total s",
    "tokens/s",
    "speedup",
    "prefill s",
    "long conv s",
    "other s",
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
                f"{r.prefill:.2f}",
                f"{r.long_conv:.2f}",
                f"{r.other:.2f}",
                same,
            )
        )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``futurefill bench-model`` to ``parser``."""
    parser.add_argument("--mixer", choices=("hyena", "stu"), default="hyena")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--mlp-ratio", type=float, default=4.0)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=16384, help="new tokens per run")
    parser.add_argument(
        "--prompt",
        type=int,
        nargs="+",
        default=[0, 4096],
        help="prompt lengths, one run each (0: no prompt)",
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument(
        "--schedules", default="naive,continuous", help="comma-separated, baseline first"
    )
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Run ``futurefill bench-model``; 0 when every schedule produced the baseline's tokens."""
    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    cfg = ModelConfig(
        mixer=args.mixer,
        vocab_size=args.vocab,
        dim=args.dim,
        layers=args.layers,
        max_len=max(args.prompt) + args.tokens,
        mlp_ratio=args.mlp_ratio,
        seed=args.seed,
        dtype=args.dtype,
    )
    start = time.perf_counter()
    model = ConvLM(cfg)
    model.host_filters()
    print(f"{model}, batch {args.batch}, backend {args.backend}")
    print(f"model built in {time.perf_counter() - start:.1f} s")
    ok = True
    for prompt_len in args.prompt:
        results = compare_schedules(
            model,
            prompt_len,
            args.tokens,
            schedules,
            batch=args.batch,
            backend=args.backend,
            seed=args.seed,
        )
        ok &= all(np.array_equal(r.tokens, results[0].tokens) for r in results)
        print_table(f"prompt {prompt_len}, {args.tokens} new tokens", _HEADERS, _rows(results))
        size = model.decode_state_size(
            prompt_len, args.tokens, schedule=schedules[-1], batch=args.batch
        )
        print(size)
    return 0 if ok else 1
