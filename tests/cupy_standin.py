"""A NumPy-backed stand-in for the parts of ``cupy`` the CuPy executor uses (tests only).

It lets CI run the CuPy executor's logic (slots, views, in-place updates, the fused kernels'
formulas, device handling, the cuFFT plan cache sizing) on a machine without a GPU. Arrays are
a NumPy subclass, so every operation is NumPy's; only the API is CuPy's. What it cannot check
is CUDA itself: kernel compilation, streams, device memory (the GPU check script does).

``installed()`` puts the stand-in in ``sys.modules`` as ``cupy`` for the duration of a
``with`` block and drops every module that imported the real one (or none) before and after.
"""

from __future__ import annotations

import contextlib
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["installed"]


class ndarray(np.ndarray):  # noqa: N801 - cupy's spelling
    """A NumPy array that says it lives on CUDA device 0."""

    @property
    def device(self) -> Device:  # type: ignore[override]
        return Device(0)


def _wrap(x: Any) -> Any:
    return x.view(ndarray) if isinstance(x, np.ndarray) else x


def _returning_standin(func: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _wrap(func(*args, **kwargs))

    wrapper.__name__ = getattr(func, "__name__", "wrapper")
    return wrapper


class CUDARuntimeError(RuntimeError):
    """cupy.cuda.runtime.CUDARuntimeError."""


class Device:
    """cupy.cuda.Device: an id, a context manager, synchronize()."""

    count = 1
    current = 0

    def __init__(self, device: int | None = None) -> None:
        self.id = Device.current if device is None else int(device)

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def synchronize(self) -> None:
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


class _PlanCache:
    def __init__(self) -> None:
        self.size = 16

    def get_size(self) -> int:
        return self.size

    def set_size(self, size: int) -> None:
        self.size = size


_plan_cache = _PlanCache()


def _params(signature: str) -> list[str]:
    """``"T acc, T tap0"`` -> ``["acc", "tap0"]``."""
    return [part.split()[-1] for part in signature.split(",")]


class ElementwiseKernel:
    """Evaluates the kernel's C-like assignment with NumPy broadcasting."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str) -> None:
        self.inputs = _params(in_params)
        (self.output,) = _params(out_params)
        target, expression = operation.split("=", 1)
        if target.strip() != self.output:
            raise NotImplementedError(f"stand-in kernels assign their output: {operation!r}")
        self.expression = compile(expression.strip(), name, "eval")

    def __call__(self, *args: Any) -> ndarray:
        values = dict(zip(self.inputs, (np.asarray(a) for a in args), strict=True))
        return _wrap(np.asarray(eval(self.expression, {}, values)))


class ReductionKernel:
    """A map expression reduced by a sum (the only reduction the executor uses)."""

    def __init__(
        self, in_params: str, out_params: str, map_expr: str, reduce_expr: str,
        post_map_expr: str, identity: str, name: str,
    ) -> None:  # fmt: skip
        if re.sub(r"\s", "", reduce_expr) != "a+b" or identity != "0":
            raise NotImplementedError("the stand-in reduces by a sum only")
        self.inputs = _params(in_params)
        self.map = compile(map_expr, name, "eval")

    def __call__(self, *args: Any, axis: int) -> ndarray:
        values = dict(zip(self.inputs, (np.asarray(a) for a in args), strict=True))
        return _wrap(np.sum(eval(self.map, {}, values), axis=axis))


def _module() -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cupy.__path__ = []  # a package, like the real one
    public = {k: v for k, v in vars(np).items() if not k.startswith("_")}
    cupy.__dict__.update(public)
    for name in ("asarray", "array", "zeros", "empty", "ones", "ascontiguousarray", "arange",
                 "concatenate", "stack", "zeros_like", "empty_like", "full"):  # fmt: skip
        setattr(cupy, name, _returning_standin(getattr(np, name)))
    cupy.ndarray = ndarray
    cupy.asnumpy = lambda x: np.array(x).view(np.ndarray)
    cupy.ElementwiseKernel = ElementwiseKernel
    cupy.ReductionKernel = ReductionKernel
    cupy.__version__ = "standin"

    fft = types.ModuleType("cupy.fft")
    fft.__dict__.update({k: v for k, v in vars(np.fft).items() if not k.startswith("_")})
    for name in ("fft", "ifft", "rfft", "irfft", "fftn", "ifftn", "rfftn", "irfftn"):
        setattr(fft, name, _returning_standin(getattr(np.fft, name)))
    fft.config = types.SimpleNamespace(get_plan_cache=lambda: _plan_cache)
    cupy.fft = fft

    cuda = types.ModuleType("cupy.cuda")
    cuda.__path__ = []  # a package: cupy.cuda.device is imported by name
    cuda.device = types.ModuleType("cupy.cuda.device")
    cuda.device.Device = Device
    cuda.Device = Device
    cuda.runtime = types.SimpleNamespace(
        getDeviceCount=lambda: Device.count,
        getDevice=lambda: Device.current,
        CUDARuntimeError=CUDARuntimeError,
    )
    cupy.cuda = cuda
    linalg = types.ModuleType("cupy.linalg")
    linalg.__dict__.update({k: v for k, v in vars(np.linalg).items() if not k.startswith("_")})
    cupy.linalg = linalg
    return cupy


def _forget() -> None:
    for name in list(sys.modules):
        if name == "cupy" or name.startswith(("cupy.", "futurefill_cupy", "array_api_compat.cupy")):
            del sys.modules[name]


@contextlib.contextmanager
def installed() -> Iterator[types.ModuleType]:
    """Make ``import cupy`` give the stand-in inside the block."""
    saved = {k: v for k, v in sys.modules.items() if k == "cupy" or k.startswith("cupy.")}
    _forget()
    cupy = _module()
    modules = {"cupy": cupy, "cupy.fft": cupy.fft, "cupy.linalg": cupy.linalg}
    modules.update({"cupy.cuda": cupy.cuda, "cupy.cuda.device": cupy.cuda.device})
    sys.modules.update(modules)
    try:
        yield cupy
    finally:
        _forget()
        sys.modules.update(saved)
