"""Working precision of the torch executor: default dtypes, no TF32, on-device NaN checks.

* ``default_dtype``: float32 on a GPU whatever the filters (float64 only when asked), the
  filters' own float type on the CPU (float64 for integers).
* No kernel is a matrix product, so the TF32 switches (``allow_tf32``,
  ``set_float32_matmul_precision``) cannot change a result: the operators a prefill and the
  steps dispatch are listed and checked; on CUDA the outputs are compared bit for bit with
  TF32 allowed and not.
* ``all_finite`` reduces on the device.

Tolerance: none is needed; every comparison is exact (same kernels, same inputs).
"""

from __future__ import annotations

import numpy as np
import pytest

import futurefill

from .conftest import decaying_filters, run_online, selected_backends

torch = pytest.importorskip("torch")
if not {"torch", "torch_cuda", "torch_cuda_graphs"} & set(selected_backends()):
    pytest.skip("torch is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from futurefill_torch import TorchExecutor  # noqa: E402

#: Operators that cuBLAS (or oneDNN) may run in TF32 or bfloat16 under the global switches.
MATRIX_PRODUCTS = {
    "mm", "bmm", "addmm", "addbmm", "baddbmm", "matmul", "mv", "addmv", "dot", "vdot",
    "linear", "convolution", "_convolution", "tensordot", "einsum", "_scaled_mm",
}  # fmt: skip
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="torch.cuda.is_available() is False: no CUDA device"
)


class Operators(TorchDispatchMode):
    """The names of the ATen operators dispatched inside the block, and the sizes of the
    tensors read back to the host as Python scalars."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.read_back: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._overloadpacket.__name__
        self.names.add(name)
        if name == "_local_scalar_dense":
            self.read_back.append(args[0].numel())
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("schedule", ["naive", "epoched", "continuous"])
def test_no_kernel_is_a_matrix_product(rng, schedule) -> None:
    C, P, L = 3, 4, 40
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((2, C, P + L))
    conv = futurefill.OnlineConv(
        phi, L, schedule=schedule, prompt=P, batch=2, dtype="float32", backend=TorchExecutor()
    )
    with Operators() as seen:
        run_online(conv, u)
    assert {"addcmul", "sum"} <= seen.names  # the window: a multiply and a sum
    assert not seen.names & MATRIX_PRODUCTS


@needs_cuda
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_tf32_switches_change_nothing_on_cuda(rng, cuda_graphs) -> None:
    C, P, L = 4, 8, 64
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((2, C, P + L)).astype(np.float32)
    ex = TorchExecutor("cuda", cuda_graphs=cuda_graphs)
    outputs = []
    flags = torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()
    try:
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.set_float32_matmul_precision("medium" if tf32 else "highest")
            conv = futurefill.OnlineConv(phi, L, prompt=P, batch=2, dtype="float32", backend=ex)
            outputs.append(run_online(conv, u))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = flags[0]
        torch.set_float32_matmul_precision(flags[1])
    np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize(
    ("host", "cpu", "cuda"),
    [
        (np.float64, "float64", "float32"),
        (np.float32, "float32", "float32"),
        (np.int64, "float64", "float32"),
        (np.bool_, "float64", "float32"),
        (np.float16, "float16", "float16"),  # half inputs and outputs, float32 inside
    ],
)
def test_default_dtype_is_float32_on_a_gpu(host, cpu: str, cuda: str) -> None:
    ex = TorchExecutor()
    assert ex.default_dtype(np.dtype(host)) == cpu
    ex.device = torch.device("cuda", 0)  # the rule only: no GPU needed
    assert ex.default_dtype(np.dtype(host)) == cuda


@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_all_finite_reduces_on_the_device(bad) -> None:
    x = np.arange(24.0).reshape(2, 3, 4)
    if bad is not None:
        x[1, 2, 3] = bad
    ex = TorchExecutor()
    assert ex.all_finite(torch.from_numpy(x)) is bool(np.isfinite(x).all())
    with Operators() as seen:
        ex.all_finite(torch.from_numpy(x))
    assert "all" in seen.names and seen.read_back == [1]  # one boolean comes back
