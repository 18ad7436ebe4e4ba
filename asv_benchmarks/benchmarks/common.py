"""Shared helpers: backend loading (skip when unavailable), inputs, timed runs with a device sync.

A benchmark whose backend is not installed, or cannot run here (CuPy without a CUDA device),
raises ``NotImplementedError`` from ``setup``; asv records it as skipped (``n/a``).

``FUTUREFILL_BENCH_BACKENDS`` (comma-separated) narrows the backend parameter, e.g. to
``numpy`` for a fast local run.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import futurefill

ALL_BACKENDS = ("numpy", "torch", "jax", "cupy")
BACKENDS = [
    b.strip()
    for b in os.environ.get("FUTUREFILL_BENCH_BACKENDS", ",".join(ALL_BACKENDS)).split(",")
    if b.strip()
]
SCHEDULES = list(futurefill.SCHEDULES)
FAST_SCHEDULES = [s for s in SCHEDULES if s != "naive"]
LENGTHS = [256, 1024]
CHANNELS = [16, 128]
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


def load_backend(name: str) -> futurefill.Executor:
    """The executor of ``name``; ``NotImplementedError`` (asv: skipped) if it cannot run here."""
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
        executor: futurefill.Executor,
        schedule: str,
        length: int,
        channels: int,
        *,
        prompt: int = 0,
    ) -> None:
        self.executor = executor
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


def best_time(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Smallest wall-clock time of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
