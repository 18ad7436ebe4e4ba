"""Deferred work of one NumPy state: the FutureFill tasks with slack, run on a worker thread.

In the ``deadline`` schedule a task whose first output is due steps after the step that made
it ready goes to the executor's worker (:mod:`._worker`) in pieces of a few channels. The
pieces add into ``later``, a buffer of their own (so that they never add into the values the
stepping thread's kernels touch), which joins the block accumulators when the window block
holding their first output starts: the stepping thread runs the pieces the worker has not
started yet itself and waits for those it is running. So that this work does not pile up at
a deadline when the worker falls behind, the stepping thread also runs one small queued piece
per step once it is due within ``horizon`` slots. What makes this exact:

1. Inputs are written once. A piece reads the input slots ``[a, b)`` of the state's buffer
   through views, without a copy. Each of those slots took its input before the task became
   ready, and afterwards the stepping thread writes only slots after them (the inputs of
   later steps, the outputs of tasks, which lie after their sources); the buffer is rewritten
   as a whole only by ``settle``, ``clear`` and restores, which finish every piece first.
2. Targets lie no earlier than the due slot. A piece adds only into ``later[..., c:d]``,
   ``c`` being its due slot (the task's first output), and the stepping thread reads
   ``later[..., :stop]`` only after finishing every piece due before ``stop``.
3. ``DeferredWork.lock`` guards ``later`` and each piece's ``added`` mark: pieces add under it
   (the worker and a stepping thread that took a piece over may add tiles with overlapping
   targets at once, and NumPy lets go of the GIL inside a large addition), and the stepping
   thread reads and clears ``later`` under it. The transforms run outside it. A piece adds
   whole or not at all: its contribution is computed and checked before it takes the lock,
   then added in one NumPy call, marked ``added`` in the same hold of the lock (and a piece
   already added adds nothing if it is run again, as a child process does, see below).
4. ``pending`` and the counters belong to the stepping thread (the state's owner); the worker
   sees only its jobs. ``pending`` holds ``(due slot, order, job, small)`` sorted by due slot
   (ties: in order of submission); ``small`` pieces (at most ``_PIECE_WORK``) are those the
   stepping thread may take over early.
5. A piece's failure is kept by its job and raised by the next call that finishes it (a step
   that collects it, the wait at its deadline, ``settle``); a wait finishes every piece it
   takes off ``pending`` before it raises, so that none of them writes ``later`` afterwards.
6. Across ``os.fork`` the parent holds every live state's lock, so a child never sees a piece
   half-added; there a piece another thread was running runs again where it is needed.
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
import time
import weakref

import numpy as np

from futurefill.executor import ConvState
from futurefill.plan import Plan, TaskOffsets

from ._worker import EarliestDeadlineWorker, Job

try:  # scipy.fft releases the GIL (numpy.fft does not): tasks can run beside the steps
    import scipy.fft as _threaded_fft
except ImportError:  # pragma: no cover - a dependency; without it, tasks run in the step
    _threaded_fft = None

__all__ = ["DeferredWork"]

#: Work of one piece of a deferred task (FFT size x log2 of it x rows): some tens of
#: microseconds, so that the stepping thread can take one over without a visible stall
#: (a single row of a larger FFT is one piece too, left to the worker).
_PIECE_WORK = 1 << 19
#: The stepping thread takes over queued pieces due within this many window lengths.
_HORIZON_BLOCKS = 2


class DeferredWork:
    """The tasks of one state that run on the worker thread (those due after the next step).

    Parameters
    ----------
    buffer : ndarray
        The state's buffer (``later`` has its shape and dtype).
    defer : ndarray of bool
        Per task of the plan, whether it runs here.
    due : ndarray of int
        Per task, the slot of its first output.
    horizon : int
        The stepping thread takes over small pieces due within this many slots.

    Attributes
    ----------
    waits, wait_seconds, helped : int, float, int
        The waits for the worker, the time spent finishing pieces at their deadline and the
        pieces the stepping thread ran early.
    """

    def __init__(self, buffer: np.ndarray, defer: np.ndarray, due: np.ndarray, horizon: int):
        self.later = np.zeros_like(buffer)
        self.defer = defer
        self.due = due
        self.horizon = horizon
        self.pending: list[tuple[int, int, Job, bool]] = []
        self.lock = threading.Lock()
        self.waits = 0
        self.wait_seconds = 0.0
        self.helped = 0
        self._order = itertools.count()
        _live.add(self)

    @classmethod
    def for_plan(cls, plan: Plan, buffer: np.ndarray) -> DeferredWork | None:
        """The deferred work of a state of ``plan``; ``None`` where no task has slack (or no
        FFT lets go of the GIL)."""
        if _threaded_fft is None:
            return None
        due = plan.dst_start.astype(np.int64) - plan.origin  # slot of the first output
        defer = due > plan.after_step.astype(np.int64) + 1 + plan.prompt - plan.origin
        if not defer.any():
            return None
        return cls(buffer, defer, due, _HORIZON_BLOCKS * plan.window_length)

    def hand_over(
        self, worker: EarliestDeadlineWorker, task: int, offsets: TaskOffsets, state: ConvState
    ) -> None:
        """Queue task ``task`` (``offsets`` of ``state``'s plan) on ``worker``, in pieces."""
        a, b, c, d, r, n, key = offsets
        buf, spectrum = state.buffer, state.spectra[key]
        due = int(self.due[task])
        row_work = n * n.bit_length() * buf.shape[0]
        rows = max(1, _PIECE_WORK // row_work)
        for lo in range(0, buf.shape[1], rows):
            ch = slice(lo, lo + rows)
            piece = _Piece(buf[:, ch, a:b], spectrum[ch], n, r, self.later[:, ch, c:d], self.lock)
            job = worker.submit(due, piece)
            bisect.insort(self.pending, (due, next(self._order), job, row_work <= _PIECE_WORK))

    def take_one(self, slot: int) -> None:
        """Collect the finished pieces at the head (raising a failure) and run the first
        queued small piece due within the horizon of ``slot`` here (one per step)."""
        pending = self.pending
        while pending and pending[0][2].done():  # finished: nothing to wait for
            pending.pop(0)[2].finish()  # delivers the work's exception, if any
        limit = slot + self.horizon
        for due, _, job, small in pending:
            if due >= limit:
                return
            if small and job.run_if_unclaimed():
                self.helped += 1
                return

    def finish_before(self, before: int | None) -> None:
        """Finish the pending pieces whose first output slot is below ``before`` (all: None);
        raise the first failure among them once every one is finished."""
        if not self.pending:
            return
        cut = len(self.pending) if before is None else bisect.bisect_left(self.pending, (before,))
        now, self.pending = self.pending[:cut], self.pending[cut:]
        start = time.perf_counter()
        late = False
        errors: list[BaseException] = []
        for _, _, job, _ in now:  # every one finished, even after a failure: none writes later
            late = late or not job.done()
            try:
                self.waits += job.finish()
            except BaseException as exc:  # the work's failure, delivered here
                errors.append(exc)
        if late:
            self.wait_seconds += time.perf_counter() - start
        if errors:
            _raise_first(errors)

    def join(self, acc: np.ndarray, slot: int, stop: int) -> None:
        """Add what the pieces computed for slots ``[slot, stop)`` into ``acc`` (the block
        accumulators of those slots), once every piece due before ``stop`` is finished."""
        self.finish_before(stop)
        with self.lock:
            acc += self.later[..., slot:stop]

    def settle(self, buffer: np.ndarray, slot: int | None, waiting: np.ndarray) -> None:
        """Finish every piece and move ``later`` into ``buffer``: its slots after ``slot``
        and, at ``slot``, those of the ``waiting`` channels (whose slot still holds their
        future); nothing where ``slot`` is ``None`` (the stream is done)."""
        self.finish_before(None)
        with self.lock:
            later = self.later
            if slot is not None:
                buffer[:, waiting, slot] += later[:, waiting, slot]
                buffer[..., slot + 1 :] += later[..., slot + 1 :]
            later[...] = 0


def _raise_first(errors: list[BaseException]) -> None:
    """Raise the first failure, noting how many other pieces failed too."""
    error = errors[0]
    if len(errors) > 1 and hasattr(error, "add_note"):  # Python 3.11+
        error.add_note(f"{len(errors) - 1} more deferred pieces failed in the same wait")
    raise error


class _Piece:
    """One piece (some channels) of a deferred task, run by the worker thread (or by the
    stepping thread): the block's contribution added into the worker's own buffer ``out``,
    under ``lock`` (the transforms run outside it), at most once."""

    __slots__ = ("added", "block", "lock", "n", "out", "read_start", "spectrum")

    def __init__(
        self,
        block: np.ndarray,
        spectrum: np.ndarray,
        n: int,
        read_start: int,
        out: np.ndarray,
        lock: threading.Lock,
    ) -> None:
        self.block, self.spectrum, self.n, self.read_start = block, spectrum, n, read_start
        self.out, self.lock = out, lock
        self.added = False

    def __call__(self) -> None:
        fft = _threaded_fft
        z = fft.irfft(fft.rfft(self.block, self.n, axis=-1) * self.spectrum, self.n, axis=-1)
        out = self.out
        part = z[..., self.read_start : self.read_start + out.shape[-1]]
        if part.shape != out.shape or not np.can_cast(part.dtype, out.dtype, "same_kind"):
            raise ValueError(
                f"a deferred piece computed {part.dtype} values of shape {part.shape} for "
                f"{out.dtype} targets of shape {out.shape}"
            )
        with self.lock:
            if not self.added:
                self.added = True  # checked above: the addition below cannot stop half-way
                np.add(out, part, out=out)


_live: weakref.WeakSet[DeferredWork] = weakref.WeakSet()
_held: list[threading.Lock] = []


def _hold_every_lock() -> None:
    for work in list(_live):
        work.lock.acquire()
        _held.append(work.lock)


def _release_every_lock() -> None:
    while _held:
        _held.pop().release()


if hasattr(os, "register_at_fork"):  # no piece is half-added across a fork
    os.register_at_fork(
        before=_hold_every_lock,
        after_in_parent=_release_every_lock,
        after_in_child=_release_every_lock,
    )
