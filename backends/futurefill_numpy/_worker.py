"""A background thread that runs FutureFill tasks earliest-deadline-first.

Tasks with slack (due steps after the step that made them ready, see the ``deadline``
schedule) are handed to it in pieces (channel groups). Its transforms run in ``scipy.fft``,
which releases the GIL, so the stepping thread goes on meanwhile. When a piece comes due
before the worker has started it (the worker busy with a larger one), the stepping thread
runs it itself instead of waiting behind the larger one; it waits only for a piece already
running.

Locks: ``_lock`` (this module's) guards every job's claim, outcome and done mark and the set
of running jobs; a worker's condition guards its queue and its stop flag; a
:class:`WorkerSlot`'s lock guards its worker, so that threads starting deferred work on one
executor at once start one worker.

Fork: a child process holds only the thread that forked. There a job that another thread was
running counts as not started (whoever finishes it runs it again, so the work must take
effect at most once however often it runs), the workers are retired (their queued jobs are run
by whoever finishes them) and each slot starts a new worker when it is next asked for one.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import os
import threading
import weakref
from collections.abc import Callable

__all__ = ["EarliestDeadlineWorker", "Job", "WorkerSlot"]

_lock = threading.Lock()


class Job:
    """A piece of work run exactly once, by the worker or by whoever needs it first."""

    __slots__ = ("_claimed", "_done", "_exception", "_work")

    def __init__(self, work: Callable[[], None]) -> None:
        self._work = work
        self._claimed = False
        self._done = threading.Event()
        self._exception: BaseException | None = None

    def run_if_unclaimed(self) -> bool:
        """Run the work here unless someone else took it; whether it ran here."""
        with _lock:
            if self._claimed:
                return False
            self._claimed = True
            _running.add(self)
        error: BaseException | None = None
        try:
            self._work()
        except BaseException as exc:  # delivered by finish()
            error = exc
        with _lock:
            self._exception = error
            self._work = _nothing  # drop the arrays it holds
            self._done.set()
            _running.discard(self)
        return True

    def done(self) -> bool:
        """Whether the work has finished (here or on the worker)."""
        return self._done.is_set()

    def finish(self) -> bool:
        """Make sure the work is done: run it here if nobody started it, else wait for it.

        Returns whether this call had to wait for the worker. Raises the work's exception.
        """
        waited = False
        if not self.run_if_unclaimed() and not self._done.is_set():
            self._done.wait()
            waited = True
        with _lock:
            error = self._exception
        if error is not None:
            raise error
        return waited

    def _unclaim(self) -> None:
        """Count as not started (in a child process, for a job another thread was running)."""
        self._claimed = False
        self._done = threading.Event()
        self._exception = None


def _nothing() -> None:
    return None


class EarliestDeadlineWorker:
    """One daemon thread running submitted jobs in order of their deadline (ties: in
    submission order); jobs somebody else already ran are skipped.

    It is stopped when the interpreter exits (after the job it is running): a daemon thread
    still inside a C++ FFT while Python shuts down would abort the process.
    """

    def __init__(self, name: str = "futurefill-deferred") -> None:
        self._heap: list[tuple[int, int, Job]] = []
        self._seq = itertools.count()
        self._ready = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        _workers.add(self)
        atexit.register(self.stop)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread once its current job is done; queued jobs are left to whoever
        finishes them (:meth:`Job.finish` runs them in the calling thread)."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join(timeout)

    def submit(self, deadline: int, work: Callable[[], None]) -> Job:
        """Queue ``work``; the earliest ``deadline`` runs first."""
        job = Job(work)
        with self._ready:
            heapq.heappush(self._heap, (deadline, next(self._seq), job))
            self._ready.notify()
        return job

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._heap and not self._stopping:
                    self._ready.wait()
                if self._stopping:
                    return
                job = heapq.heappop(self._heap)[2]
            job.run_if_unclaimed()

    def _retire(self) -> None:
        """Forget the queue and stop (in a child process, where the thread is gone)."""
        self._ready = threading.Condition()
        self._heap = []
        self._stopping = True


class WorkerSlot:
    """The worker of one executor, started by the first call of :meth:`get`.

    Parameters
    ----------
    name : str
        Name of the worker's thread.
    """

    def __init__(self, name: str = "futurefill-deferred") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._worker: EarliestDeadlineWorker | None = None
        _slots.add(self)

    def get(self) -> EarliestDeadlineWorker:
        """The worker, started here if there is none yet (one, whichever threads ask)."""
        with self._lock:
            if self._worker is None:
                self._worker = EarliestDeadlineWorker(self._name)
            return self._worker

    def _forget(self) -> None:
        """Start afresh (in a child process, whose copy of the lock may be held)."""
        self._lock = threading.Lock()
        self._worker = None


_running: set[Job] = set()
_workers: weakref.WeakSet[EarliestDeadlineWorker] = weakref.WeakSet()
_slots: weakref.WeakSet[WorkerSlot] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for job in _running:
        job._unclaim()
    _running.clear()
    for worker in list(_workers):
        worker._retire()
    for slot in list(_slots):
        slot._forget()
    _lock.release()


if hasattr(os, "register_at_fork"):  # no job is claimed or finished half-way across a fork
    os.register_at_fork(
        before=_lock.acquire, after_in_parent=_lock.release, after_in_child=_after_fork_in_child
    )
