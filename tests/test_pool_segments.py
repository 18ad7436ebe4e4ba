"""StreamPool slots longer than the pool's plan: open-ended and long slots run in segments.

A pool's plan covers ``L`` steps; a slot admitted for more (or open-ended, until the filters'
taps run out) starts a new segment every ``L`` steps, with all its inputs so far as the
segment's prompt. Every output is compared with ``numpy.convolve`` of the sequence's own
inputs (float64). Tolerance 1e-12 of the largest |output|: as in ``test_pool.py`` (FFT round
trips of length <= 256 here, each ~1e-16 relative).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from futurefill import PlanSpec, StreamPool
from futurefill.executor import Executor

from .conftest import decaying_filters
from .pool_model import assert_same
from .test_pool import SPECS

C, N, L = 3, 100, 16
TOL = 1e-12


class Stream:
    """One sequence on the host: its inputs so far (prompt first) and its slot."""

    def __init__(self, phi: np.ndarray, slot: int, prompt: np.ndarray) -> None:
        self.phi, self.slot, self.u = phi, slot, prompt

    def push(self, x: np.ndarray) -> None:
        self.u = np.concatenate([self.u, x[:, None]], axis=1)

    def check(self, y: np.ndarray) -> None:
        """``y`` ``(C,)`` is the output at the newest position."""
        t = self.u.shape[-1] - 1
        want = np.array([np.convolve(self.u[c], self.phi[c])[t] for c in range(C)])
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(y, want, rtol=0, atol=TOL * scale)


def host(pool: StreamPool, y: Any) -> np.ndarray:
    return np.asarray(pool.backend.to_numpy(y), dtype=np.float64)


def make_pool(backend: Executor, rng: np.random.Generator, spec: PlanSpec, capacity: int = 4):
    phi = decaying_filters(rng, C, N)
    pool = StreamPool(phi, L, capacity=capacity, schedule=spec, backend=backend, dtype="float64")
    return pool, phi


def admit(pool: StreamPool, phi: np.ndarray, rng, prompt: int, length: int | None) -> Stream:
    x = rng.standard_normal((C, prompt))
    slot = pool.admit(pool.backend.asarray(x, dtype="float64") if prompt else None, length=length)
    return Stream(phi, slot, x)


def step(pool: StreamPool, rng, streams: list[Stream]) -> None:
    """One step of ``streams`` together, each checked."""
    x = rng.standard_normal((len(streams), C))
    y = host(pool, pool.step([q.slot for q in streams], pool.backend.asarray(x)))
    for i, q in enumerate(streams):
        q.push(x[i])
        q.check(y[i])


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_slots_longer_than_the_plan_run_exactly_to_their_end(backend, rng, spec):
    if backend.name == "jax" and spec != PlanSpec("continuous", direct_below=4):
        pytest.skip("JAX runs one schedule here (each pool shape compiles its programs)")
    pool, phi = make_pool(backend, rng, spec)
    # open-ended without and with a prompt, 3 segments of a 5-input prompt, one segment
    wanted = [(0, None), (21, None), (5, 2 * L + 7), (3, L - 6)]
    streams = [admit(pool, phi, rng, P, n) for P, n in wanted]
    ends = [N, N, 5 + 2 * L + 7, 3 + L - 6]
    while streams:
        step(pool, rng, streams)
        for q, end in zip(streams, ends, strict=True):
            assert pool.position(q.slot) == q.u.shape[-1]
            assert pool.remaining(q.slot) == end - q.u.shape[-1]
        done = [i for i, q in enumerate(streams) if pool.remaining(q.slot) == 0]
        for i in reversed(done):
            with pytest.raises(RuntimeError, match="all their steps"):
                pool.step([streams[i].slot], pool.backend.asarray(np.ones((1, C))))
            pool.release(streams.pop(i).slot)
            ends.pop(i)


def test_a_slot_without_a_length_is_open_ended_until_the_taps(rng):
    pool, _ = make_pool("numpy", rng, PlanSpec("continuous", direct_below=1))
    a, b = pool.admit(), pool.admit(np.ones((C, 30)))
    assert (pool.remaining(a), pool.remaining(b)) == (N, N - 30)
    assert pool.steps(b) == 0 and pool.position(b) == 30
    with pytest.raises(ValueError, match="taps"):
        pool.admit(np.ones((C, N)))  # no step left
    with pytest.raises(ValueError, match="taps"):
        pool.prefill(b, np.ones((C, N - 30)))
    assert pool.position(b) == 30


@pytest.mark.parametrize("drafts", [3, 9], ids=["to-the-boundary", "across-two"])
def test_rewind_across_a_segment_boundary_equals_never_taking_the_steps(backend, rng, drafts):
    spec = PlanSpec("continuous", direct_below=1)
    pool, phi = make_pool(backend, rng, spec, capacity=2)
    q = admit(pool, phi, rng, 7, None)
    for _ in range(L - 3):
        step(pool, rng, [q])
    before = pool.state_dict(q.slot)
    pool.mark(q.slot)
    # the 4th draft starts the second segment; with 9 drafts, after L - 3 + 9 > L steps
    for _ in range(drafts + 4):
        pool.step([q.slot], pool.backend.asarray(rng.standard_normal((1, C))))
    pool.rewind(q.slot, drafts + 4)
    assert_same(pool.state_dict(q.slot), before)
    pool.commit(q.slot)
    for _ in range(L + 4):  # past the boundary again, with other inputs
        step(pool, rng, [q])


def test_a_partial_rewind_stays_in_the_new_segment(rng):
    pool, phi = make_pool("numpy", rng, PlanSpec("continuous", direct_below=1), capacity=2)
    q = admit(pool, phi, rng, 2, None)
    for _ in range(L - 1):
        step(pool, rng, [q])
    pool.mark(q.slot)
    step(pool, rng, [q])  # the last step of the first segment
    step(pool, rng, [q])  # the first of the second
    saved = pool.state_dict(q.slot)
    kept = q.u.copy()
    step(pool, rng, [q])
    step(pool, rng, [q])
    pool.rewind(q.slot, 2)
    assert_same(pool.state_dict(q.slot), saved)
    q.u = kept
    pool.rewind(q.slot, 2)  # back across the boundary
    q.u = q.u[:, :-2]
    assert pool.position(q.slot) == q.u.shape[-1] == 2 + L - 1
    for _ in range(3):
        step(pool, rng, [q])


def test_a_forked_segmented_slot_diverges_exactly(backend, rng):
    pool, phi = make_pool(backend, rng, PlanSpec("continuous", direct_below=1), capacity=3)
    q = admit(pool, phi, rng, 4, None)
    for _ in range(L + 3):
        step(pool, rng, [q])
    twin = Stream(phi, pool.fork(q.slot), q.u.copy())
    assert_same(pool.state_dict(twin.slot), pool.state_dict(q.slot))
    for _ in range(L + 2):  # both cross the next boundary, with different inputs
        step(pool, rng, [q, twin])


def test_a_segmented_slot_moves_to_another_pool_and_continues_identically(rng):
    spec = PlanSpec("continuous", direct_below=1)
    pool, phi = make_pool("numpy", rng, spec, capacity=1)
    other = StreamPool(phi, L, capacity=2, schedule=spec, dtype="float64")
    q = admit(pool, phi, rng, 9, 3 * L)
    for _ in range(L + 5):
        step(pool, rng, [q])
    state = pool.state_dict(q.slot)
    assert state["history"].shape == (C, 9 + L)
    moved = other.load_state_dict(state)
    assert_same(other.state_dict(moved), state)
    for _ in range(L):
        x = rng.standard_normal((1, C))
        np.testing.assert_array_equal(other.step([moved], x), pool.step([q.slot], x))
    for bad, error in [
        ({**state, "history": None}, TypeError),
        ({**state, "history": state["history"][:, 1:]}, ValueError),
        ({**state, "limit": L - 1}, ValueError),
        ({**state, "wanted": L}, ValueError),
    ]:
        with pytest.raises(error):
            other.load_state_dict(bad)
    assert other.active_slots == [moved]


def test_a_pool_covering_its_slots_keeps_no_history(rng):
    pool, _ = make_pool("numpy", rng, PlanSpec("continuous", direct_below=1))
    a = pool.admit(np.ones((C, 20)), length=L)
    b = pool.admit(length=L - 1)
    for _ in range(L - 1):
        pool.step([a, b], np.ones((2, C)))
    assert not pool._slots.history
    assert pool.state_dict(a)["history"] is None
