"""The test suite's own selection (``selection.py``): which backend a test belongs to, and
which tests a run with a given ``FUTUREFILL_TEST_BACKENDS`` / ``FUTUREFILL_TEST_SHARED`` takes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from . import selection


def _item(module: str, backend: str | None = None) -> Any:
    callspec = None if backend is None else SimpleNamespace(params={"backend": backend})
    return SimpleNamespace(path=Path("tests") / f"{module}.py", callspec=callspec)


@pytest.mark.parametrize(
    ("module", "owner"),
    [
        ("test_backend_jax", "jax"),
        ("test_jax_decode", "jax"),
        ("test_backend_torch_module", "torch"),
        ("test_backend_cupy_standin", "cupy_standin"),
        ("test_backend_cupy", "cupy"),
        ("test_numpy_worker", "numpy"),
        ("test_online", None),
        ("test_jaxlike", None),
    ],
)
def test_a_module_belongs_to_the_backend_its_name_says(module: str, owner: str | None) -> None:
    assert selection.module_backend(_item(module)) == owner


def test_what_a_run_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(selection._WHY_NOT, "torch_cuda", "no CUDA device")
    monkeypatch.setitem(selection._WHY_NOT, "numpy", None)
    monkeypatch.delenv("FUTUREFILL_TEST_SHARED", raising=False)
    torch_run = {"torch", "torch_cuda"}

    def why(module: str, backend: str | None = None) -> str | None:
        return selection.why_deselected(_item(module, backend), torch_run)

    assert why("test_online", "numpy") is None  # the fixture's parameters are the selection
    assert why("test_online", "torch_cuda") == "torch_cuda: no CUDA device"
    assert why("test_backend_torch_module") is None  # a CUDA variant selects torch's modules
    assert why("test_jax_decode") is not None and "jax" in why("test_jax_decode")
    assert why("test_plan") is None
    monkeypatch.setenv("FUTUREFILL_TEST_SHARED", "0")
    assert why("test_plan") == "backend-independent tests (FUTUREFILL_TEST_SHARED=0)"
    assert why("test_backend_torch") is None


def test_slow_on_marks_slow_only_the_tests_of_its_backends() -> None:
    marks: dict[str, list[str]] = {}

    def item(backend: str) -> Any:
        it = _item("test_online", backend)
        it.get_closest_marker = lambda name: pytest.mark.slow_on("jax").mark
        it.add_marker = lambda mark: marks.setdefault(backend, []).append(mark.name)
        return it

    selection.mark_slow_on([item("jax"), item("numpy")])
    assert marks == {"jax": ["slow"]}
