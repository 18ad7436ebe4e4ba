"""End-to-end generation benchmark of the reference models: naive cache vs FutureFill.

Run ``python -m futurefill.models.benchmark --help`` (the CLI exposes it as
``futurefill bench-model``). Every schedule generates greedily from the same random model and
prompt in the same process; the table reports tokens per second, the speedup over the first
schedule (naive), whether the tokens are identical, and where the decode time goes (the long
convolution, i.e. ``emit`` + ``advance``, versus everything else: projections, MLPs, norms,
head, Python). Timings are wall-clock on a possibly shared machine: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._backend import get_backend
from .config import ModelConfig
from .decode import generate
from .lm import ConvLM

__all__ = ["RunResult", "compare_schedules", "demo_models", "main"]


@dataclass(frozen=True)
class RunResult:
    """One timed generation.

    Attributes
    ----------
    schedule : str
    prompt_len, new_tokens : int
    seconds : float
        Wall-clock time of the whole generation (prefill included).
    prefill, decode, long_conv : float
        Seconds in the prompt pass, in the token-by-token loop, and of the latter in the long
        convolution.
    tokens : ndarray, shape (B, new_tokens)
    """

    schedule: str
    prompt_len: int
    new_tokens: int
    seconds: float
    prefill: float
    decode: float
    long_conv: float
    tokens: np.ndarray

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second (all sequences of the batch)."""
        return self.tokens.size / self.seconds

    @property
    def other(self) -> float:
        """Decode seconds outside the long convolution."""
        return self.decode - self.long_conv


def compare_schedules(
    model: ConvLM,
    prompt_len: int,
    new_tokens: int,
    schedules: Sequence[str] = ("naive", "continuous"),
    *,
    batch: int = 1,
    backend: str | None = None,
    seed: int = 0,
) -> list[RunResult]:
    """Generate greedily with each schedule from the same random prompt; time each run.

    Parameters
    ----------
    model : ConvLM
    prompt_len : int
        Prompt length (0: start from the start token, no prefill).
    new_tokens : int
        Tokens to generate.
    schedules : sequence of str
        Schedules to run, the baseline first.
    batch : int
        Sequences generated together.
    backend : str, optional
        Backend (the one in force by default).
    seed : int
        Seed of the prompt.
    """
    rng = np.random.default_rng(seed)
    prompt = (
        rng.integers(0, model.config.vocab_size, size=(batch, prompt_len)) if prompt_len else None
    )
    executor = get_backend(backend)
    results = []
    for schedule in schedules:
        executor.synchronize()
        start = time.perf_counter()
        tokens, _, decoder = generate(
            model,
            prompt,
            new_tokens,
            schedule=schedule,
            backend=executor,
            batch=batch,
            timed=True,
        )
        executor.synchronize()
        seconds = time.perf_counter() - start
        t = decoder.timings
        results.append(
            RunResult(
                schedule=schedule,
                prompt_len=prompt_len,
                new_tokens=new_tokens,
                seconds=seconds,
                prefill=t["prefill"],
                decode=t["decode"],
                long_conv=t["long_conv"],
                tokens=tokens,
            )
        )
    return results


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


def _print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print(title)
        print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
        for r in rows:
            print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
        return
    table = Table(title=title)
    for h in headers:
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(*r)
    Console(width=max(Console().width, 120)).print(table)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="futurefill bench-model",
        description="End-to-end greedy generation from a random conv LM: naive vs FutureFill.",
    )
    p.add_argument("--mixer", choices=("hyena", "stu"), default="hyena")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--mlp-ratio", type=float, default=4.0)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--tokens", type=int, default=16384, help="new tokens per run")
    p.add_argument(
        "--prompt",
        type=int,
        nargs="+",
        default=[0, 4096],
        help="prompt lengths, one run each (0: no prompt)",
    )
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument(
        "--schedules", default="naive,continuous", help="comma-separated, baseline first"
    )
    p.add_argument("--backend", default="numpy")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 0 when every schedule produced the baseline's tokens."""
    args = _parser().parse_args(argv)
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
        _print_table(f"prompt {prompt_len}, {args.tokens} new tokens", _HEADERS, _rows(results))
        print(model.decode_state_size(prompt_len, args.tokens, schedules[-1], batch=args.batch))
    return 0 if ok else 1


def demo_models(
    *, prompt_len: int = 8192, new_tokens: int = 256, backend: str | None = None
) -> list[tuple[str, str, float, float, bool]]:
    """Naive vs continuous generation from a small random STU and a Hyena model (seconds).

    Returns
    -------
    list of tuples
        ``(model, schedule, tokens per second, speedup over naive, identical tokens)``.
    """
    rows = []
    for mixer in ("stu", "hyena"):
        model = ConvLM(
            mixer=mixer,
            dim=64,
            layers=2,
            vocab_size=256,
            max_len=prompt_len + new_tokens,
            stu_k=16,
            seed=1,
        )
        results = compare_schedules(model, prompt_len, new_tokens, backend=backend)
        base = results[0]
        for r in results:
            rows.append(
                (
                    f"{mixer} (2x64, prompt {prompt_len})",
                    r.schedule,
                    r.tokens_per_second,
                    base.seconds / r.seconds,
                    bool(np.array_equal(r.tokens, base.tokens)),
                )
            )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
