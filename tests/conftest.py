"""Shared fixtures: one ``backend`` fixture parametrized over every backend that can run here.

``FUTUREFILL_TEST_BACKENDS`` (comma-separated) restricts the backends, as each nox session does;
by default every known backend is tried and the unavailable ones are skipped with the reason.
Besides the registered backends there are executor variants: ``torch_cuda`` and
``torch_cuda_graphs`` (the torch executor on a CUDA device, without and with CUDA graphs) and
``cupy_standin`` (the CuPy executor over a NumPy-backed stand-in for ``cupy``, so that its
logic runs in CI without a GPU; see ``cupy_standin.py``).
"""

from __future__ import annotations

import os

# JAX silently computes float64 in float32 unless x64 is enabled before it is imported.
os.environ.setdefault("JAX_ENABLE_X64", "1")

import numpy as np
import pytest
from hypothesis import Phase, settings

import futurefill
from futurefill.executor import Executor

# ``pytest --hypothesis-profile=mutation`` (``nox -s mutation``): a failing example is
# reported as found, not shrunk (shrinking can outlast the time a mutant is given), the same
# examples every run, and no example database shared between mutants.
settings.register_profile(
    "mutation", phases=[Phase.explicit, Phase.generate], derandomize=True, database=None
)

KNOWN_BACKENDS = (
    "numpy",
    "cupy_standin",
    "array_api_strict",
    "torch",
    "torch_cuda",
    "torch_cuda_graphs",
    "jax",
    "cupy",
)


def selected_backends() -> list[str]:
    chosen = os.environ.get("FUTUREFILL_TEST_BACKENDS")
    return [b.strip() for b in chosen.split(",") if b.strip()] if chosen else list(KNOWN_BACKENDS)


def _variant(name: str) -> Executor:
    if name == "cupy_standin":
        from . import cupy_standin

        with cupy_standin.installed():
            from futurefill_cupy import CupyExecutor

            return CupyExecutor()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda.is_available() is False: no CUDA device")
    from futurefill_torch import TorchExecutor

    return TorchExecutor(device="cuda", cuda_graphs=name == "torch_cuda_graphs")


def load_backend(name: str) -> Executor:
    """The executor for ``name``, or skip the test saying why it cannot run here."""
    if name in ("cupy_standin", "torch_cuda", "torch_cuda_graphs"):
        return _variant(name)
    if name not in futurefill.list_backends():
        pytest.skip(f"backend {name!r} is not installed")
    try:
        return futurefill.get_backend(name)
    except ImportError as exc:
        pytest.skip(f"backend {name!r} unavailable: {exc}")
    except RuntimeError as exc:  # e.g. no CUDA device for cupy
        pytest.skip(f"backend {name!r} unavailable: {exc}")


@pytest.fixture(params=selected_backends(), scope="session")
def backend(request: pytest.FixtureRequest) -> Executor:
    return load_backend(request.param)


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
