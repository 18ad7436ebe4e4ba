"""Stateful property test: a StreamPool under random admit/step/fork/rewind/release schedules.

Hypothesis drives two pools of the same filters and plan (capacities 4 and 3) through
``admit`` (with or without a prompt; with a length, or open-ended: the pools' plans cover 12
steps, so long slots cross segments), ``prefill`` in chunks (whole or one
channel range at a time) before the first step, ``step`` of a random subset, ``emit`` of a
channel range and ``advance``, ``fork``, ``mark`` / ``rewind(k)`` / ``commit``, ``release``,
``state_dict`` then ``load_state_dict`` (later, into the same pool or the other one), and bad
calls. The oracle is one host array per sequence: its inputs, prompt first; ``rewind(k)``
drops its last ``k`` inputs. Every output of every call is compared with ``numpy.convolve``
of that sequence's own inputs (float64), whatever the other slots did. Every refused call
must raise and leave both pools exactly as they were: every slot's ``state_dict``, the whole
buffer, the per-slot cursor, emitted flags and journals, bit for bit.

Tolerance: 1e-12 of the largest |output| (float64 FFT round trips of length <= 64, as in
``test_pool.py``).

Bugs this machine found are reproduced one by one in ``test_pool_regressions.py``. Two of
them it avoids by design: ``prefill`` gives every channel the same chunk (whole, or split over
channel ranges in one rule), so no step meets channels at different prompt lengths
(``test_a_step_refused_for_unequal_prompts_leaves_the_slot_usable``,
``test_a_prefill_over_channels_at_different_lengths_leaves_the_slot``), and ``release`` is
not given a slot that is not an int (``test_release_refuses_what_is_not_a_slot``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
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
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from futurefill import PlanSpec, StreamPool
from futurefill.executor import Executor

from .conftest import decaying_filters
from .pool_model import (
    ALL,
    TAPS,
    C,
    Check,
    L,
    Seq,
    all_emitted,
    any_seq,
    assert_same,
    having,
    missing,
    pool_bad_calls,
    rewindable,
    snapshot,
    steppable,
)

CAPACITIES = (4, 3)
POOLS = st.sampled_from(range(len(CAPACITIES)))
SPECS = [
    PlanSpec("naive"),
    PlanSpec("epoched", epoch=3),
    PlanSpec("continuous", direct_below=1),
    PlanSpec("continuous", direct_below=4),
    PlanSpec("deadline", direct_below=1),
    PlanSpec("reuse", radix=4, direct_below=2),
]
CHANNEL_RANGES = [slice(0, 1), slice(1, 3), slice(0, 3), slice(2, 3), slice(0, 2)]
# a prompt chunk given to every channel: at once, or one channel range after another
SPLITS = [(slice(0, 3),), (slice(0, 1), slice(1, 3)), (slice(2, 3), slice(0, 2))]
TOL = 1e-12


def make_machine(backend: Executor) -> type[RuleBasedStateMachine]:
    def host(x: Any) -> np.ndarray:
        return np.asarray(backend.to_numpy(x), dtype=np.float64)

    def native(x: np.ndarray) -> Any:
        return backend.asarray(np.ascontiguousarray(x), dtype="float64")

    class PoolMachine(RuleBasedStateMachine):
        saves = Bundle("saves")

        @initialize(spec=st.sampled_from(SPECS), seed=st.integers(0, 2**16))
        def build(self, spec: PlanSpec, seed: int) -> None:
            self.rng = np.random.default_rng(seed)
            self.phi = decaying_filters(self.rng, C, TAPS)
            self.pools = [
                StreamPool(self.phi, L, capacity=n, schedule=spec, backend=backend, dtype="float64")
                for n in CAPACITIES
            ]
            self.seqs: list[dict[int, Seq]] = [{} for _ in CAPACITIES]

        # -------------------------------------------------------------- helpers
        def fresh(self, *shape: int) -> np.ndarray:
            return self.rng.standard_normal(shape)

        def pick(self, data: Any, ok: Check = any_seq) -> tuple[int, int, StreamPool, Seq]:
            """A slot of either pool whose sequence is ``ok`` (the rule's precondition says
            there is one): (pool index, slot, pool, sequence)."""
            handles = [(p, s) for p, seqs in enumerate(self.seqs) for s in sorted(seqs)]
            p, s = data.draw(
                st.sampled_from([(p, s) for p, s in handles if ok(self.seqs[p][s])]), label="slot"
            )
            return p, s, self.pools[p], self.seqs[p][s]

        def subset(self, data: Any, ok: Check) -> tuple[int, list[int]]:
            """A pool and distinct slots of it that are ``ok``, in a random order."""
            eligible = [[s for s, q in sorted(seqs.items()) if ok(q)] for seqs in self.seqs]
            p = data.draw(st.sampled_from([p for p, e in enumerate(eligible) if e]), label="pool")
            slots = st.lists(st.sampled_from(eligible[p]), min_size=1, unique=True)
            return p, data.draw(slots, label="slots")

        def refused(self, error: type[Exception], call: Callable[[], Any]) -> None:
            before = [snapshot(pool) for pool in self.pools]
            with pytest.raises(error):
                call()
            for pool, was in zip(self.pools, before, strict=True):
                assert_same(snapshot(pool), was)

        def check(self, q: Seq, y: np.ndarray, positions: range, ch: slice) -> None:
            """``y`` ``(c, len(positions))`` are the outputs of ``q`` at ``positions``."""
            want = np.zeros((C, len(positions)))
            for c in range(C)[ch] if len(positions) else ():
                full = np.convolve(q.u[c, : positions.stop], self.phi[c])
                want[c] = full[positions.start : positions.stop]
            assert y.shape == want[ch].shape
            scale = max(1.0, float(np.abs(want).max(initial=0.0)))
            np.testing.assert_allclose(y, want[ch], rtol=0, atol=TOL * scale)

        # -------------------------------------------------------------- admission
        @rule(
            p=POOLS,
            prompt=st.sampled_from([None, 0, 1, 5, 9]),
            length=st.sampled_from([None, 1, 3, L, L + 5, 2 * L + 1]),
        )
        def admit(self, p: int, prompt: int | None, length: int | None) -> None:
            pool, q = self.pools[p], Seq(length)
            x = None if prompt is None else self.fresh(C, prompt)

            def call() -> int:
                return pool.admit(prompt=None if x is None else native(x), length=length)

            if not q.room(prompt or 0):
                return self.refused(ValueError, call)
            if not pool.free_slots:
                return self.refused(RuntimeError, call)
            s = call()
            assert s not in self.seqs[p] and 0 <= s < pool.capacity
            self.seqs[p][s] = q
            if prompt:
                q.u[:, :prompt], q.given, q.pending = x, prompt, True

        @precondition(having(any_seq))
        @rule(data=st.data(), size=st.sampled_from([0, 1, 2, 5]), split=st.sampled_from(SPLITS))
        def prefill(self, data: Any, size: int, split: tuple[slice, ...]) -> None:
            _, s, pool, q = self.pick(data)
            x = self.fresh(C, size)
            if q.folded:
                return self.refused(RuntimeError, lambda: pool.prefill(s, native(x)))
            if not q.room(q.given + size):
                return self.refused(ValueError, lambda: pool.prefill(s, native(x)))
            start = q.given
            q.u[:, start : start + size] = x
            for ch in split:
                y = host(pool.prefill(s, native(x[ch]), ch))
                self.check(q, y, range(start, start + size), ch)
            q.given, q.pending = start + size, True

        # -------------------------------------------------------------- steps
        @precondition(having(steppable))
        @rule(data=st.data(), repeat=st.integers(1, 12))
        def step(self, data: Any, repeat: int) -> None:
            """``repeat`` steps of the same slots (fewer if one reaches its length)."""
            self.step_slots(*self.subset(data, steppable), repeat)

        @precondition(having(steppable))
        @rule(data=st.data(), drafts=st.integers(1, 8))
        def speculate(self, data: Any, drafts: int) -> None:
            """Mark some slots, step them ``drafts`` times, rewind each by its own ``k``."""
            p, slots = self.subset(data, steppable)
            for s in slots:
                self.pools[p].mark(s)
                self.seqs[p][s].mark = self.seqs[p][s].steps
            self.step_slots(p, slots, drafts)
            for s in slots:
                q = self.seqs[p][s]
                k = data.draw(st.integers(0, q.journal or 0), label=f"k of slot {s}")
                self.pools[p].rewind(s, k)
                q.rewind(k)

        def step_slots(self, p: int, slots: list[int], repeat: int) -> None:
            seqs = [self.seqs[p][s] for s in slots]
            for _ in range(repeat):
                if not all(q.can_step for q in seqs):
                    break
                x = self.fresh(len(slots), C)
                y = host(self.pools[p].step(slots, native(x)))
                assert y.shape == x.shape
                for i, q in enumerate(seqs):
                    j = q.begin()
                    q.u[:, j] = x[i]
                    self.check(q, y[i][:, None], range(j, j + 1), ALL)
                    q.steps += 1

        @precondition(having(lambda q: q.can_step and not q.emitted.all()))
        @rule(ch=st.sampled_from(CHANNEL_RANGES), data=st.data(), finish=st.booleans())
        def emit(self, ch: slice, data: Any, finish: bool) -> None:
            """Emit ``ch`` of some slots; with ``finish``, then the channels each still
            misses (one call per contiguous range), and advance them."""

            def ok(q: Seq) -> bool:
                return q.can_step and not q.emitted[ch].any()

            if not having(ok)(self):
                return
            p, slots = self.subset(data, ok)
            self.emit_into(p, slots, ch)
            if finish:
                for s in slots:
                    for rest in missing(self.seqs[p][s].emitted):
                        self.emit_into(p, [s], rest)
                self.advance_slots(p, slots)

        def emit_into(self, p: int, slots: list[int], ch: slice) -> None:
            x = self.fresh(len(slots), ch.stop - ch.start)
            y = host(self.pools[p].emit(slots, native(x), ch))
            for i, s in enumerate(slots):
                q = self.seqs[p][s]
                j = q.begin() if q.whole else q.position
                q.u[ch, j] = x[i]
                self.check(q, y[i][:, None], range(j, j + 1), ch)
                q.emitted[ch] = True

        @precondition(having(all_emitted))
        @rule(data=st.data())
        def advance(self, data: Any) -> None:
            self.advance_slots(*self.subset(data, all_emitted))

        def advance_slots(self, p: int, slots: list[int]) -> None:
            self.pools[p].advance(slots)
            for s in slots:
                q = self.seqs[p][s]
                q.steps += 1
                q.emitted[:] = False

        # -------------------------------------------------------------- slots
        @precondition(having(any_seq))
        @rule(data=st.data())
        def fork(self, data: Any) -> None:
            p, s, pool, q = self.pick(data)
            if not q.whole or not pool.free_slots:
                return self.refused(RuntimeError, lambda: pool.fork(s))
            new = pool.fork(s)
            assert new not in self.seqs[p]
            self.seqs[p][new] = q.copy()
            assert_same(pool.state_dict(new), pool.state_dict(s))

        @precondition(having(any_seq))
        @rule(data=st.data())
        def release(self, data: Any) -> None:
            p, s, pool, _ = self.pick(data)
            pool.release(s)
            del self.seqs[p][s]

        @precondition(having(any_seq))
        @rule(data=st.data(), keep=st.booleans())
        def mark_or_commit(self, data: Any, keep: bool) -> None:
            _, s, pool, q = self.pick(data)
            call = pool.mark if keep else pool.commit
            if not q.whole:
                return self.refused(RuntimeError, lambda: call(s))
            call(s)
            q.mark = q.steps if keep else None

        @precondition(having(any_seq))
        @rule(data=st.data(), marked=st.booleans())
        def rewind(self, data: Any, marked: bool) -> None:
            """Mostly a marked slot (``marked``), else any: refused unless marked."""
            _, s, pool, q = self.pick(
                data, rewindable if marked and having(rewindable)(self) else any_seq
            )
            k = data.draw(st.integers(-1, (q.journal or 0) + 1), label="k")
            if not q.whole or q.journal is None:
                return self.refused(RuntimeError, lambda: pool.rewind(s, k))
            if not 0 <= k <= q.journal:
                return self.refused(ValueError, lambda: pool.rewind(s, k))
            pool.rewind(s, k)
            q.rewind(k)

        # -------------------------------------------------------------- snapshots
        @precondition(having(any_seq))
        @rule(target=saves, data=st.data())
        def save(self, data: Any) -> Any:
            _, s, pool, q = self.pick(data)
            if not q.whole:
                self.refused(RuntimeError, lambda: pool.state_dict(s))
                return multiple()
            state = pool.state_dict(s)
            return state, dataclasses.replace(q.copy(), mark=None)  # journals are not saved

        @rule(saved=saves, p=POOLS)
        def load(self, saved: tuple[dict[str, Any], Seq], p: int) -> None:
            state, q = saved
            pool = self.pools[p]
            if not pool.free_slots:
                return self.refused(RuntimeError, lambda: pool.load_state_dict(state))
            s = pool.load_state_dict(state)
            assert s not in self.seqs[p]
            self.seqs[p][s] = q.copy()
            assert_same(pool.state_dict(s), state)

        @rule(p=POOLS, data=st.data())
        def bad_call(self, p: int, data: Any) -> None:
            calls = pool_bad_calls(self.pools[p], self.seqs[p])
            name = data.draw(st.sampled_from(sorted(calls)), label="bad call")
            self.refused(*calls[name])

        # -------------------------------------------------------------- invariants
        @invariant()
        def pools_match_the_model(self) -> None:
            for pool, seqs in zip(
                getattr(self, "pools", ()), getattr(self, "seqs", ()), strict=True
            ):
                assert pool.active_slots == sorted(seqs)
                assert pool.free_slots == pool.capacity - len(seqs)
                assert not pool._slots.poisoned
                for s, q in seqs.items():
                    got = (pool.position(s), pool.steps(s), pool.remaining(s))
                    assert got == (q.position, q.steps, q.limit - q.steps)
                    np.testing.assert_array_equal(pool._slots.emitted[s], q.emitted)
                    journal = pool._slots.journal.get(s)
                    # a step is journaled from its first emit on
                    want = None if q.journal is None else q.journal + (not q.whole)
                    assert (None if journal is None else len(journal)) == want

    return PoolMachine


def test_random_pool_schedules_match_numpy_convolve(backend: Executor) -> None:
    # JAX compiles every new array shape eagerly (seconds per call): a few short runs there
    jax = backend.name == "jax"
    run_state_machine_as_test(
        make_machine(backend),
        settings=settings(
            max_examples={"jax": 4, "array_api_strict": 40}.get(backend.name, 60),
            stateful_step_count=15 if jax else 50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
