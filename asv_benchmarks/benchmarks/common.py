"""Shared helpers: the parameters, backend loading, inputs, timed runs with a device sync.

The ``backend`` parameter lists only the backends that can run here: NumPy, and torch, JAX or
CuPy where their library is installed (CuPy also needs a CUDA device, which ``nvidia-smi -L``
must list). A missing library therefore adds no parameter, and asv reports nothing as skipped
for it. Environment variables:

``FUTUREFILL_BENCH_BACKENDS``
    Comma-separated backends to use instead (e.g. ``numpy,torch``). A backend named here that
    cannot run raises ``NotImplementedError`` from ``setup``, which asv shows as skipped (n/a).
``FUTUREFILL_BENCH_QUICK=1``
    One length (256) and one channel count (16) instead of two of each: what ``nox -s bench``
    uses with ``asv run --quick``.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import futurefill

#: The backends the suite knows, with the module each one needs.
ALL_BACKENDS = {"numpy": "numpy", "torch": "torch", "jax": "jax", "cupy": "cupy"}


def _has_cuda_device() -> bool:
    """Whether ``nvidia-smi -L`` lists a GPU. Asked in a subprocess: initialising CUDA in this
    process would break the benchmark processes that asv forks from it."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def available_backends() -> list[str]:
    """The backends whose library is installed (found, not imported) and, for CuPy, that have
    a CUDA device: the default ``backend`` parameter."""
    registered = set(futurefill.list_backends())
    found = [
        name
        for name, module in ALL_BACKENDS.items()
        if name in registered and importlib.util.find_spec(module) is not None
    ]
    if "cupy" in found and not _has_cuda_device():
        found.remove("cupy")
    return found


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


BACKENDS = _names(os.environ.get("FUTUREFILL_BENCH_BACKENDS", "")) or available_backends()
QUICK = os.environ.get("FUTUREFILL_BENCH_QUICK", "0") == "1"
SCHEDULES = list(futurefill.SCHEDULES)
FAST_SCHEDULES = [s for s in SCHEDULES if s != "naive"]
LENGTHS = [256] if QUICK else [256, 1024]
CHANNELS = [16] if QUICK else [16, 128]
DTYPE = "float32"  # the dtype every backend supports without flags (JAX defaults to it)
SEED = 20241003


def _preimport() -> None:
    """Import the backends' modules once, in asv's forkserver, so that each benchmark process
    (forked from it, see ``launch_method`` in asv.conf.json) does not pay for importing torch or
    jax again. Nothing is initialised: no device, no arrays. Failures are left to setup()."""
    from importlib import import_module
    from importlib.metadata import entry_points

    for ep in entry_points(group="futurefill.executors"):
        if ep.name in BACKENDS and ep.name != "numpy":
            with contextlib.suppress(Exception):  # reported as a skip by load_backend()
                import_module(ep.module)


if os.environ.get("FUTUREFILL_BENCH_PREIMPORT", "1") == "1":
    _preimport()


def load_backend(name: str) -> futurefill.executor.Executor:
    """The executor of ``name``; ``NotImplementedError`` (asv: skipped) if it cannot run here
    (only for a backend named in ``FUTUREFILL_BENCH_BACKENDS``: the default list has none)."""
    if name not in futurefill.list_backends():
        raise NotImplementedError(f"backend {name!r} is not installed")
    try:
        executor = futurefill.get_backend(name)
    except Exception as exc:  # missing library, no device, a plug-in that fails to load
        raise NotImplementedError(f"backend {name!r} unavailable: {exc}") from exc
    return executor


def filters(channels: int, taps: int) -> np.ndarray:
    """Seeded random filters with an exponential decay, ``(channels, taps)``."""
    rng = np.random.default_rng(SEED)
    envelope = np.exp(-np.arange(taps) / max(taps / 8, 1.0))
    return (rng.standard_normal((channels, taps)) * envelope).astype(DTYPE)


def inputs(channels: int, positions: int, batch: int = 1) -> np.ndarray:
    """Seeded random inputs ``(batch, channels, positions)``."""
    rng = np.random.default_rng(SEED + 1)
    return rng.standard_normal((batch, channels, positions)).astype(DTYPE)


class Stream:
    """An :class:`futurefill.OnlineConv` with its per-step inputs already on the backend."""

    def __init__(
        self,
        executor: futurefill.executor.Executor,
        schedule: str,
        length: int,
        channels: int,
        *,
        prompt: int = 0,
    ) -> None:
        self.executor = executor
        #: What the stream generates: ``(schedule, length, channels, prompt)``.
        self.spec = (schedule, length, channels, prompt)
        self.conv = futurefill.OnlineConv(
            filters(channels, prompt + length),
            length,
            schedule=schedule,
            prompt=prompt,
            dtype=DTYPE,
            backend=executor,
        )
        u = inputs(channels, prompt + length)
        dtype = self.conv.dtype
        self.prompt = executor.asarray(u[..., :prompt], dtype=dtype) if prompt else None
        self.steps = [
            executor.asarray(np.ascontiguousarray(u[..., prompt + t]), dtype=dtype)
            for t in range(length)
        ]
        self.u_full = executor.asarray(u, dtype=dtype)
        self.filters = executor.asarray(filters(channels, prompt + length), dtype=dtype)

    def generate(self) -> None:
        """Reset, prefill if planned, run every online step, wait for the device."""
        conv = self.conv
        conv.reset()
        if self.prompt is not None:
            conv.prefill(self.prompt)
        for u in self.steps:
            conv.step(u)
        self.executor.synchronize()

    def prefill(self) -> None:
        """Reset and consume the prompt, waiting for the device."""
        self.conv.reset()
        self.conv.prefill(self.prompt)
        self.executor.synchronize()

    def offline(self) -> None:
        """The floor: one FFT convolution of the whole, already known, input sequence."""
        futurefill.causal_conv(self.u_full, self.filters)
        self.executor.synchronize()


#: The clock the paired timings read (a test replaces it with a fake one).
clock: Callable[[], float] = time.perf_counter

#: Timed calls of each callable in :func:`paired_minima`.
PAIRED_RUNS = 15


def prepared_stream(backend: str, schedule: str, length: int, channels: int) -> Stream:
    """The stream every generation benchmark times (``Generation`` and both sides of
    ``Ratios``): ``length`` online steps of ``channels`` channels, batch 1, no prompt, already
    generated once so that compilation, FFT plans and caches are not timed."""
    stream = Stream(load_backend(backend), schedule, length, channels)
    stream.generate()
    return stream


def _timed(fn: Callable[[], Any]) -> float:
    """Wall time of one call, with the garbage collector off as in asv's ``time_`` samples."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        fn()
        return clock() - start
    finally:
        if enabled:
            gc.enable()


def paired_minima(
    first: Callable[[], Any], second: Callable[[], Any], runs: int = PAIRED_RUNS
) -> tuple[float, float]:
    """Smallest wall times of ``runs`` calls of ``first`` and of ``second``, called alternately.

    On a busy machine a call of a few milliseconds is often descheduled for a time slice
    (several milliseconds), so single calls, and medians of a few, of the same work differ by
    whole time slices. Other work only ever adds time, so the smallest of many calls is the
    time of the work itself; interleaving the two gives both the same chances. The callables
    must be warmed up already (:func:`prepared_stream`).
    """
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        times[0].append(_timed(first))
        times[1].append(_timed(second))
    return min(times[0]), min(times[1])
