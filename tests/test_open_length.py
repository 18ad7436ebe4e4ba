"""Open-ended streams (``OnlineConv(filters, None)``) and teacher forcing (``run``)."""

from __future__ import annotations

import numpy as np
import pytest

from futurefill import OnlineConv, open_length
from futurefill.executor import Executor
from futurefill.plan import SCHEDULES

from .conftest import decaying_filters, oracle

RTOL = 1e-12  # float64: the schedules are exact up to FFT rounding (~1e-15 here)


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> int:
    """First segments of 8 steps, so that short streams cross several segments."""
    monkeypatch.setattr(open_length, "FIRST_SEGMENT", 8)
    return 8


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def test_segments_double_up_to_the_taps() -> None:
    first = open_length.FIRST_SEGMENT
    assert open_length.segment_length(0, 10**6) == first
    assert open_length.segment_length(3, 10**6) == first
    assert open_length.segment_length(first, 10**6) == first
    assert open_length.segment_length(5 * first, 10**6) == 5 * first
    assert open_length.segment_length(100, 130) == 30
    assert open_length.segment_length(130, 130) == 0


# With a prompt on JAX only continuous in the quick run (each segment compiles its own
# kernels); the other schedules' prompted cases run in nox -s tests_deep.
@pytest.mark.parametrize(
    ("schedule", "prompt"),
    [
        pytest.param(s, p, marks=pytest.mark.slow_on("jax")) if p and s != "continuous" else (s, p)
        for p in (0, 5)
        for s in SCHEDULES
    ],
)
def test_open_ended_streams_are_exact(
    backend: Executor, rng, small_segments, schedule: str, prompt: int
) -> None:
    """Steps, emit/advance, run and rollout across segment ends, up to the last tap."""
    B, C, N = 2, 3, 70
    phi = decaying_filters(rng, C, N)
    conv = OnlineConv(phi, None, schedule=schedule, batch=B, backend=backend, dtype="float64")
    assert conv.length is None and conv.remaining == N
    ex = conv.backend
    u = rng.standard_normal((B, C, N))
    as_b = lambda x: ex.asarray(np.ascontiguousarray(x), dtype="float64")  # noqa: E731
    parts = []
    if prompt:
        parts.append(ex.to_numpy(conv.prefill(as_b(u[..., :prompt]))))
    assert conv.prompt == prompt and conv.remaining == N - prompt
    t = prompt
    for _ in range(11):  # into the second segment
        parts.append(ex.to_numpy(conv.step(as_b(u[..., t])))[..., None])
        t += 1
    y = [ex.to_numpy(conv.emit(as_b(u[:, :1, t]), slice(0, 1)))]
    y.append(ex.to_numpy(conv.emit(as_b(u[:, 1:, t]), slice(1, None))))
    conv.advance()
    parts.append(np.concatenate(y, axis=1)[..., None])
    t += 1
    parts.append(ex.to_numpy(conv.run(as_b(u[..., t : t + 20]))))
    t += 20
    assert conv.position == t - prompt
    ys = ex.to_numpy(conv.rollout(as_b(u[..., t]), _tanh(ex), N - t))  # to the last tap
    u[..., t + 1 :] = np.tanh(ys[..., :-1])
    parts.append(ys)
    got = np.concatenate(parts, axis=-1)
    assert got.shape == (B, C, N)
    assert _rel(got, oracle(u, phi)) <= RTOL
    assert conv.remaining == 0
    with pytest.raises(RuntimeError, match="taps are used up"):
        conv.step(as_b(u[..., 0]))


def test_a_one_token_prompt_crosses_segment_ends(backend: Executor, rng, small_segments) -> None:
    """A 1-token prompt puts the second segment's start at ``1 + 8 = 9`` positions: filling
    its 9 steps from the history takes an FFT of ``9 + 9 - 1 = 17`` points or more (32)."""
    B, C, N = 1, 2, 40
    phi = decaying_filters(rng, C, N)
    u = rng.standard_normal((B, C, N))
    conv = OnlineConv(phi, None, batch=B, backend=backend, dtype="float64")
    ex = conv.backend
    y = [ex.to_numpy(conv.prefill(ex.asarray(u[..., :1], dtype="float64")))]
    y.append(ex.to_numpy(conv.run(ex.asarray(u[..., 1:], dtype="float64"))))
    assert _rel(np.concatenate(y, axis=-1), oracle(u, phi)) <= RTOL


def _tanh(ex: Executor):
    return ex.xp.tanh


def test_the_first_prefill_decides_the_prompt(backend: Executor, rng, small_segments) -> None:
    B, C, N = 1, 2, 40
    phi = decaying_filters(rng, C, N)
    u = rng.standard_normal((B, C, N))
    conv = OnlineConv(phi, None, batch=B, backend=backend, dtype="float64")
    ex = conv.backend
    as_b = lambda x: ex.asarray(np.ascontiguousarray(x), dtype="float64")  # noqa: E731
    for prompt in (5, 13):  # another prompt length after reset()
        ys = [ex.to_numpy(conv.prefill(as_b(u[:, :1, :prompt]), slice(0, 1)))]
        with pytest.raises(ValueError, match="shape"):  # the first prefill fixed the length
            conv.prefill(as_b(u[:, 1:, : prompt + 1]), slice(1, 2))
        ys.append(ex.to_numpy(conv.prefill(as_b(u[:, 1:, :prompt]), slice(1, 2))))
        y = np.concatenate(ys, axis=1)
        y = np.concatenate([y, ex.to_numpy(conv.run(as_b(u[..., prompt:])))], axis=-1)
        assert conv.prompt == prompt and conv.position == N - prompt
        assert _rel(y, oracle(u, phi)) <= RTOL
        conv.reset()
        assert conv.prompt == 0 and conv.position == 0
    conv.step(as_b(u[..., 0]))
    with pytest.raises(RuntimeError, match="before the first step"):
        conv.prefill(as_b(u[..., :3]))
    whole = OnlineConv(phi, None, batch=B, backend=backend, dtype="float64")
    with pytest.raises(ValueError, match="leaves no step"):  # a prompt of all N taps
        whole.prefill(as_b(u[..., :N]))
    assert whole.prompt == 0 and whole.plan.prompt == 0


def test_open_ended_snapshots_resume_bit_identically(
    backend: Executor, rng, small_segments
) -> None:
    B, C, N, P = 1, 2, 60, 3
    phi = decaying_filters(rng, C, N)
    u = rng.standard_normal((B, C, N))
    conv = OnlineConv(phi, None, batch=B, backend=backend, dtype="float64")
    ex = conv.backend
    as_b = lambda x: ex.asarray(np.ascontiguousarray(x), dtype="float64")  # noqa: E731
    conv.prefill(as_b(u[..., :P]))
    conv.run(as_b(u[..., P:30]))  # third segment
    snapshot = conv.state_dict()
    assert snapshot["segment"] > P and snapshot["history"].shape == (B, C, snapshot["segment"])
    first = ex.to_numpy(conv.run(as_b(u[..., 30:])))
    fresh = OnlineConv(phi, None, batch=B, backend=backend, dtype="float64")
    for target in (conv, fresh):
        target.load_state_dict(snapshot)
        assert target.position == 30 - P and target.prompt == P
        np.testing.assert_array_equal(ex.to_numpy(target.run(as_b(u[..., 30:]))), first)

    edited = dict(snapshot, history=ex.asarray(ex.to_numpy(snapshot["history"]) + 1.0))
    fresh.reset()
    with pytest.raises(ValueError, match="digest"):
        fresh.load_state_dict(edited)
    with pytest.raises(ValueError, match="segment"):
        fresh.load_state_dict(dict(snapshot, segment=P - 1))
    assert fresh.position == 0 and fresh.plan.prompt == 0
    known = OnlineConv(phi, N - P, prompt=P, batch=B, backend=backend, dtype="float64")
    with pytest.raises(ValueError, match="unknown entries"):
        known.load_state_dict(snapshot)
    with pytest.raises(KeyError, match="lacks"):
        fresh.load_state_dict(known.state_dict())


def test_rollout_restores_the_stream_across_segments(
    backend: Executor, rng, small_segments
) -> None:
    """A feedback failing in a later segment leaves the stream where it was."""
    B, C, N = 1, 2, 40
    phi = decaying_filters(rng, C, N)
    conv = OnlineConv(phi, None, batch=B, backend=backend, dtype="float64")
    ex = conv.backend
    u0 = ex.asarray(rng.standard_normal((B, C)), dtype="float64")
    conv.step(u0)
    before = ex.to_numpy(conv.state_dict()["buffer"]), conv.plan
    calls = 0

    def failing(y):
        nonlocal calls
        calls += 1
        if calls > 20:
            raise FloatingPointError("stop")
        return y * 0.5

    if ex.name == "jax":  # traced once: no Python side effects to count
        pytest.skip("a traced feedback cannot fail at a given step")
    with pytest.raises(FloatingPointError):
        conv.rollout(u0, failing, 30)
    assert conv.position == 1 and conv.plan is before[1]
    np.testing.assert_array_equal(ex.to_numpy(conv.state_dict()["buffer"]), before[0])


def test_run_equals_steps_and_checks_its_input(backend: Executor, rng) -> None:
    B, C, P, L = 2, 3, 4, 30
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((B, C, P + L))
    ex = backend
    as_b = lambda x: ex.asarray(np.ascontiguousarray(x), dtype="float64")  # noqa: E731
    stepped = OnlineConv(phi, L, prompt=P, batch=B, backend=backend, dtype="float64")
    run = OnlineConv(phi, L, prompt=P, batch=B, backend=backend, dtype="float64")
    stepped.prefill(as_b(u[..., :P]))
    run.prefill(as_b(u[..., :P]))
    want = np.stack([ex.to_numpy(stepped.step(as_b(u[..., P + t]))) for t in range(L)], -1)
    for bad, error in (
        (u[..., P:P], ValueError),  # no step
        (np.concatenate([u, u], -1), ValueError),  # more than remain
        (u[:, :2, P:], ValueError),  # channels
    ):
        with pytest.raises(error):
            run.run(as_b(bad))
    with pytest.raises(TypeError, match="real numbers"):
        run.run(ex.asarray(u[..., P:] + 0j))
    assert run.position == 0
    got = np.concatenate([ex.to_numpy(run.run(as_b(u[..., P : P + 7]))),
                          ex.to_numpy(run.run(as_b(u[..., P + 7 :])))], -1)  # fmt: skip
    np.testing.assert_array_equal(got, want)
    assert _rel(got, oracle(u, phi)[..., P:]) <= RTOL


def test_runs_of_one_step_equal_the_oracle(backend: Executor, rng, small_segments) -> None:
    """``run`` one step at a time (the short-call path: no copy of the state, the output not
    stacked) across segment ends; each output stays what it was when returned."""
    B, C, N = 2, 3, 30
    phi = decaying_filters(rng, C, N)
    u = rng.standard_normal((B, C, N))
    ex = backend
    conv = OnlineConv(phi, None, batch=B, backend=backend, dtype="float64")
    outs = [conv.run(ex.asarray(np.ascontiguousarray(u[..., t : t + 1]), dtype="float64"))
            for t in range(N)]  # fmt: skip
    got = np.concatenate([ex.to_numpy(y) for y in outs], axis=-1)
    assert _rel(got, oracle(u, phi)) <= RTOL
