"""A background thread that runs FutureFill tasks earliest-deadline-first.

Tasks with slack (due steps after the step that made them ready, see the ``deadline``
schedule) are handed to it in pieces (channel groups). Its transforms run in ``scipy.fft``,
which releases the GIL, so the stepping thread goes on meanwhile. When a piece comes due
before the worker has started it (the worker busy with a larger one), the stepping thread
runs it itself instead of waiting behind the larger one; it waits only for a piece already
running.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import threading
from collections.abc import Callable

__all__ = ["EarliestDeadlineWorker", "Job"]


class Job:
    """A piece of work run exactly once, by the worker or by whoever needs it first."""

    __slots__ = ("_claim", "_done", "_exception", "_work")

    def __init__(self, work: Callable[[], None]) -> None:
        self._work = work
        self._claim = threading.Lock()
        self._done = threading.Event()
        self._exception: BaseException | None = None

    def run_if_unclaimed(self) -> bool:
        """Run the work here unless someone else took it; whether it ran here."""
        if not self._claim.acquire(blocking=False):
            return False
        try:
            self._work()
        except BaseException as exc:  # delivered by finish()
            self._exception = exc
        finally:
            self._work = _nothing  # drop the arrays it holds
            self._done.set()
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
        if self._exception is not None:
            raise self._exception
        return waited


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
