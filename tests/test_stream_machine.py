"""Stateful property test: random sequences of every OnlineConv call against a model stream.

Hypothesis drives ``prefill`` / ``step`` / ``emit`` / ``advance`` / ``rollout`` / ``reset`` /
``state_dict`` / ``load_state_dict`` and bad calls in any order, on every backend. A plain model
of the stream (the inputs given so far, the cursor, the per-channel flags) says which calls
are allowed; every allowed call's outputs are checked against float64 direct sums over the
model's inputs, and every refused call must raise and leave the state exactly as it was.
Tolerance: 1e-12 of the largest |sum| (float64 FFT round trips, as in ``test_online.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from futurefill import OnlineConv, PlanSpec
from futurefill.executor import Executor

from .conftest import examples

C, L = 3, 20
SPECS = [
    PlanSpec("naive"),
    PlanSpec("epoched", epoch=3),
    PlanSpec("epoched"),
    PlanSpec("continuous", direct_below=1),
    PlanSpec("continuous", direct_below=4),
    PlanSpec("deadline", direct_below=1),  # on numpy: every task on the worker thread
    PlanSpec("deadline", direct_below=2),
    PlanSpec("reuse", radix=3, direct_below=1),  # spectra kept in registers between steps
    PlanSpec("reuse", radix=4, direct_below=2),
]
CHANNEL_RANGES = [slice(0, 1), slice(1, 3), slice(0, 3), slice(2, 3), slice(0, 2)]
TOL = 1e-12


def direct_sums(u: np.ndarray, phi: np.ndarray, j: int) -> np.ndarray:
    """``y[:, :, j]`` by float64 direct sums: the independent oracle."""
    return np.einsum("bcs,cs->bc", u[..., : j + 1][..., ::-1], phi[:, : j + 1])


class Model:
    """What the stream should be: inputs given, position, per-channel flags."""

    def __init__(self, batch: int, prompt: int) -> None:
        self.u = np.zeros((batch, C, prompt + L))
        self.prompt = prompt
        self.position = 0
        self.prefilled = np.zeros(C, bool)
        self.emitted = np.zeros(C, bool)

    def copy(self) -> Model:
        other = Model(self.u.shape[0], self.prompt)
        other.u = self.u.copy()
        other.position = self.position
        other.prefilled = self.prefilled.copy()
        other.emitted = self.emitted.copy()
        return other

    @property
    def can_step(self) -> bool:
        return self.position < L and (self.prompt == 0 or bool(self.prefilled.all()))


def make_machine(backend: Executor) -> type[RuleBasedStateMachine]:
    def host(x: Any) -> np.ndarray:
        return np.asarray(backend.to_numpy(x), dtype=np.float64)

    def native(x: np.ndarray) -> Any:
        return backend.asarray(np.ascontiguousarray(x), dtype="float64")

    class StreamMachine(RuleBasedStateMachine):
        snapshots = Bundle("snapshots")

        @initialize(
            spec=st.sampled_from(SPECS),
            prompt=st.sampled_from([0, 3]),
            batch=st.sampled_from([1, 2]),
            seed=st.integers(0, 2**16),
        )
        def build(self, spec: PlanSpec, prompt: int, batch: int, seed: int) -> None:
            self.rng = np.random.default_rng(seed)
            self.phi = self.rng.standard_normal((C, prompt + L)) * 0.5 ** np.arange(prompt + L)
            self.conv = OnlineConv(
                self.phi, L, schedule=spec, prompt=prompt, batch=batch, backend=backend,
                dtype="float64",
            )  # fmt: skip
            self.model = Model(batch, prompt)

        # -------------------------------------------------------------- helpers
        def fresh(self, *shape: int) -> np.ndarray:
            return self.rng.standard_normal(shape)

        def cursor(self) -> tuple:
            s = self.conv._state
            return (host(s.buffer).copy(), s.step, s.prefilled.copy(), s.emitted.copy())

        def refused(self, error: type[Exception], call: Any) -> None:
            before = self.cursor()
            with pytest.raises(error):
                call()
            after = self.cursor()
            np.testing.assert_array_equal(after[0], before[0])
            assert after[1:2] == before[1:2]
            np.testing.assert_array_equal(after[2], before[2])
            np.testing.assert_array_equal(after[3], before[3])

        def check(self, y: np.ndarray, j: int, channels: slice = slice(None)) -> None:
            """``y`` (on the host) equals the direct sums of output ``j`` of ``channels``."""
            every = direct_sums(self.model.u, self.phi, j)
            scale = max(np.abs(every).max(), 1.0)
            np.testing.assert_allclose(y, every[:, channels], rtol=0, atol=TOL * scale)

        # -------------------------------------------------------------- calls
        @rule(ch=st.sampled_from(CHANNEL_RANGES))
        def prefill(self, ch: slice) -> None:
            m, P = self.model, self.model.prompt
            if P == 0 or m.prefilled[ch].any():
                u = native(np.zeros((m.u.shape[0], ch.stop - ch.start, max(P, 1))))
                self.refused(RuntimeError, lambda: self.conv.prefill(u, channels=ch))
                return
            m.u[:, ch, :P] = self.fresh(m.u.shape[0], ch.stop - ch.start, P)
            y = host(self.conv.prefill(native(m.u[:, ch, :P]), channels=ch))
            m.prefilled[ch] = True
            for j in range(P):
                self.check(y[..., j], j, ch)

        @rule()
        def step(self) -> None:
            m = self.model
            u = self.fresh(m.u.shape[0], C)
            if not m.can_step or m.emitted.any():
                self.refused(RuntimeError, lambda: self.conv.step(native(u)))
                return
            j = m.prompt + m.position
            m.u[..., j] = u
            y = host(self.conv.step(native(u)))
            m.position += 1
            self.check(y, j)

        @rule(ch=st.sampled_from(CHANNEL_RANGES))
        def emit(self, ch: slice) -> None:
            m = self.model
            u = self.fresh(m.u.shape[0], ch.stop - ch.start)
            if not m.can_step or m.emitted[ch].any():
                self.refused(RuntimeError, lambda: self.conv.emit(native(u), ch))
                return
            j = m.prompt + m.position
            m.u[:, ch, j] = u
            y = host(self.conv.emit(native(u), ch))
            m.emitted[ch] = True
            self.check(y, j, ch)

        @rule()
        def advance(self) -> None:
            m = self.model
            if not m.can_step or not m.emitted.all():
                self.refused(RuntimeError, self.conv.advance)
                return
            self.conv.advance()
            m.emitted[:] = False
            m.position += 1

        @rule(steps=st.integers(1, 8))
        def rollout(self, steps: int) -> None:
            m = self.model
            u0 = self.fresh(m.u.shape[0], C)
            xp = backend.xp
            if not m.can_step or m.emitted.any():
                self.refused(RuntimeError, lambda: self.conv.rollout(native(u0), xp.tanh, 1))
                return
            if steps > L - m.position:
                self.refused(ValueError, lambda: self.conv.rollout(native(u0), xp.tanh, steps))
                return
            ys = host(self.conv.rollout(native(u0), xp.tanh, steps))
            u = u0
            for i in range(steps):
                j = m.prompt + m.position
                m.u[..., j] = u
                self.check(ys[..., i], j)
                u = np.tanh(ys[..., i])
                m.position += 1

        @rule()
        def reset(self) -> None:
            self.conv.reset()
            self.model = Model(self.model.u.shape[0], self.model.prompt)

        @rule(target=snapshots)
        def snapshot(self) -> tuple:
            return self.conv.state_dict(), self.model.copy()

        @rule(saved=snapshots)
        def restore(self, saved: tuple) -> None:
            state, model = saved
            self.conv.load_state_dict(state)
            self.model = model.copy()

        @rule(saved=snapshots, field=st.sampled_from(["position", "emitted", "buffer"]))
        def restore_edited(self, saved: tuple, field: str) -> None:
            state = dict(saved[0])
            if field == "position":
                state["position"] = (state["position"] + 1) % (L + 1)
            elif field == "emitted":
                state["emitted"] = ~state["emitted"]
            else:
                state["buffer"] = native(host(state["buffer"]) + 1.0)
            self.refused(ValueError, lambda: self.conv.load_state_dict(state))

        @rule(kind=st.sampled_from(["shape", "complex", "no_numbers", "channels"]))
        def bad_input(self, kind: str) -> None:
            m = self.model
            B = m.u.shape[0]

            # The cursor is checked first: a call that may not run now says so.
            def expect(error: type[Exception]) -> type[Exception]:
                return error if m.can_step and not m.emitted.any() else RuntimeError

            if kind == "shape":
                u = native(np.zeros((B, C + 1)))
                self.refused(expect(ValueError), lambda: self.conv.step(u))
            elif kind == "complex":  # (float32, lists, NumPy arrays: converted, not refused)
                u = backend.asarray(np.zeros((B, C)) + 0j)
                self.refused(expect(TypeError), lambda: self.conv.step(u))
            elif kind == "no_numbers":
                u = [[None] * C] * B
                self.refused(expect(TypeError), lambda: self.conv.step(u))
            else:
                u = native(np.zeros((B, 2)))
                error = ValueError if m.can_step else RuntimeError
                self.refused(error, lambda: self.conv.emit(u, slice(2, 0)))

        @invariant()
        def cursor_matches_the_model(self) -> None:
            if hasattr(self, "conv"):
                assert self.conv.position == self.model.position
                np.testing.assert_array_equal(self.conv._state.emitted, self.model.emitted)
                np.testing.assert_array_equal(self.conv._state.prefilled, self.model.prefilled)

    return StreamMachine


@pytest.mark.hypothesis  # with the property tests in ``nox -s tests_deep``
def test_random_call_sequences_match_the_model(backend: Executor) -> None:
    slow = backend.name in ("array_api_strict", "jax")
    run_state_machine_as_test(
        make_machine(backend),
        settings=settings(
            max_examples=examples(25 if slow else 80),
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
