"""``futurefill bench-serve`` and :mod:`futurefill.measure.bench_serve` on tiny sizes.

The timings themselves are not checked (wall-clock on a shared machine); what is checked is
what the rows are made of: the trace, the tokens of each way of serving against
``ConvLM.generate``, and the summaries against their definitions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from futurefill.cli import main
from futurefill.measure.bench_serve import TraceSpec, lockstep, summarize, synthetic_trace
from futurefill.models import ConvLM, Request, RequestResult

TINY = ["--layers", "1", "--dim", "8", "--vocab", "16", "--capacity", "2", "--requests", "5"]
TINY += ["--prompt", "0", "9", "--new", "1", "6", "--rate", "50"]


def cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_bench_serve_json_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["bench-serve", *TINY, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["pool", "pool naive", "one by one", "lock-step"]
    assert [r["identical"] for r in rows] == ["-", "yes", "yes", "padded"]
    assert len({r["tokens"] for r in rows}) == 1 and {r["requests"] for r in rows} == {5}
    for r in rows:
        assert r["tokens_per_second"] == pytest.approx(r["tokens"] / r["seconds"])
        assert 0 <= r["ttft_p50"] <= r["ttft_p99"] and 0 <= r["token_p50"] <= r["token_p99"]


def test_prefill_chunk_adds_a_row_with_the_pools_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["bench-serve", *TINY, "--prefill-chunk", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows][:3] == ["pool", "pool chunks 3", "pool naive"]
    assert rows[1]["identical"] == "yes" and rows[1]["tokens"] == rows[0]["tokens"]
    assert cli(["bench-serve", *TINY, "--prefill-chunk", "0"]) == 2


def test_bench_serve_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--quick", *TINY, "--schedule", "reuse:radix=4", "--clock", "cpu"]
    assert cli(["bench-serve", *argv]) == 0
    out = capsys.readouterr().out
    assert "2 slots, cpu clock" in out
    assert "5 requests at 50/s, prompts 0-9, new tokens 1-6" in out
    for name in ("pool naive", "one by one", "lock-step", "pool speedup"):
        assert name in out


def test_warm_up_serves_the_trace_once_more_before_timing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from futurefill.cli import bench_serve

    calls = []
    real = bench_serve.run_all

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(bench_serve, "run_all", counted)
    assert cli(["bench-serve", *TINY, "--warm-up"]) == 0
    assert len(calls) == 2
    assert "warm-up: the trace served once every way, untimed, in" in capsys.readouterr().out


@pytest.fixture
def no_long_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("long work started before the arguments were checked")

    for target in ("run_all", "ConvLM", "synthetic_trace"):
        monkeypatch.setattr(f"futurefill.cli.bench_serve.{target}", refuse)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--prompt", "9", "3"], "--prompt LO HI needs LO <= HI"),
        (["--new", "0", "3"], "--new"),
        (["--new", "4"], "--new"),
        (["--rate", "0"], "--rate"),
        (["--requests", "0"], "--requests"),
        (["--capacity", "0"], "--capacity"),
        (["--schedule", "naive,continuous"], "--schedule takes one schedule"),
        (["--schedule", "fast"], "fast"),
        (["--backend", "nope"], "nope"),
        (["--dim", "0"], "--dim"),
        (["--clock", "gpu"], "--clock"),
    ],
)
def test_bad_arguments_are_one_line(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str], no_long_work: None
) -> None:
    assert cli(["bench-serve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("futurefill bench-serve: error: ") and err.count("\n") == 1
    assert fragment in err


# ---------------------------------------------------------------------- the library
def test_synthetic_trace_is_seeded_and_in_range() -> None:
    spec = TraceSpec(requests=40, rate=3.0, prompt=(0, 7), new=(2, 5), seed=3)
    a, b = synthetic_trace(spec, 16), synthetic_trace(spec, 16)
    assert [r.arrival for r in a] == [r.arrival for r in b]
    assert all(np.array_equal(x.prompt, y.prompt) for x, y in zip(a, b, strict=True))
    arrivals = np.array([r.arrival for r in a])
    assert arrivals[0] == 0 and np.all(np.diff(arrivals) >= 0)
    assert {r.prompt_len for r in a} <= set(range(8)) and 0 in {r.prompt_len for r in a}
    assert {r.max_new_tokens for r in a} <= {2, 3, 4, 5}
    assert all(r.prompt.size == 0 or r.prompt.max() < 16 for r in a)
    other = synthetic_trace(TraceSpec(requests=40, rate=3.0, prompt=(0, 7), new=(2, 5)), 16)
    assert [r.arrival for r in other] != [r.arrival for r in a]
    with pytest.raises(ValueError, match="lo <= hi"):
        TraceSpec(prompt=(5, 2))


def test_lockstep_batches_pad_prompts_on_the_left() -> None:
    """One by one, each request's tokens are generate's; in a padded batch, each row's are
    generate's of its prompt left-padded with the start token to the batch's longest."""
    model = ConvLM(mixer="hyena", dim=8, layers=2, max_len=64, vocab_size=16, seed=2)
    rng = np.random.default_rng(0)
    requests = [Request(rng.integers(0, 16, p), n) for p, n in ((5, 4), (2, 7), (9, 3), (0, 5))]
    alone = lockstep(model, requests, batch=1, backend="numpy")
    for r, res in zip(requests, alone, strict=True):
        prompt = r.prompt[None, :] if r.prompt_len else None
        np.testing.assert_array_equal(res.tokens, model.generate(prompt, r.max_new_tokens)[0])
    batched = lockstep(model, requests, batch=4, backend="numpy")
    for r, res in zip(requests, batched, strict=True):
        padded = np.concatenate([np.full(9 - r.prompt_len, model.config.bos), r.prompt])
        want = model.generate(padded, 7)[0, : r.max_new_tokens]
        np.testing.assert_array_equal(res.tokens, want)
        assert len(res.token_times) == r.max_new_tokens


def test_summary_follows_its_definitions() -> None:
    def result(arrival: float, times: list[float]) -> RequestResult:
        return RequestResult(
            request=Request([1], len(times)),
            tokens=np.zeros(len(times), np.int64),
            arrival=arrival,
            admitted=arrival,
            finish=times[-1],
            token_times=np.asarray(times),
        )

    s = summarize("x", [result(1.0, [2.0, 2.5, 4.0]), result(3.0, [3.5]), result(2.0, [6.5, 7.0])])
    assert (s.requests, s.tokens, s.seconds) == (3, 6, 6.0)  # 1.0 .. 7.0
    assert s.tokens_per_second == 1.0 and s.requests_per_second == 0.5
    assert s.ttft_p50 == 1.0  # ttfts 1.0, 0.5, 4.5
    assert s.token_p50 == 0.5 and s.token_max == 1.5  # gaps 0.5, 1.5, 0.5
    assert s.ttft_p99 == pytest.approx(np.percentile([1.0, 0.5, 4.5], 99))
