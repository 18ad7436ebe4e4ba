"""Behaviour specific to the CuPy executor on a real CUDA device: devices, dtypes, plans.

Exactness runs in the shared suite (``test_online.py`` over the ``backend`` fixture). Without
CuPy only the "missing library" message is checked; without a CUDA device every other test
skips with the reason. The executor's logic also runs in CI without a GPU, over a NumPy-backed
stand-in (``test_backend_cupy_standin.py``).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import futurefill

from .conftest import selected_backends

if "cupy" not in selected_backends():
    pytest.skip("cupy is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)

HAVE_CUPY = importlib.util.find_spec("cupy") is not None


def _has_device() -> bool:
    if not HAVE_CUPY:
        return False
    import cupy

    try:
        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except (cupy.cuda.runtime.CUDARuntimeError, RuntimeError, OSError):
        return False


needs_device = pytest.mark.skipif(
    not _has_device(), reason="cupy is not installed or sees no CUDA device"
)


@pytest.mark.skipif(HAVE_CUPY, reason="cupy is installed here")
def test_missing_cupy_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"futurefill\[cupy\]"):
        futurefill.get_backend("cupy")


@pytest.mark.skipif(not HAVE_CUPY or _has_device(), reason="needs cupy without a CUDA device")
def test_no_device_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="no CUDA device"):
        futurefill.get_backend("cupy")


@needs_device
def test_devices_and_native_arrays() -> None:
    import cupy

    from futurefill_cupy import CupyExecutor

    ex = CupyExecutor()
    assert ex.device.id == cupy.cuda.runtime.getDevice()
    assert CupyExecutor("cuda:0").device.id == 0
    assert CupyExecutor(0).device.id == 0
    assert ex.is_native(cupy.zeros(2))
    assert not ex.is_native(np.zeros(2))
    with pytest.raises(ValueError, match="CUDA"):
        CupyExecutor("cpu")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        CupyExecutor(cupy.cuda.runtime.getDeviceCount())
    x = ex.asarray([1.0, 2.0], dtype="float32")
    assert isinstance(x, cupy.ndarray) and x.dtype == np.float32
    np.testing.assert_array_equal(ex.to_numpy(x), [1.0, 2.0])
    ex.synchronize()


@needs_device
@pytest.mark.parametrize(("given", "expected"), [("float32", np.float32), (np.float64, np.float64)])
def test_dtype_mapping(given, expected) -> None:
    from futurefill_cupy import CupyExecutor

    assert CupyExecutor().resolve_dtype(given) == np.dtype(expected)


@needs_device
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", np.float16, "int32"])
def test_low_precision_is_refused(dtype) -> None:
    from futurefill_cupy import CupyExecutor

    with pytest.raises(TypeError, match="float32 or float64"):
        CupyExecutor().resolve_dtype(dtype)


@needs_device
def test_plan_cache_holds_every_level() -> None:
    import cupy

    L = 1 << 12
    conv = futurefill.OnlineConv(np.ones((1, L)), L, backend="cupy", direct_below=1)
    sizes = {key[2] for key in conv.plan.spectrum_keys}
    size = cupy.fft.config.get_plan_cache().get_size()
    assert size == -1 or size >= 2 * len(sizes)  # -1: unlimited
