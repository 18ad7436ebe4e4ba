"""The NumPy executor's deferred work (``deadline`` tasks on a worker thread): one worker per
executor whichever threads start it, ``later`` read under its lock, a fork while a piece runs,
and failures of pieces (raised where they are waited for, never added half-way)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback

import numpy as np
import pytest

import futurefill_numpy._deferred as deferred_work
from futurefill import OnlineConv, PlanSpec
from futurefill_numpy import NumpyExecutor, _worker
from futurefill_numpy._deferred import DeferredWork, _Piece

from .conftest import decaying_filters, oracle

#: ``scipy.fft``, which the pieces use (the tests below replace it by failing variants).
SCIPY_FFT = deferred_work._threaded_fft
pytestmark = pytest.mark.skipif(SCIPY_FFT is None, reason="no FFT that releases the GIL")

#: float64 FFT tiles of a few hundred positions: rounding some 1e-15 of the largest value, so
#: 1e-12 of it is far above the error and far below any missing or doubled contribution.
RTOL_OF_MAX = 1e-12


def _deadline(phi: np.ndarray, length: int, executor: NumpyExecutor, **kwargs) -> OnlineConv:
    spec = PlanSpec("deadline", direct_below=2, slack_from=4)
    return OnlineConv(phi, length, schedule=spec, backend=executor, **kwargs)


def _assert_exact(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL_OF_MAX * np.abs(want).max())


def _first_handover(conv: OnlineConv, u: np.ndarray) -> int:
    """Step until a task went to the worker; the number of steps taken."""
    t = 0
    while not conv.state.workspace.deferred.pending:
        conv.step(u[..., t].copy())
        t += 1
    return t


def _until(condition, timeout: float = 10.0) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds (a bound on a hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class _ForwardFFT:
    """``scipy.fft`` whose forward transform first calls ``before`` (on every thread)."""

    def __init__(self, before) -> None:
        self._before = before

    def rfft(self, *args, **kwargs):
        self._before()
        return SCIPY_FFT.rfft(*args, **kwargs)

    def irfft(self, *args, **kwargs):
        return SCIPY_FFT.irfft(*args, **kwargs)


# ---------------------------------------------------------------------- one worker
def test_threads_starting_deadline_streams_at_once_start_one_worker(rng, monkeypatch) -> None:
    """Two threads hand their first tasks to one executor (as the process's cached one is
    shared) at once: the first to start the worker holds the others off until it is there."""
    started: list[object] = []
    meet = threading.Barrier(2, timeout=1.0)

    class MeetingWorker(_worker.EarliestDeadlineWorker):
        def __init__(self, *args, **kwargs) -> None:
            started.append(self)
            # Two threads starting workers at once both get here; a lone one goes on after
            # the timeout (the other thread, if any, waits for this worker).
            with contextlib.suppress(threading.BrokenBarrierError):
                meet.wait()
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(_worker, "EarliestDeadlineWorker", MeetingWorker)
    C, L = 2, 120
    phi = decaying_filters(rng, C, L)
    u = rng.standard_normal((2, 1, C, L))
    executor = NumpyExecutor()
    streams = [_deadline(phi, L, executor) for _ in range(2)]
    got: list[np.ndarray | None] = [None, None]

    def run(i: int) -> None:
        got[i] = streams[i].run(u[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(started) == 1
    for i in range(2):
        _assert_exact(got[i], oracle(u[i], phi))


@pytest.mark.parametrize("read", ["join", "settle"])
def test_later_is_read_under_its_lock(read: str) -> None:
    """The stepping thread reads and clears the pieces' buffer only while holding its lock."""
    buffer = np.zeros((1, 2, 8))
    work = DeferredWork(buffer, np.ones(1, bool), np.zeros(1, np.int64), horizon=0)
    work.later[...] = 1.0
    acc = np.zeros((1, 2, 4))
    calls = {
        "join": lambda: work.join(acc, 2, 6),
        "settle": lambda: work.settle(buffer, 2, np.ones(2, bool)),
    }
    with work.lock:  # a piece adding
        thread = threading.Thread(target=calls[read])
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and not acc.any() and not buffer.any()
    thread.join(10)
    if read == "join":
        np.testing.assert_array_equal(acc, 1.0)
    else:
        np.testing.assert_array_equal(buffer[..., 2:], 1.0)
        assert not buffer[..., :2].any() and not work.later.any()


# ---------------------------------------------------------------------- fork
def _wait_for_child(pid: int, timeout: float) -> int | None:
    """The child's exit status, or ``None`` (the child killed) if it ran past ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.filterwarnings("ignore:.*fork:DeprecationWarning")  # a multi-threaded fork
def test_a_child_forked_while_a_piece_runs_finishes_its_copy(rng, monkeypatch) -> None:
    """The worker is inside a piece (held there by an event) when the process forks: the
    child, which has no worker thread, runs that piece itself and steps its copy of the stream
    to the end exactly; the parent goes on as if nothing happened."""
    parent = os.getpid()
    inside, gate = threading.Event(), threading.Event()

    def hold_the_worker() -> None:
        on_worker = threading.current_thread() is not threading.main_thread()
        if os.getpid() == parent and on_worker and not inside.is_set():
            inside.set()
            gate.wait()

    monkeypatch.setattr(deferred_work, "_threaded_fft", _ForwardFFT(hold_the_worker))
    monkeypatch.setattr(deferred_work, "_HORIZON_BLOCKS", 0)  # no piece taken over early
    B, C, L = 1, 3, 200
    phi = decaying_filters(rng, C, L)
    u = rng.standard_normal((B, C, L))
    want = oracle(u, phi)
    conv = _deadline(phi, L, NumpyExecutor(), batch=B)
    t = _first_handover(conv, u)
    assert inside.wait(10)  # the worker is running the first piece; no step waits for it yet
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 1
        try:
            ys = np.stack([conv.step(u[..., k].copy()) for k in range(t, L)], -1)
            conv.state_dict()  # settles: nothing left pending
            error = np.abs(ys - want[..., t:]).max()
            code = 0 if error <= RTOL_OF_MAX * np.abs(want).max() else 2
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    try:
        status = _wait_for_child(pid, timeout=60)
    finally:
        gate.set()
    assert status == 0, "the child hung" if status is None else f"the child exited {status}"
    ys = np.stack([conv.step(u[..., k].copy()) for k in range(t, L)], -1)
    _assert_exact(ys, want[..., t:])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.filterwarnings("ignore:.*fork:DeprecationWarning")  # a multi-threaded fork
def test_a_fork_waits_for_an_addition_in_progress() -> None:
    """A piece is adding into ``later`` (holding its lock) when the process forks: the fork
    waits for the addition, so the child's copy holds it whole."""
    work = DeferredWork(np.zeros((1, 1, 4)), np.ones(1, bool), np.zeros(1, np.int64), horizon=0)
    adding = threading.Event()

    def add_in_two_halves() -> None:
        with work.lock:
            adding.set()
            work.later[..., :2] += 1.0
            time.sleep(0.3)  # half-way when the fork is asked for
            work.later[..., 2:] += 1.0

    thread = threading.Thread(target=add_in_two_halves)
    thread.start()
    assert adding.wait(10)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if np.all(work.later == 1.0) else 3)
    thread.join(10)
    assert _wait_for_child(pid, timeout=60) == 0


# ---------------------------------------------------------------------- failures
class _FailingFFT:
    """Forward transforms as in SciPy; the inverse raises (a piece failing half-way)."""

    def rfft(self, *args, **kwargs):
        return SCIPY_FFT.rfft(*args, **kwargs)

    def irfft(self, *args, **kwargs):
        raise FloatingPointError("broken inverse FFT")


class _WorkerOnlyFailure(_FailingFFT):
    """The inverse fails on any thread but the main (stepping) one."""

    def irfft(self, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            raise FloatingPointError("inverse FFT failed on the worker")
        return SCIPY_FFT.irfft(*args, **kwargs)


class _WrongShapeFFT(_FailingFFT):
    """An inverse that returns one row for every channel (broadcastable, and wrong)."""

    def irfft(self, x, n, axis=-1):
        return np.ones((*x.shape[:-2], 1, n))


def _piece(rng) -> _Piece:
    block = rng.standard_normal((1, 2, 8))
    spectrum = np.fft.rfft(rng.standard_normal((2, 8)), 16, axis=-1)
    return _Piece(block, spectrum, 16, 0, np.full((1, 2, 8), 0.5), threading.Lock())


@pytest.mark.parametrize(
    ("fft", "error", "match"),
    [(_FailingFFT, FloatingPointError, "broken"), (_WrongShapeFFT, ValueError, "shape")],
)
def test_a_failing_piece_adds_nothing(rng, monkeypatch, fft, error, match) -> None:
    piece = _piece(rng)
    monkeypatch.setattr(deferred_work, "_threaded_fft", fft())
    with pytest.raises(error, match=match):
        piece()
    np.testing.assert_array_equal(piece.out, 0.5)  # untouched
    monkeypatch.setattr(deferred_work, "_threaded_fft", SCIPY_FFT)
    piece()  # a piece that failed may run again: it adds once
    piece()  # ... and only once
    z = np.fft.irfft(np.fft.rfft(piece.block, 16, axis=-1) * piece.spectrum, 16, axis=-1)
    np.testing.assert_allclose(piece.out, 0.5 + z[..., :8], rtol=0, atol=1e-14)


def test_a_failure_on_the_worker_is_raised_by_the_call_that_waits(rng, monkeypatch) -> None:
    """Pieces fail on the worker thread only; the stepping thread learns it at the next call
    that waits for them (here the settling of a snapshot), once, with the rest finished; the
    stream is then poisoned (its state is unknown) until reset or load_state_dict."""
    monkeypatch.setattr(deferred_work, "_threaded_fft", _WorkerOnlyFailure())
    monkeypatch.setattr(deferred_work, "_HORIZON_BLOCKS", 0)  # no piece taken over early
    C, L = 3, 120
    phi = decaying_filters(rng, C, L)
    u = rng.standard_normal((1, C, L))
    conv = _deadline(phi, L, NumpyExecutor())
    _first_handover(conv, u)
    deferred = conv.state.workspace.deferred
    jobs = [job for _, _, job, _ in deferred.pending]
    assert _until(lambda: all(job.done() for job in jobs))  # the worker ran (and failed) them
    with pytest.raises(FloatingPointError, match="worker"):
        conv.state_dict()
    assert not deferred.pending and not deferred.later.any()  # nothing half-added
    with pytest.raises(RuntimeError, match="poisoned"):  # the core refuses the unknown state
        conv.state_dict()
    conv.reset()
    assert not deferred.pending and conv.position == 0


def test_every_failure_in_a_wait_is_counted(monkeypatch) -> None:
    """A wait finishes every piece it took before raising; the failures after the first are
    named in a note (Python 3.11+), not dropped without a word."""
    buffer = np.zeros((1, 1, 4))
    work = DeferredWork(buffer, np.ones(1, bool), np.zeros(1, np.int64), horizon=0)
    ran: list[int] = []

    def fail(i: int) -> None:
        ran.append(i)
        raise ArithmeticError(f"piece {i}")

    worker = _worker.EarliestDeadlineWorker(name="test-deferred")
    worker.stop()  # queued jobs run where they are finished
    for i in range(3):
        work.pending.append((i, i, worker.submit(i, lambda i=i: fail(i)), True))
    with pytest.raises(ArithmeticError, match="piece 0") as raised:
        work.finish_before(None)
    assert ran == [0, 1, 2] and not work.pending
    if hasattr(raised.value, "add_note"):
        assert raised.value.__notes__ == ["2 more deferred pieces failed in the same wait"]
