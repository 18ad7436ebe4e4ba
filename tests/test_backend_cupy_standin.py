"""The CuPy executor's device handling and plan-cache sizing, over the NumPy-backed stand-in.

Its arithmetic runs in the shared suite as the ``cupy_standin`` backend; here are the parts
that only the CuPy executor has. A real device is tested by ``test_backend_cupy.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import futurefill

from . import cupy_standin
from .conftest import selected_backends

if "cupy_standin" not in selected_backends():
    pytest.skip("cupy_standin is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)


@pytest.fixture
def standin() -> Iterator[Any]:
    with cupy_standin.installed() as cupy:
        from futurefill_cupy import CupyExecutor

        cupy.CupyExecutor = CupyExecutor
        yield cupy
        cupy.cuda.Device.count = 1


def test_device_spellings(standin) -> None:
    ex = standin.CupyExecutor
    assert ex().device.id == 0
    for spelling in ("cuda", "cuda:0", "gpu", 0, np.int64(0), standin.cuda.Device(0)):
        assert ex(spelling).device.id == 0
    for bad in ("cpu", "cuda:x", 1.5, None.__class__):
        with pytest.raises(ValueError, match="CUDA devices"):
            ex(bad)
    with pytest.raises(RuntimeError, match="no CUDA device 1"):
        ex(1)


def test_no_device_is_a_runtime_error(standin) -> None:
    standin.cuda.Device.count = 0
    with pytest.raises(RuntimeError, match="no CUDA device is usable"):
        standin.CupyExecutor()


def test_native_arrays_and_dtypes(standin) -> None:
    ex = standin.CupyExecutor()
    assert ex.is_native(standin.zeros(3))
    assert not ex.is_native(np.zeros(3))
    assert ex.resolve_dtype("float32") == np.float32
    with pytest.raises(TypeError, match="float32 or float64"):
        ex.resolve_dtype("float16")
    x = ex.asarray([1.0, 2.0], dtype="float32")
    assert isinstance(x, standin.ndarray) and x.dtype == np.float32
    assert type(ex.to_numpy(x)) is np.ndarray


def test_plan_cache_is_enlarged_to_hold_every_fft_size(standin) -> None:
    cache = standin.fft.config.get_plan_cache()
    cache.set_size(2)
    L = 1 << 10
    conv = futurefill.OnlineConv(np.ones((1, L)), L, backend=standin.CupyExecutor(), direct_below=1)
    sizes = {key[2] for key in conv.plan.spectrum_keys}
    assert cache.get_size() >= 2 * len(sizes) == 20
    cache.set_size(-1)  # unlimited stays unlimited
    futurefill.OnlineConv(np.ones((1, L)), L, backend=standin.CupyExecutor(), direct_below=1)
    assert cache.get_size() == -1


def test_plan_cache_is_enlarged_in_the_thread_that_steps(standin, monkeypatch) -> None:
    """CuPy keeps a plan cache per thread (and device): a state built in one thread and
    stepped in another must enlarge the stepping thread's cache too."""
    caches = threading.local()

    def per_thread():
        if not hasattr(caches, "cache"):
            caches.cache = cupy_standin._PlanCache()
        return caches.cache

    monkeypatch.setattr(standin.fft.config, "get_plan_cache", per_thread)
    L = 1 << 8
    conv = futurefill.OnlineConv(np.ones((1, L)), L, backend=standin.CupyExecutor(), direct_below=1)
    needed = 2 * len({key[2] for key in conv.plan.spectrum_keys}) + 2
    assert per_thread().get_size() >= needed > 16
    seen: list[int] = []

    def decode() -> None:
        fresh = per_thread().get_size()
        x = standin.asarray(np.ones((1, 1)))
        for _ in range(L // 2):
            conv.step(x)
        seen.extend((fresh, per_thread().get_size()))

    worker = threading.Thread(target=decode)
    worker.start()
    worker.join()
    assert seen == [16, needed]
