"""A kernel failing midway through a call: the stream is put back exactly, or poisoned.

Failures are injected by :class:`Flaky`, which wraps any executor and makes one kernel raise
after doing its work, or lose its work and raise at its next call (as a failed piece of
deferred work is delivered a step later); the NumPy deadline schedule's real deferred pieces
are broken through ``scipy.fft``. After every failure the stream either goes on exactly or
refuses every call saying it is poisoned until ``reset()`` or ``load_state_dict()``. Exactness
is checked against ``numpy.convolve`` of the inputs given, relative 1e-12 in float64 (FFT
round trips, as in ``test_online.py``); "exactly as before" is the snapshot digest, which
covers the buffer bit for bit and the whole cursor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from futurefill import OnlineConv, interpreter, make_plan, open_length
from futurefill.executor import ArrayAPIExecutor, Executor

from .conftest import decaying_filters, oracle

RTOL = 1e-12
B, C, P, L = 2, 3, 4, 24
ERRORS = [MemoryError, KeyboardInterrupt]


class Flaky:
    """``inner`` (any executor) with failures injected by :meth:`arm`; ``compiled`` lets
    rollouts use the inner executor's compiled program (as the kernel ``"program"``)."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.armed: dict[str, list[Any]] = {}
        self.compiled = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def arm(self, kernel: str, error: type[BaseException], mode: str = "after", skip: int = 0):
        """After ``skip`` calls that run, the next call of ``kernel`` raises ``error``:
        ``after`` its work, ``lose`` (its work skipped; the call after it raises) or
        ``always`` (before its work, every call until disarmed)."""
        self.armed[kernel] = [mode, error, skip]

    def _call(self, kernel: str, run: Callable[..., Any], *args: Any) -> Any:
        armed = self.armed.get(kernel)
        if armed is None or armed[2] > 0:
            if armed is not None:
                armed[2] -= 1
            return run(*args)
        mode, error = armed[0], armed[1]
        if mode == "lose":
            armed[0] = "once"  # delivered by the next call, before its work
            return None
        if mode != "always":
            del self.armed[kernel]
        if mode == "after":
            run(*args)
        raise error(f"injected into {kernel}")

    def emit(self, *args: Any) -> Any:
        return self._call("emit", self.inner.emit, *args)

    def fill(self, *args: Any) -> Any:
        return self._call("fill", self.inner.fill, *args)

    def prefill(self, *args: Any) -> Any:
        return self._call("prefill", self.inner.prefill, *args)

    def settle(self, *args: Any) -> Any:
        return self._call("settle", self.inner.settle, *args)

    def compile(self, state: Any, feedback: Any) -> Any:
        program = self.inner.compile(state, feedback) if self.compiled else None
        if program is None:
            return None
        return lambda *args: self._call("program", program, *args)


def _stream(backend: Executor, rng, *, open_ended: bool = False, prompt: int = 0):
    """A stream over ``P + L`` positions on a :class:`Flaky` ``backend`` (tasks after every
    step), its filters, host inputs ``(B, C, P + L)`` and a converter to the backend's
    arrays."""
    flaky = Flaky(backend)
    phi = decaying_filters(rng, C, P + L)
    length = None if open_ended else P + L - prompt
    conv = OnlineConv(
        phi, length, prompt=prompt, batch=B, backend=flaky, dtype="float64", direct_below=1
    )
    u = rng.standard_normal((B, C, P + L))

    def x(a: np.ndarray) -> Any:
        return backend.asarray(np.ascontiguousarray(a), dtype="float64")

    return conv, flaky, phi, u, x


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def _finish(conv: OnlineConv, u: np.ndarray, x: Callable[[np.ndarray], Any]) -> np.ndarray:
    """Run the rest of ``u`` from the stream's position; the outputs on the host."""
    start = conv.prompt + conv.position
    return conv.backend.to_numpy(conv.run(x(u[..., start:])))


def _all_refused(conv: OnlineConv, u: np.ndarray, x: Callable[[np.ndarray], Any]) -> None:
    step = x(u[..., P])
    calls = {
        "step": lambda: conv.step(step),
        "emit": lambda: conv.emit(step[:, :1], slice(0, 1)),
        "advance": conv.advance,
        "run": lambda: conv.run(x(u[..., P : P + 2])),
        "rollout": lambda: conv.rollout(step, conv.backend.xp.tanh, 2),
        "prefill": lambda: conv.prefill(x(u[:, :1, :P]), slice(0, 1)),
        "state_dict": conv.state_dict,
    }
    for name, call in calls.items():
        with pytest.raises(RuntimeError, match=r"poisoned: .* failed") as info:
            call()
        assert "reset()" in str(info.value), name


@pytest.mark.parametrize("error", ERRORS)
@pytest.mark.parametrize("call", ["prefill", "emit", "advance", "step", "run", "lost"])
def test_a_failed_kernel_poisons_until_reset_or_a_snapshot(backend, rng, call, error) -> None:
    """The kernel did its work (or lost it) and raised: a retry would read an input where a
    future sum belongs or add a task twice. Every call is refused until the stream is reset
    or a snapshot is loaded, from which it goes on exactly."""
    conv, flaky, phi, u, x = _stream(backend, rng, prompt=P)
    t = P + 3
    if call == "prefill":
        snapshot = conv.state_dict()
        flaky.arm("prefill", error)
        with pytest.raises(error):
            conv.prefill(x(u[..., :P]))
    else:
        conv.prefill(x(u[..., :P]))
        conv.run(x(u[..., P:t]))
        snapshot = conv.state_dict()
        with pytest.raises(error):
            if call == "emit":
                flaky.arm("emit", error)
                conv.emit(x(u[:, :2, t]), slice(0, 2))
            elif call == "advance":  # between the tasks and the position update
                conv.emit(x(u[..., t]))
                flaky.arm("fill", error)
                conv.advance()
            elif call == "step":
                flaky.arm("fill", error)
                conv.step(x(u[..., t]))
            elif call == "run":
                flaky.arm("fill", error, skip=1)
                conv.run(x(u[..., t : t + 3]))
            else:  # the tasks after step t are lost; the error surfaces a step later
                flaky.arm("fill", error, mode="lose")
                conv.step(x(u[..., t]))
                conv.step(x(u[..., t + 1]))
    _all_refused(conv, u, x)
    conv.load_state_dict(snapshot)
    if call == "prefill":
        conv.prefill(x(u[..., :P]))
    want, start = oracle(u, phi), conv.prompt + conv.position
    assert _rel(_finish(conv, u, x), want[..., start:]) <= RTOL
    conv.reset()
    y_prompt = backend.to_numpy(conv.prefill(x(u[..., :P])))  # usable again
    got = np.concatenate([y_prompt, _finish(conv, u, x)], axis=-1)
    assert _rel(got, want) <= RTOL


def _has_compiled_rollout(backend: Executor) -> bool:
    return type(backend).compile is not ArrayAPIExecutor.compile


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("error", [*ERRORS, "feedback"])
def test_a_failed_rollout_is_undone(backend, rng, error, compiled) -> None:
    """A rollout failing in its fourth step (a kernel after its work, or the feedback) leaves
    the stream exactly as before: the same snapshot digest, and exact outputs after."""
    if compiled and not _has_compiled_rollout(backend):
        pytest.skip(f"{backend.name} has no compiled rollout")
    if compiled and error == "feedback" and backend.name == "jax":
        pytest.skip("a traced feedback cannot fail at a given step")
    conv, flaky, phi, u, x = _stream(backend, rng)
    flaky.compiled = compiled
    conv.run(x(u[..., :2]))
    before = conv.state_dict()
    calls = 0

    def feedback(y: Any) -> Any:
        nonlocal calls
        calls += 1
        if error == "feedback" and calls == 3:
            raise FloatingPointError("feedback failed")
        return backend.xp.tanh(y)

    if error != "feedback":
        flaky.arm("program" if compiled else "fill", error, skip=0 if compiled else 3)
    with pytest.raises(FloatingPointError if error == "feedback" else error):
        conv.rollout(x(u[..., 2]), feedback, 8)
    assert conv.state_dict()["digest"] == before["digest"]
    assert _rel(_finish(conv, u, x), oracle(u, phi)[..., 2:]) <= RTOL


def test_a_rollout_that_cannot_be_undone_poisons(backend, rng) -> None:
    """The deferred work cannot be finished while undoing: the stream is poisoned, and a
    reset (once the executor works again) makes it exact again."""
    conv, flaky, phi, u, x = _stream(backend, rng)
    conv.run(x(u[..., :2]))
    flaky.arm("fill", MemoryError, skip=2)
    flaky.arm("settle", FloatingPointError, mode="always", skip=1)  # the record's settle runs
    with pytest.raises(MemoryError):
        conv.rollout(x(u[..., 2]), backend.xp.tanh, 8)
    _all_refused(conv, u, x)
    with pytest.raises(FloatingPointError):
        conv.reset()
    _all_refused(conv, u, x)
    flaky.armed.clear()
    conv.reset()
    assert _rel(_finish(conv, u, x), oracle(u, phi)) <= RTOL


@pytest.mark.parametrize("error", ERRORS)
def test_a_run_across_segments_is_undone(backend, rng, monkeypatch, error) -> None:
    """Open-ended, a run crossing into the next segment and failing there leaves the stream
    in its first segment exactly as before."""
    monkeypatch.setattr(open_length, "FIRST_SEGMENT", 8)
    conv, flaky, phi, u, x = _stream(backend, rng, open_ended=True)
    conv.run(x(u[..., :3]))
    before, plan = conv.state_dict(), conv.plan
    flaky.arm("fill", error, skip=(8 - 3) + 2)
    with pytest.raises(error):
        conv.run(x(u[..., 3:15]))
    assert conv.plan is plan and conv.state_dict()["digest"] == before["digest"]
    assert _rel(_finish(conv, u, x), oracle(u, phi)[..., 3:]) <= RTOL


def test_a_failed_segment_move_poisons(backend, rng, monkeypatch) -> None:
    """Open-ended: the deferred work of a finished segment cannot be joined when the next one
    starts: its history would miss it, so the stream is poisoned."""
    monkeypatch.setattr(open_length, "FIRST_SEGMENT", 8)
    conv, flaky, phi, u, x = _stream(backend, rng, open_ended=True)
    conv.run(x(u[..., :8]))
    flaky.arm("settle", MemoryError)
    with pytest.raises(MemoryError):
        conv.step(x(u[..., 8]))
    _all_refused(conv, u, x)
    conv.reset()
    assert _rel(_finish(conv, u, x), oracle(u, phi)) <= RTOL


def test_the_interpreter_refuses_a_poisoned_state(rng) -> None:
    """Callers of the interpreter (not only OnlineConv) get the same refusal."""
    ex = Flaky(load_numpy())
    plan = make_plan(8, "continuous", prompt=2)
    phi = decaying_filters(rng, 3, 10)
    state = interpreter.new_state(ex, plan, phi, batch=1, dtype=np.float64)
    interpreter.prefill(ex, state, np.ones((1, 3, 2)), slice(None))
    ex.arm("emit", MemoryError)
    with pytest.raises(MemoryError):
        interpreter.step(ex, state, np.ones((1, 3)))
    assert state.poisoned == "step() failed (MemoryError: injected into emit)"
    for call in (
        lambda: interpreter.step(ex, state, np.ones((1, 3))),
        lambda: interpreter.emit(ex, state, np.ones((1, 3)), slice(None)),
        lambda: interpreter.advance(ex, state),
        lambda: interpreter.run(ex, state, np.ones((1, 3, 2))),
        lambda: interpreter.rollout(ex, state, np.ones((1, 3)), np.tanh, 2),
        lambda: interpreter.prefill(ex, state, np.ones((1, 3, 2)), slice(None)),
    ):
        with pytest.raises(RuntimeError, match="poisoned"):
            call()
    interpreter.reset(ex, state)
    assert state.poisoned is None and state.step == 0


def load_numpy() -> Executor:
    from futurefill_numpy import NumpyExecutor

    return NumpyExecutor()


# ---------------------------------------------------------------------- NumPy deferred work
def _deadline_stream(rng):
    from futurefill import PlanSpec

    phi = decaying_filters(rng, C, 64)
    spec = PlanSpec("deadline", direct_below=2, slack_from=4)
    conv = OnlineConv(phi, 64, schedule=spec, batch=B, backend="numpy", dtype="float64")
    return conv, phi, rng.standard_normal((B, C, 64))


def _broken_fft(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every deferred piece fails (they transform with ``scipy.fft``; steps with numpy.fft)."""
    import scipy.fft

    def rfft(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("no memory for the FFT")

    monkeypatch.setattr(scipy.fft, "rfft", rfft)


def test_a_failed_deferred_piece_poisons_numpy(rng, monkeypatch) -> None:
    """The failure of a task run on the worker thread reaches a later step; retrying it
    would give wrong outputs, so it is refused until a reset."""
    conv, phi, u = _deadline_stream(rng)
    with monkeypatch.context() as patch:
        _broken_fft(patch)
        with pytest.raises(MemoryError, match="no memory"):
            for t in range(64):
                conv.step(u[..., t])
        with pytest.raises(RuntimeError, match="poisoned"):
            conv.step(u[..., conv.position])
    conv.reset()
    assert _rel(conv.run(u), oracle(u, phi)) <= RTOL


def test_a_rollout_whose_deferred_pieces_fail_is_undone_numpy(rng, monkeypatch) -> None:
    conv, phi, u = _deadline_stream(rng)
    conv.run(u[..., :5])
    before = conv.state_dict()
    with monkeypatch.context() as patch:
        _broken_fft(patch)
        with pytest.raises(MemoryError, match="no memory"):
            conv.rollout(u[..., 5], np.tanh)
    assert conv.state_dict()["digest"] == before["digest"]
    assert _rel(conv.run(u[..., 5:]), oracle(u, phi)[..., 5:]) <= RTOL


# ---------------------------------------------------------------------- clear errors
def test_open_ended_prefill_converts_lists_and_refuses_2d_inputs(backend, rng) -> None:
    conv, _, phi, u, x = _stream(backend, rng, open_ended=True)
    with pytest.raises(ValueError, match=r"the prompt must have shape \(B, c, P\), got \(2, 3\)"):
        conv.prefill(u[..., 0].tolist())
    assert conv.prompt == 0 and not conv.state.prefilled.any()
    got = [backend.to_numpy(conv.prefill(u[..., :P].tolist())), _finish(conv, u, x)]
    assert _rel(np.concatenate(got, axis=-1), oracle(u, phi)) <= RTOL


def test_a_feedback_may_return_a_list_of_exact_values(backend, rng) -> None:
    if backend.name == "jax":
        pytest.skip("a JAX feedback is traced: it returns arrays")
    ex = backend

    def as_list(y: Any) -> list:
        return ex.to_numpy(ex.xp.tanh(y)).tolist()

    runs = []
    for feedback in (ex.xp.tanh, as_list):
        conv, _, _, u, x = _stream(backend, np.random.default_rng(7))
        runs.append(ex.to_numpy(conv.rollout(x(u[..., 0]), feedback, 10)))
    np.testing.assert_array_equal(runs[1], runs[0])

    phi = decaying_filters(rng, C, 16)
    conv = OnlineConv(phi, 16, batch=B, backend=backend, dtype="float32")
    u0 = ex.asarray(np.ones((B, C)), dtype="float32")
    exact = conv.rollout(u0, lambda y: np.full((B, C), 0.5, np.float32).tolist(), 3)
    assert exact.shape == (B, C, 3)
    with pytest.raises(TypeError, match=r"casting it to .*float32 would round it"):
        conv.rollout(u0, lambda y: np.full((B, C), 0.1), 3)
    with pytest.raises(TypeError, match="must be an array of numbers"):
        conv.rollout(u0, lambda y: [[0.5], [0.5, 0.5]], 3)
    assert conv.position == 3
