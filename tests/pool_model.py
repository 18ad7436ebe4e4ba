"""The oracle of the stream-pool state machine (``test_pool_machine.py``) and its checks.

A :class:`Seq` is one sequence as the oracle sees it -- its inputs on the host, prompt first,
and the cursor the pool should report; :func:`snapshot` is everything a refused call must
leave as it was; :func:`pool_bad_calls` lists the calls that must be refused in the current
state, with the error each must raise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np

from futurefill import StreamPool

# a pool's plan covers 12 steps: slots asked for more (or open-ended) run in segments
C, L, TAPS = 3, 12, 32
ALL = slice(0, C)
#: A call that must be refused: the error it raises, and the call.
Bad = tuple[type[Exception], Callable[[], Any]]
Check = Callable[["Seq"], bool]


@dataclasses.dataclass
class Seq:
    """One sequence as the oracle sees it: its inputs on the host (prompt first)."""

    wanted: int | None  # the length asked for at admission; None: open-ended
    u: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((C, TAPS)))
    given: int = 0  # prompt inputs (every channel the same: prefill gives all channels)
    pending: bool = False  # the pool holds prompt inputs not yet folded into the buffer
    folded: bool = False  # the slot began a step: its prompt is closed
    steps: int = 0
    emitted: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(C, bool))
    mark: int | None = None  # steps at mark()

    @property
    def limit(self) -> int:
        """Steps the sequence may take after its prompt."""
        return self.wanted or TAPS - self.given

    def room(self, prompt: int) -> bool:
        """Whether a prompt of ``prompt`` inputs leaves the steps asked for (or one)."""
        return prompt + (self.wanted or 1) <= TAPS

    @property
    def position(self) -> int:
        return self.given + self.steps

    @property
    def whole(self) -> bool:
        """Not inside a step (no channel emitted and not advanced)."""
        return not self.emitted.any()

    @property
    def can_step(self) -> bool:
        return self.steps < self.limit

    @property
    def journal(self) -> int | None:
        return None if self.mark is None else self.steps - self.mark

    def copy(self) -> Seq:
        return dataclasses.replace(self, u=self.u.copy(), emitted=self.emitted.copy())

    def rewind(self, k: int) -> None:
        """The oracle of ``rewind(k)``: the last ``k`` inputs dropped."""
        self.steps -= k
        self.u[:, self.position :] = 0

    def begin(self) -> int:
        """The pool folds the prompt when a step begins; the position of that step."""
        self.folded, self.pending = True, False
        return self.position


def any_seq(q: Seq) -> bool:
    return True


def steppable(q: Seq) -> bool:
    return q.whole and q.can_step


def all_emitted(q: Seq) -> bool:
    return bool(q.emitted.all())


def rewindable(q: Seq) -> bool:
    return q.whole and q.journal is not None


def missing(emitted: np.ndarray) -> list[slice]:
    """The contiguous ranges of channels not emitted."""
    edges = np.flatnonzero(np.diff(np.r_[False, ~emitted, False]))
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def having(ok: Check) -> Callable[[Any], bool]:
    """Precondition: a slot of either pool has a sequence that is ``ok``."""
    return lambda m: any(ok(q) for seqs in getattr(m, "seqs", ()) for q in seqs.values())


def zeros(*shape: int) -> np.ndarray:
    """Host zeros (the pool converts them), for calls refused before they are read."""
    return np.zeros(shape)


def nans(*shape: int) -> np.ndarray:
    return np.full(shape, np.nan)


def snapshot(pool: StreamPool) -> dict[str, Any]:
    """Everything a refused call must leave as it was."""
    ex = pool.backend
    snap: dict[str, Any] = {
        "active": pool.active_slots,
        "buffer": np.asarray(ex.to_numpy(pool._state.buffer)).copy(),
        "emitted": pool._slots.emitted.copy(),
        "journals": {row: len(j) for row, j in pool._slots.journal.items()},
        "poisoned": dict(pool._slots.poisoned),
    }
    for s in pool.active_slots:
        snap[f"cursor {s}"] = (pool.position(s), pool.steps(s), pool.remaining(s))
        if not pool._slots.emitted[s].any():
            snap[f"slot {s}"] = pool.state_dict(s)
    return snap


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """``a`` and ``b`` equal exactly (dicts of arrays and plain values)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert (a.shape, a.dtype) == (b.shape, b.dtype), where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where


def slot_bad_calls(pool: StreamPool, s: int, q: Seq) -> Iterator[tuple[str, Bad]]:
    """The calls on slot ``s`` (sequence ``q``) that must be refused in its current state."""
    if q.whole and q.can_step:
        yield "step: u columns", (ValueError, partial(pool.step, [s], zeros(1, C + 1)))
        yield "step: u rows", (ValueError, partial(pool.step, [s], zeros(2, C)))
        yield "step: twice", (ValueError, partial(pool.step, [s, s], zeros(2, C)))
        yield "step: complex", (TypeError, partial(pool.step, [s], np.ones((1, C), complex)))
        yield "emit: u columns", (ValueError, partial(pool.emit, [s], zeros(1, 2)))
        yield "emit: empty", (ValueError, partial(pool.emit, [s], zeros(1, 0), slice(2, 0)))
        yield "emit: int channel", (TypeError, partial(pool.emit, [s], zeros(1, 1), 1))
        yield "advance: not emitted", (RuntimeError, partial(pool.advance, [s]))
    if not q.can_step:
        yield "step: past its length", (RuntimeError, partial(pool.step, [s], zeros(1, C)))
        yield "emit: past its length", (RuntimeError, partial(pool.emit, [s], zeros(1, C)))
    if not q.whole:
        c = int(np.flatnonzero(q.emitted)[0])
        again = slice(c, c + 1)
        yield "emit: again", (RuntimeError, partial(pool.emit, [s], zeros(1, 1), again))
        yield "step: inside a step", (RuntimeError, partial(pool.step, [s], zeros(1, C)))
        for method in (pool.state_dict, pool.mark, pool.commit, pool.fork):
            yield f"{method.__name__}: inside a step", (RuntimeError, partial(method, s))
        if not q.emitted.all():
            yield "advance: half emitted", (RuntimeError, partial(pool.advance, [s]))
    if q.folded and (q.steps or not q.whole):
        yield "prefill: closed", (RuntimeError, partial(pool.prefill, s, zeros(C, 1)))
    if not q.folded:
        yield "prefill: shape", (ValueError, partial(pool.prefill, s, zeros(C + 1, 1)))
        yield "prefill: NaN", (ValueError, partial(pool.prefill, s, nans(C, 1)))
    if q.whole and q.journal is not None:
        yield "rewind: k=1.0", (TypeError, partial(pool.rewind, s, 1.0))


def pool_bad_calls(pool: StreamPool, seqs: dict[int, Seq]) -> dict[str, Bad]:
    """Every call on ``pool`` (its sequences ``seqs``) that must be refused now, by name."""
    calls: dict[str, Bad] = {}
    free = [s for s in range(pool.capacity) if s not in seqs]
    for s in [*free[:1], pool.capacity, -1]:  # slots not in use
        calls[f"step unknown {s}"] = ValueError, partial(pool.step, [s], zeros(1, C))
        calls[f"prefill unknown {s}"] = ValueError, partial(pool.prefill, s, zeros(C, 1))
        for method in (pool.fork, pool.state_dict, pool.release, pool.mark):
            calls[f"{method.__name__} unknown {s}"] = ValueError, partial(method, s)
        calls[f"rewind unknown {s}"] = ValueError, partial(pool.rewind, s, 0)
    # not slots at all (release left out: KNOWN BUG test_release_refuses_what_is_not_a_slot)
    for bad in (str(pool.capacity), 0.0, True):
        calls[f"step slot {bad!r}"] = TypeError, partial(pool.step, [bad], zeros(1, C))
        calls[f"fork slot {bad!r}"] = TypeError, partial(pool.fork, bad)
    for n in (0, TAPS + 1):
        calls[f"admit length {n}"] = ValueError, partial(pool.admit, length=n)
    calls["admit prompt shape"] = ValueError, partial(pool.admit, zeros(C + 1, 2))
    calls["admit NaN prompt"] = ValueError, partial(pool.admit, nans(C, 2))
    calls["step no slots"] = ValueError, partial(pool.step, [], zeros(0, C))
    if not free:
        calls["admit full"] = RuntimeError, pool.admit
    for s, q in sorted(seqs.items()):
        calls.update({f"{name} {s}": bad for name, bad in slot_bad_calls(pool, s, q)})
    return calls
