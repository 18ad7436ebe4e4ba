"""Shared fixtures: one ``backend`` fixture parametrized over every backend that can run here.

``FUTUREFILL_TEST_BACKENDS`` (comma-separated) restricts the backends, as each run of
``nox -s tests`` does; by default every known backend is tried. Besides the registered
backends there are executor variants: ``torch_cuda`` and ``torch_cuda_graphs`` (the torch
executor on a CUDA device, without and with CUDA graphs) and ``cupy_standin`` (the CuPy
executor over a NumPy-backed stand-in for ``cupy``, so that its logic runs in CI without a
GPU; see ``cupy_standin.py``). The tests of a variant that cannot run here (no CUDA device, a
library not installed) are deselected with one summary line per reason, as are the tests of
a backend's own modules when it is not selected, and, with ``FUTUREFILL_TEST_SHARED=0``, the
backend-independent tests (another run takes them): see ``selection.py``.

Hypothesis profiles: ``ci`` (loaded by default; ``FUTUREFILL_HYPOTHESIS_PROFILE`` or
``pytest --hypothesis-profile`` choose another), ``deep`` (``nox -s tests_deep``) and
``mutation`` (``nox -s mutation``). Tests size their examples with :func:`examples`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

# JAX silently computes float64 in float32 unless x64 is enabled before it is imported.
os.environ.setdefault("JAX_ENABLE_X64", "1")

import numpy as np
import pytest
from hypothesis import Phase, settings

import futurefill
from futurefill.executor import Executor

from .process_memory import give_back_freed_memory, resident_bytes
from .selection import VARIANTS, mark_slow_on, selected_backends, unavailable, why_deselected

__all__ = ["decaying_filters", "examples", "oracle", "run_online", "selected_backends"]

#: Examples a test asks for (``examples(n)``) are scaled by the profile's ``max_examples``
#: over Hypothesis's default 100: ci a third, deep five times, mutation as asked.
settings.register_profile("ci", max_examples=33, deadline=None)
settings.register_profile("deep", max_examples=500, deadline=None)
# ``pytest --hypothesis-profile=mutation`` (``nox -s mutation``): a failing example is
# reported as found, not shrunk (shrinking can outlast the time a mutant is given), the same
# examples every run, and no example database shared between mutants.
settings.register_profile(
    "mutation", phases=[Phase.explicit, Phase.generate], derandomize=True, database=None
)
settings.load_profile(os.environ.get("FUTUREFILL_HYPOTHESIS_PROFILE", "ci"))


def examples(n: int) -> int:
    """``n`` examples (the count at Hypothesis's default 100) scaled to the loaded profile;
    at least 5."""
    return max(5, n * settings().max_examples // 100)


def _variant(name: str) -> Executor:
    if name == "cupy_standin":
        from . import cupy_standin

        with cupy_standin.installed():
            from futurefill_cupy import CupyExecutor

            return CupyExecutor()
    from futurefill_torch import TorchExecutor

    return TorchExecutor(device="cuda", cuda_graphs=name == "torch_cuda_graphs")


def load_backend(name: str) -> Executor:
    """The executor for ``name``, or skip the test saying why it cannot run here."""
    reason = unavailable(name)
    if reason is not None:
        pytest.skip(f"{name}: {reason}")
    return _variant(name) if name in VARIANTS else futurefill.get_backend(name)


_NOT_RUN = pytest.StashKey[dict[str, int]]()


@pytest.hookimpl(tryfirst=True)  # before ``-m`` reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` the tests marked ``slow_on`` their backend; deselect what this run does
    not take (see ``selection.py``): one summary line per reason, not a skip line per test."""
    mark_slow_on(items)
    selected = set(selected_backends())
    not_run: dict[str, int] = {}
    keep, drop = [], []
    for item in items:
        reason = why_deselected(item, selected)
        if reason is None:
            keep.append(item)
        else:
            not_run[reason] = not_run.get(reason, 0) + 1
            drop.append(item)
    config.stash[_NOT_RUN] = not_run
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if config.stash.get(_NOT_RUN, None) is None:  # the controller of ``pytest -n``
        reasons = {
            f"{b}: {unavailable(b)}": 0 for b in selected_backends() if unavailable(b) is not None
        }
    else:
        reasons = config.stash[_NOT_RUN]
    for reason, n in reasons.items():
        count = f"{n} tests" if n else "tests"
        terminalreporter.write_line(f"deselected: {count} of {reason}")


@pytest.fixture(params=selected_backends(), scope="session")
def backend(request: pytest.FixtureRequest) -> Executor:
    return load_backend(request.param)


#: Compiled JAX programs are kept across tests (a later test with the same plan, shapes and
#: feedback reuses them) until the process holds this much memory: then they are dropped.
JAX_PROGRAMS_BUDGET = 1024 * 2**20


@pytest.fixture(autouse=True)
def _bounded_jax_programs() -> Iterator[None]:
    yield
    jax = sys.modules.get("jax")
    if jax is not None and resident_bytes() > JAX_PROGRAMS_BUDGET:
        jax.clear_caches()
        give_back_freed_memory()


@pytest.fixture(autouse=True, scope="session")
def _no_user_tuning(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point the tuning cache at an empty folder: tests never read the developer's tuning
    (``futurefill tune``), so the defaults they check are the shipped ones."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.pop("FUTUREFILL_NO_TUNING", None)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20241003)


def decaying_filters(
    rng: np.random.Generator, channels: int, taps: int, scale: float = 50.0
) -> np.ndarray:
    """:func:`futurefill.decaying_random_filters` seeded from ``rng`` (float64, NumPy)."""
    seed = int(rng.integers(2**63))
    return futurefill.decaying_random_filters(channels, taps, seed=seed, decay=scale)


def oracle(u: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Causal convolution by ``numpy.convolve`` per (batch, channel): the independent oracle."""
    B, C, T = u.shape
    out = np.empty((B, C, T))
    for b in range(B):
        for c in range(C):
            out[b, c] = np.convolve(u[b, c].astype(np.float64), filters[c].astype(np.float64))[:T]
    return out


def run_online(conv: futurefill.OnlineConv, u: np.ndarray) -> np.ndarray:
    """Feed host inputs ``(B, C, P + L)`` through prefill and steps; return host outputs."""
    ex = conv.backend
    P = conv.plan.prompt
    dtype = conv.dtype
    parts = []
    if P:
        parts.append(ex.to_numpy(conv.prefill(ex.asarray(u[..., :P], dtype=dtype))))
    for t in range(conv.plan.length):
        y = conv.step(ex.asarray(np.ascontiguousarray(u[..., P + t]), dtype=dtype))
        parts.append(ex.to_numpy(y)[..., None])
    return np.concatenate(parts, axis=-1)
