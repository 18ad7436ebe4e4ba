"""Backend selection: entry-point discovery, process default, contexts, env var, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import futurefill
from futurefill import _registry
from futurefill.executor import ArrayAPIExecutor


@pytest.fixture(autouse=True)
def _clean_selection(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FUTUREFILL_BACKEND", raising=False)
    _registry._reset_process_default()
    yield
    _registry._reset_process_default()
    _registry.refresh_backends()


def test_builtin_backends_are_entry_points() -> None:
    names = futurefill.list_backends()
    assert {"numpy", "array_api_strict"} <= set(names)
    assert names == sorted(names)


def test_default_is_numpy() -> None:
    assert futurefill.get_backend().name == "numpy"


def test_set_backend_and_context_and_explicit_argument() -> None:
    futurefill.set_backend("array_api_strict")
    assert futurefill.get_backend().name == "array_api_strict"
    with futurefill.use_backend("numpy") as inner:
        assert inner.name == "numpy"
        assert futurefill.get_backend().name == "numpy"
        assert futurefill.get_backend("array_api_strict").name == "array_api_strict"
    assert futurefill.get_backend().name == "array_api_strict"


def test_onlineconv_follows_the_backend_in_force() -> None:
    with futurefill.use_backend("array_api_strict"):
        conv = futurefill.OnlineConv(np.ones((1, 4)), 4)
    assert conv.backend.name == "array_api_strict"


def test_context_is_local_to_each_thread() -> None:
    seen: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        with futurefill.use_backend(name):
            barrier.wait()  # both contexts are open at once
            seen[name] = futurefill.get_backend().name

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("numpy", "array_api_strict")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"numpy": "numpy", "array_api_strict": "array_api_strict"}
    assert futurefill.get_backend().name == "numpy"


def test_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUTUREFILL_BACKEND", "array_api_strict")
    assert futurefill.get_backend().name == "array_api_strict"
    futurefill.set_backend("numpy")  # an explicit default wins over the environment
    assert futurefill.get_backend().name == "numpy"
    _registry._reset_process_default()
    monkeypatch.setenv("FUTUREFILL_BACKEND", "nonsense")
    with pytest.raises(futurefill.BackendError, match="FUTUREFILL_BACKEND"):
        futurefill.get_backend()


def test_unknown_name_lists_the_installed_ones() -> None:
    with pytest.raises(futurefill.BackendError, match=r"installed: .*numpy"):
        futurefill.set_backend("tensorflow")
    assert futurefill.get_backend().name == "numpy"  # the failed call changed nothing
    with pytest.raises(TypeError):
        futurefill.set_backend(3)  # type: ignore[arg-type]


def test_bad_device_is_refused_and_default_kept() -> None:
    with pytest.raises(ValueError, match="CPU"):
        futurefill.set_backend("numpy", device="cuda")
    assert futurefill.get_backend().name == "numpy"


def _install_fake_distribution(root: Path, name: str, entry: str, module: str = "") -> None:
    """A minimal installed distribution: importlib.metadata discovers its entry points."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[futurefill.executors]\n{entry}\n")
    if module:
        (root / f"{name}.py").write_text(textwrap.dedent(module))


def test_third_party_executor_is_selectable_by_name(tmp_path, monkeypatch) -> None:
    _install_fake_distribution(
        tmp_path,
        "ff_thirdparty",
        "counting = ff_thirdparty:CountingExecutor",
        module="""
        import array_api_compat.numpy as cnp
        from futurefill.executor import ArrayAPIExecutor, compat_namespace

        class CountingExecutor(ArrayAPIExecutor):
            name = "counting"
            advances = 0

            def __init__(self, device=None):
                super().__init__(cnp, None)

            def is_native(self, x):
                import numpy
                return type(x) is numpy.ndarray

            def fill(self, state, step):
                type(self).advances += 1
                super().fill(state, step)
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _registry.refresh_backends()
    assert "counting" in futurefill.list_backends()
    with futurefill.use_backend("counting") as ex:
        assert isinstance(ex, ArrayAPIExecutor)
        conv = futurefill.OnlineConv(np.arange(1.0, 9.0)[None, :], 8)
        ys = [float(conv.step(np.ones((1, 1)))[0, 0]) for _ in range(8)]
    assert type(ex).advances == 8
    assert ys == list(np.cumsum(np.arange(1.0, 9.0)))


def test_missing_library_names_the_extra(tmp_path, monkeypatch) -> None:
    _install_fake_distribution(
        tmp_path,
        "ff_needs_lib",
        "needslib = ff_needs_lib:Executor",
        module="import some_library_that_is_not_installed\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _registry.refresh_backends()
    with pytest.raises(ImportError, match=r"pip install 'futurefill\[needslib\]'"):
        futurefill.set_backend("needslib")
    assert futurefill.get_backend().name == "numpy"


def test_importing_futurefill_imports_no_backend_library() -> None:
    code = (
        "import sys, futurefill, numpy; futurefill.OnlineConv(numpy.ones((1, 4)), 4);"
        "print(sorted(m for m in ('torch', 'jax', 'cupy', 'array_api_strict') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_only_backends_that_load_are_listed(tmp_path, monkeypatch) -> None:
    """A plug-in whose library is missing, or a built-in backend whose array library cannot
    be found, is registered but not listed, nor offered as installed."""
    _install_fake_distribution(
        tmp_path, "ff_broken", "broken = ff_broken:Executor", module="import not_installed_lib\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(_registry.BACKEND_LIBRARIES, "array_api_strict", ("no_such_library",))
    _registry.refresh_backends()
    names = futurefill.list_backends()
    assert "numpy" in names and "broken" not in names and "array_api_strict" not in names
    with pytest.raises(futurefill.BackendError, match="installed: ") as info:
        futurefill.set_backend("tensorflow")
    offered = str(info.value).split("installed: ")[1].split(", ")
    assert offered == names
    with pytest.raises(ImportError, match=r"pip install 'futurefill\[broken\]'"):
        futurefill.set_backend("broken")  # named, it still says what to install


def test_listing_the_backends_imports_no_array_library() -> None:
    code = (
        "import sys, futurefill; names = futurefill.list_backends();"
        "print(sorted(m for m in ('torch', 'jax', 'cupy', 'array_api_strict') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
