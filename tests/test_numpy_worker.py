"""The NumPy executor's background worker: earliest deadline first, pieces taken over."""

from __future__ import annotations

import threading

import pytest

from futurefill_numpy._worker import EarliestDeadlineWorker, Job


def test_jobs_run_by_deadline_then_submission_order() -> None:
    worker = EarliestDeadlineWorker(name="test-worker")
    gate, order = threading.Event(), []
    blocker = worker.submit(0, gate.wait)  # keeps the worker busy while the others queue
    jobs = [
        worker.submit(deadline, lambda d=deadline, i=i: order.append((d, i)))
        for i, deadline in enumerate([5, 3, 9, 3, 1])
    ]
    finished = threading.Event()
    worker.submit(100, finished.set)
    gate.set()
    assert finished.wait(10)  # the worker ran everything (finish() would run jobs here)
    assert blocker.done() and all(job.done() for job in jobs)
    assert order == [(1, 4), (3, 1), (3, 3), (5, 0), (9, 2)]


def test_a_job_due_before_the_worker_starts_it_runs_where_it_is_needed() -> None:
    worker = EarliestDeadlineWorker(name="test-worker")
    gate = threading.Event()
    blocker = worker.submit(0, gate.wait)
    ran_on = []
    job = worker.submit(1, lambda: ran_on.append(threading.current_thread().name))
    assert job.finish() is False  # ran here: nothing to wait for
    assert ran_on == [threading.current_thread().name] and job.done()
    gate.set()
    assert blocker.finish() in (True, False)
    assert ran_on == [threading.current_thread().name]  # the worker skipped it


def test_a_job_runs_once_and_its_exception_is_delivered() -> None:
    calls = []

    def fail() -> None:
        calls.append(1)
        raise ValueError("boom")

    job = Job(fail)
    assert job.run_if_unclaimed() is True
    assert job.run_if_unclaimed() is False
    with pytest.raises(ValueError, match="boom"):
        job.finish()
    assert calls == [1]


def test_a_stopped_worker_leaves_its_queue_to_finish() -> None:
    worker = EarliestDeadlineWorker(name="test-worker")
    gate, started = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        gate.wait()

    blocker = worker.submit(0, block)
    ran = []
    queued = worker.submit(1, lambda: ran.append(1))
    assert started.wait(10)  # the worker is running the first job
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    gate.set()
    stopper.join(10)
    assert blocker.done() and not stopper.is_alive()
    queued.finish()  # still runs, here, exactly once
    assert ran == [1]
