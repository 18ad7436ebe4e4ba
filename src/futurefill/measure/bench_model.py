"""End-to-end generation benchmark of the reference models: naive cache vs FutureFill.

Every schedule generates greedily from the same model and prompt in the same process;
:class:`RunResult` holds where the time went: the prompt pass, and of the token-by-token loop
the long convolution (``emit`` + ``advance``) versus everything else (projections, MLPs,
norms, head, Python). Timings are wall-clock on a possibly shared machine: compare ratios from
one run. ``futurefill bench-model`` and ``futurefill demo`` print them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._registry import get_backend
from ..executor import Executor
from ..models import ConvLM, GenerationOptions, generate

__all__ = ["DemoRow", "RunResult", "compare_schedules", "demo_models"]


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
    compile : float
        Seconds spent compiling (a compiled backend), reported apart: not in ``seconds``.
    rest : float
        Seconds of the same generation without its long convolution: what no schedule can
        save. ``baseline.seconds / rest`` is the Amdahl ceiling of any speedup.
    """

    schedule: str
    prompt_len: int
    new_tokens: int
    seconds: float
    prefill: float
    decode: float
    long_conv: float
    tokens: np.ndarray
    compile: float = 0.0
    rest: float = float("nan")

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
    backend: str | Executor | None = None,
    seed: int = 0,
    repeats: int = 3,
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
    backend : str or Executor, optional
        Backend (the one in force by default).
    seed : int
        Seed of the prompt.
    repeats : int
        On a backend that compiles whole generations: runs of each compiled program, the
        best one kept (compilation is timed apart; every run is warm).

    Returns
    -------
    list of RunResult
        One per schedule, in order.
    """
    rng = np.random.default_rng(seed)
    prompt = (
        rng.integers(0, model.config.vocab_size, size=(batch, prompt_len)) if prompt_len else None
    )
    executor = get_backend(backend)
    compiled = _compiled_runs(model, prompt, new_tokens, schedules, batch, executor, repeats)
    if compiled is not None:
        return compiled
    results = []
    for schedule in schedules:
        options = GenerationOptions(schedule=schedule, backend=executor, batch=batch)
        executor.synchronize()
        start = time.perf_counter()
        run = generate(model, prompt, new_tokens, options, timed=True)
        executor.synchronize()
        seconds = time.perf_counter() - start
        assert run.decoder is not None  # timed generations run the Python decoder
        t = run.decoder.timings
        results.append(
            RunResult(
                schedule=schedule,
                prompt_len=prompt_len,
                new_tokens=new_tokens,
                seconds=seconds,
                prefill=t["prefill"],
                decode=t["decode"],
                long_conv=t["long_conv"],
                tokens=run.tokens,
                rest=seconds - t["long_conv"],
            )
        )
    return results


def _compiled_runs(
    model: ConvLM,
    prompt: np.ndarray | None,
    new_tokens: int,
    schedules: Sequence[str],
    batch: int,
    executor: Executor,
    repeats: int,
) -> list[RunResult] | None:
    """The runs of a backend that compiles whole generations: compile time apart, and the
    model without its long convolution timed once (same programs, identity convolution).
    ``None`` for a backend that does not (its ``generate_greedy`` returns ``None``)."""
    generate_greedy = executor.generate_greedy
    warm = {"batch": batch, "repeats": repeats}  # the best run of each compiled program
    rest_run = generate_greedy(model, prompt, new_tokens, long_conv=False, **warm)
    if rest_run is None:
        return None
    rest = rest_run.prefill_seconds + rest_run.decode_seconds
    results = []
    for schedule in schedules:
        run = generate_greedy(model, prompt, new_tokens, schedule=schedule, **warm)
        seconds = run.prefill_seconds + run.decode_seconds
        results.append(
            RunResult(
                schedule=schedule,
                prompt_len=0 if prompt is None else prompt.shape[1],
                new_tokens=new_tokens,
                seconds=seconds,
                prefill=run.prefill_seconds,
                decode=run.decode_seconds,
                long_conv=max(seconds - rest, 0.0),
                tokens=run.tokens,
                compile=run.compile_seconds,
                rest=rest,
            )
        )
    return results


@dataclass(frozen=True)
class DemoRow:
    """One line of :func:`demo_models`."""

    model: str
    schedule: str
    tokens_per_second: float
    speedup: float
    identical: bool


def demo_models(
    *, prompt_len: int = 8192, new_tokens: int = 256, backend: str | Executor | None = None
) -> list[DemoRow]:
    """Naive vs continuous generation from a small random STU and a Hyena model.

    Parameters
    ----------
    prompt_len : int
        Prompt length (0: no prompt).
    new_tokens : int
        Tokens generated (at least 1).
    backend : str or Executor, optional
        Backend (the one in force by default).

    Returns
    -------
    list of DemoRow
        Per model and schedule: tokens per second, speedup over naive and whether the tokens
        equal naive's.
    """
    rows = []
    for mixer in ("stu", "hyena"):
        stu_k = 16  # the STU basis needs max_len >= stu_k, even for a short generation
        model = ConvLM(
            mixer=mixer,
            dim=64,
            layers=2,
            vocab_size=256,
            max_len=max(prompt_len + new_tokens, stu_k),
            stu_k=stu_k,
            seed=1,
        )
        results = compare_schedules(model, prompt_len, new_tokens, backend=backend)
        base = results[0]
        rows += [
            DemoRow(
                model=f"{mixer} (2x64, prompt {prompt_len})",
                schedule=r.schedule,
                tokens_per_second=r.tokens_per_second,
                speedup=base.seconds / r.seconds,
                identical=bool(np.array_equal(r.tokens, base.tokens)),
            )
            for r in results
        ]
    return rows
