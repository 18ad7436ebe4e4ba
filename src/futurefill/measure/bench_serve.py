"""Serving benchmark: a seeded arrival trace replayed by the pool server and by two baselines.

The same requests (greedy, arriving at seeded Poisson times, prompts and new-token counts drawn
uniformly from ranges) are served four ways, each on a :class:`~futurefill.models.ReplayClock`
(idle time until the next arrival is skipped, all other time is measured: wall clock, or
this process's CPU time):

* ``pool`` -- :func:`futurefill.models.serve`: continuous batching over a
  :class:`futurefill.StreamPool`, requests admitted as slots free up;
* ``pool naive`` -- the same server with the naive schedule (every input kept, each output a
  full dot product);
* ``one by one`` -- each request generated alone (a :class:`~futurefill.models.Decoder` of
  batch 1: what ``ConvLM.generate`` runs) after the previous one, in arrival order;
* ``lock-step`` -- static batches: whenever the previous batch is done, the requests that have
  arrived (up to ``capacity``) go through one batched Decoder, prompts left-padded with the
  start token to the longest and every row run to the longest ``max_new_tokens``; the padded
  work counts as time spent, and the padded rows' tokens are not those of the requests alone.

:class:`ServeSummary` holds a row: requests and tokens per second over the whole replay (first
arrival to last token), time-to-first-token and per-token latency (the gaps between a
request's consecutive tokens) percentiles.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._registry import get_backend
from ..executor import Executor
from ..models import ConvLM, Decoder, Request, RequestResult, serve
from ..models.decode import online_steps
from ..models.requests import ReplayClock

__all__ = ["ServeSummary", "TraceSpec", "lockstep", "run_all", "summarize", "synthetic_trace"]


@dataclass(frozen=True)
class TraceSpec:
    """A synthetic arrival trace.

    Attributes
    ----------
    requests : int
        Number of requests.
    rate : float
        Mean arrivals per second (exponential gaps; the first request arrives at 0).
    prompt : (int, int)
        Prompt lengths, drawn uniformly from ``lo .. hi`` (0: no prompt).
    new : (int, int)
        New tokens per request, drawn uniformly from ``lo .. hi``.
    seed : int
        Seed of the draws (arrivals, lengths and prompt tokens).
    """

    requests: int = 32
    rate: float = 1.0
    prompt: tuple[int, int] = (0, 4096)
    new: tuple[int, int] = (64, 4096)
    seed: int = 0

    def __post_init__(self) -> None:
        for name, (lo, hi) in (("prompt", self.prompt), ("new", self.new)):
            if not 0 <= lo <= hi or (name == "new" and lo < 1):
                raise ValueError(f"{name} lengths must satisfy {int(name == 'new')} <= lo <= hi")
        if self.requests < 1 or not self.rate > 0:
            raise ValueError("a trace needs requests >= 1 and rate > 0")

    @property
    def max_len(self) -> int:
        """The ``max_len`` a model needs for the longest request of this trace."""
        return self.prompt[1] + self.new[1]


def synthetic_trace(spec: TraceSpec, vocab_size: int) -> list[Request]:
    """The requests of ``spec`` (greedy, no stop token), in arrival order."""
    rng = np.random.default_rng(spec.seed)
    n = spec.requests
    gaps = rng.exponential(1.0 / spec.rate, size=n)
    arrivals = np.concatenate([[0.0], np.cumsum(gaps[1:])])
    prompts = rng.integers(spec.prompt[0], spec.prompt[1] + 1, size=n)
    news = rng.integers(spec.new[0], spec.new[1] + 1, size=n)
    return [
        Request(rng.integers(0, vocab_size, int(p)), int(k), arrival=float(t))
        for t, p, k in zip(arrivals, prompts, news, strict=True)
    ]


def lockstep(
    model: ConvLM,
    requests: Sequence[Request],
    *,
    batch: int,
    schedule: Any = "continuous",
    backend: str | Executor | None = None,
    clock: ReplayClock | None = None,
) -> list[RequestResult]:
    """Serve ``requests`` (greedy) in static batches of at most ``batch`` through a batched
    :class:`~futurefill.models.Decoder`, padded to the longest prompt and token count of each
    batch; ``batch=1`` generates them one after another. Results in the order given, timed by
    ``clock`` (restarted; a wall-clock :class:`~futurefill.models.ReplayClock` by default)."""
    executor = get_backend(backend)
    requests = [r.within(model.config.max_len) for r in requests]
    order = sorted(range(len(requests)), key=lambda i: requests[i].arrival or 0.0)
    results: dict[int, RequestResult] = {}
    clock = ReplayClock() if clock is None else clock
    clock.restart()
    nxt = 0
    while nxt < len(order):
        clock.skip_to(requests[order[nxt]].arrival or 0.0)
        now = clock()
        take = [i for i in order[nxt : nxt + batch] if (requests[i].arrival or 0.0) <= now]
        nxt += len(take)
        chosen = [requests[i] for i in take]
        for i, result in zip(
            take, _run_batch(model, chosen, schedule, executor, clock), strict=True
        ):
            results[i] = result
    return [results[i] for i in range(len(requests))]


def _run_batch(
    model: ConvLM, batch: list[Request], schedule: Any, executor: Executor, clock: ReplayClock
) -> list[RequestResult]:
    """One padded batch, from now until its longest row is done."""
    bos = model.config.bos
    P = max(r.prompt_len for r in batch)
    N = max(r.new_tokens for r in batch)
    start = clock()
    decoder = Decoder(
        model,
        prompt_len=P,
        steps=online_steps(P, N),
        schedule=schedule,
        batch=len(batch),
        backend=executor,
    )
    if P:
        prompts = np.full((len(batch), P), bos, np.int64)
        for row, r in enumerate(batch):
            prompts[row, P - r.prompt_len :] = r.prompt
        logits = decoder.prefill(prompts)
    else:
        logits = decoder.step(np.full(len(batch), bos, np.int64))
    tokens, times = [], []
    for i in range(N):
        tok = np.argmax(executor.to_numpy(logits), axis=-1).astype(np.int64)
        tokens.append(tok)
        times.append(clock())
        if i + 1 < N:
            logits = decoder.step(tok)
    out, stamps = np.stack(tokens, axis=1), np.asarray(times)
    return [
        RequestResult(
            request=r,
            tokens=out[row, : r.new_tokens],
            arrival=r.arrival or 0.0,
            admitted=start,
            finish=float(stamps[r.new_tokens - 1]),
            token_times=stamps[: r.new_tokens],
        )
        for row, r in enumerate(batch)
    ]


@dataclass(frozen=True)
class ServeSummary:
    """One way of serving a trace, summarised (times in seconds).

    Attributes
    ----------
    name : str
        ``pool``, ``pool naive``, ``one by one`` or ``lock-step``.
    requests, tokens : int
        Requests served and tokens they generated (padding excluded).
    seconds : float
        From the first arrival to the last token.
    ttft_p50, ttft_p99 : float
        Time to first token (queueing and prefill included), median and 99th percentile.
    token_p50, token_p99, token_max : float
        Gap between consecutive tokens of a request, over all requests (``token_max``: the
        longest stall any request saw).
    identical : str
        ``"yes"``/``"NO"``: tokens equal those of the first row; ``"padded"`` for lock-step
        batches (their prompts were padded); ``"-"`` for the first row.
    """

    name: str
    requests: int
    tokens: int
    seconds: float
    ttft_p50: float
    ttft_p99: float
    token_p50: float
    token_p99: float
    token_max: float
    identical: str = "-"

    @property
    def requests_per_second(self) -> float:
        """Requests over the whole replay."""
        return self.requests / self.seconds

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens over the whole replay."""
        return self.tokens / self.seconds

    def as_dict(self) -> dict[str, Any]:
        """The fields and the rates, for JSON."""
        return {
            **dataclasses.asdict(self),
            "requests_per_second": self.requests_per_second,
            "tokens_per_second": self.tokens_per_second,
        }


def summarize(name: str, results: Sequence[RequestResult], identical: str = "-") -> ServeSummary:
    """The :class:`ServeSummary` of one replay."""
    ttft = np.asarray([r.time_to_first_token for r in results])
    gaps = np.concatenate([r.token_latencies for r in results])
    if gaps.size == 0:  # every request produced one token
        gaps = np.zeros(1)
    start = min(r.arrival for r in results)
    return ServeSummary(
        name=name,
        requests=len(results),
        tokens=sum(len(r.tokens) for r in results),
        seconds=max(r.finish for r in results) - start,
        ttft_p50=float(np.percentile(ttft, 50)),
        ttft_p99=float(np.percentile(ttft, 99)),
        token_p50=float(np.percentile(gaps, 50)),
        token_p99=float(np.percentile(gaps, 99)),
        token_max=float(gaps.max()),
        identical=identical,
    )


def _same(a: Sequence[RequestResult], b: Sequence[RequestResult]) -> str:
    equal = all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, b, strict=True))
    return "yes" if equal else "NO"


def run_all(
    model: ConvLM,
    requests: Sequence[Request],
    *,
    capacity: int = 16,
    schedule: Any = "continuous",
    backend: str | Executor | None = None,
    timer: Callable[[], float] = time.perf_counter,
    prefill_chunk: int | None = None,
) -> list[ServeSummary]:
    """Serve ``requests`` the four ways of the module docstring; one summary each (the pool
    with ``schedule`` first), and with ``prefill_chunk`` a fifth: the pool with prompts run
    that many tokens per step (second). ``timer``: the seconds measured (see
    :class:`~futurefill.models.ReplayClock`)."""
    executor = get_backend(backend)
    clock = ReplayClock(timer)
    pool = serve(
        model, requests, capacity=capacity, schedule=schedule, backend=executor, clock=clock
    )
    chunked = []
    if prefill_chunk is not None:
        served = serve(
            model,
            requests,
            capacity=capacity,
            schedule=schedule,
            backend=executor,
            clock=clock,
            prefill_chunk=prefill_chunk,
        )
        chunked = [summarize(f"pool chunks {prefill_chunk}", served, _same(served, pool))]
    naive = serve(
        model, requests, capacity=capacity, schedule="naive", backend=executor, clock=clock
    )
    alone = lockstep(model, requests, batch=1, schedule=schedule, backend=executor, clock=clock)
    batched = lockstep(
        model, requests, batch=capacity, schedule=schedule, backend=executor, clock=clock
    )
    return [
        summarize("pool", pool),
        *chunked,
        summarize("pool naive", naive, _same(naive, pool)),
        summarize("one by one", alone, _same(alone, pool)),
        summarize("lock-step", batched, "padded"),
    ]
