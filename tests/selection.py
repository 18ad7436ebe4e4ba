"""Which tests a run takes: the backends it selects, the variants that cannot run here, and
the backend-independent tests (see ``conftest.py`` for the environment variables).

Every test belongs to at most one backend: the ``backend`` fixture's parameter, or for a
test that takes no such fixture the backend its module is about, read from the module's name
(``test_backend_<name>[_...]`` or ``test_<name>_...``: ``test_jax_decode`` is JAX's,
``test_backend_torch_module`` torch's). A test of no backend is *backend-independent*.
"""

from __future__ import annotations

import os

import pytest

import futurefill

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
#: Executor variants that are not registered backends (built by ``conftest._variant``).
VARIANTS = ("cupy_standin", "torch_cuda", "torch_cuda_graphs")
#: Module names name the library: a torch module's tests run with any torch variant.
_FAMILY = {"torch_cuda": "torch", "torch_cuda_graphs": "torch"}


def selected_backends() -> list[str]:
    """``FUTUREFILL_TEST_BACKENDS`` (comma-separated), or every known backend."""
    chosen = os.environ.get("FUTUREFILL_TEST_BACKENDS")
    return [b.strip() for b in chosen.split(",") if b.strip()] if chosen else list(KNOWN_BACKENDS)


def runs_shared() -> bool:
    """Whether this run takes the backend-independent tests (``FUTUREFILL_TEST_SHARED``)."""
    return os.environ.get("FUTUREFILL_TEST_SHARED", "1") != "0"


_WHY_NOT: dict[str, str | None] = {}


def unavailable(name: str) -> str | None:
    """Why backend variant ``name`` cannot run here (``None`` when it can); asked once."""
    if name not in _WHY_NOT:
        _WHY_NOT[name] = _why_not(name)
    return _WHY_NOT[name]


def _why_not(name: str) -> str | None:
    if name == "cupy_standin":
        return None
    if name in ("torch_cuda", "torch_cuda_graphs"):
        try:
            import torch
        except ImportError:
            return "torch is not installed"
        return None if torch.cuda.is_available() else "torch.cuda.is_available() is False"
    if name not in futurefill.list_backends():
        return f"backend {name!r} is not installed"
    try:
        futurefill.get_backend(name)
    except (ImportError, RuntimeError) as exc:  # RuntimeError: e.g. no CUDA device for cupy
        return f"unavailable: {exc}"
    return None


def module_backend(item: pytest.Item) -> str | None:
    """The backend ``item``'s module is about, from its name (``None``: none)."""
    stem = item.path.stem.removeprefix("test_").removeprefix("backend_")
    for name in sorted(KNOWN_BACKENDS, key=len, reverse=True):  # cupy_standin before cupy
        if stem == name or stem.startswith(name + "_"):
            return name
    return None


def why_deselected(item: pytest.Item, selected: set[str]) -> str | None:
    """Why this run does not take ``item`` (``None``: it does): a summary key."""
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("backend") if callspec is not None else None
    if isinstance(name, str):
        reason = unavailable(name)
        return None if reason is None else f"{name}: {reason}"
    owner = module_backend(item)
    if owner is None:
        shared = runs_shared()
        return None if shared else "backend-independent tests (FUTUREFILL_TEST_SHARED=0)"
    if owner not in {_FAMILY.get(b, b) for b in selected}:
        return f"{owner}'s own tests ({owner} is not in FUTUREFILL_TEST_BACKENDS)"
    return None


def mark_slow_on(items: list[pytest.Item]) -> None:
    """Mark ``slow`` each test marked ``slow_on(*backends)`` whose backend is one of them."""
    for item in items:
        marker = item.get_closest_marker("slow_on")
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        if marker is not None and backend in marker.args:
            item.add_marker(pytest.mark.slow)
