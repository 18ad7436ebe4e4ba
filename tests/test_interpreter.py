"""The interpreter of plans (:mod:`futurefill.interpreter`) called directly, and its rollout
loop, which runs for every executor without a compiled rollout (``compile`` returns None).

``OnlineConv`` checks its arguments before calling the interpreter, so the interpreter's own
cursor checks are only reached here.
"""

from __future__ import annotations

import numpy as np
import pytest

from futurefill import OnlineConv, interpreter, make_plan
from futurefill_numpy import NumpyExecutor

from .conftest import decaying_filters, oracle

RTOL64 = 1e-12


class LoopingExecutor(NumpyExecutor):
    """The NumPy executor without its compiled rollout: the interpreter's loop runs."""

    def compile(self, state, feedback):
        return None


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize(("schedule", "prompt"), [("continuous", 0), ("epoched", 4)])
def test_rollout_loop_is_exact(rng, schedule: str, prompt: int) -> None:
    """``u[t+1] = tanh(y[t])`` over rollouts of 1, 6 and the remaining steps, started from
    steps already taken; the loop advances the cursor and stacks outputs time last."""
    B, C, L = 2, 3, 40
    phi = decaying_filters(rng, C, prompt + L) * 0.5
    u_prompt = rng.standard_normal((B, C, prompt))
    u0 = rng.standard_normal((B, C))
    conv = OnlineConv(phi, L, schedule=schedule, prompt=prompt, batch=B, backend=LoopingExecutor())
    if prompt:
        conv.prefill(u_prompt)
    parts = [conv.step(u0)[..., None]]
    u = np.tanh(parts[0][..., 0])
    for steps in (1, 6, None):
        position = conv.position
        ys = conv.rollout(u, np.tanh, steps)
        assert ys.shape == (B, C, L - position if steps is None else steps)
        assert conv.position == position + ys.shape[-1]
        parts.append(ys)
        u = np.tanh(ys[..., -1])
    got = np.concatenate(parts, axis=-1)
    inputs = np.concatenate([u_prompt, u0[..., None], np.tanh(got[..., :-1])], axis=-1)
    assert _relative_error(got, oracle(inputs, phi)[..., prompt:]) <= RTOL64


def test_rollout_loop_checks_the_feedback(rng) -> None:
    conv = OnlineConv(decaying_filters(rng, 2, 8), 8, backend=LoopingExecutor())
    with pytest.raises(ValueError, match="feedback must return shape"):
        conv.rollout(np.ones((1, 2)), lambda y: y[:, :1], 3)
    assert conv.position == 0  # restored by OnlineConv


def _state(rng, channels: int = 3, length: int = 8):
    ex = NumpyExecutor()
    plan = make_plan(length)
    phi = decaying_filters(rng, channels, length)
    return ex, interpreter.new_state(ex, plan, phi, batch=1, dtype=np.float64)


def test_rollout_steps_within_the_plan(rng) -> None:
    ex, state = _state(rng)
    interpreter.step(ex, state, np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"steps must lie in 1\.\.7, got 8"):
        interpreter.rollout(ex, state, np.ones((1, 3)), np.tanh, 8)
    with pytest.raises(ValueError, match=r"1\.\.7, got 0"):
        interpreter.rollout(ex, state, np.ones((1, 3)), np.tanh, 0)
    assert state.step == 1
    assert interpreter.rollout(ex, state, np.ones((1, 3)), np.tanh, 7).shape == (1, 3, 7)


def test_whole_step_calls_wait_for_advance(rng) -> None:
    """After some channels were emitted, only the other channels' emit and advance may run."""
    ex, state = _state(rng)
    interpreter.emit(ex, state, np.ones((1, 1)), slice(0, 1))
    for call in (
        lambda: interpreter.rollout(ex, state, np.ones((1, 3)), np.tanh, 2),
        lambda: interpreter.step(ex, state, np.ones((1, 3))),
    ):
        with pytest.raises(RuntimeError, match="finish with advance"):
            call()
    with pytest.raises(RuntimeError, match=r"^2 channels were not emitted at this step$"):
        interpreter.advance(ex, state)
    assert state.step == 0 and state.num_emitted == 1
    interpreter.emit(ex, state, np.ones((1, 2)), slice(1, 3))
    interpreter.advance(ex, state)
    assert state.step == 1 and state.num_emitted == 0 and not state.emitted.any()
