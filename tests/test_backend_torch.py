"""Behaviour specific to the PyTorch executor: devices, dtypes, autograd, CUDA graphs.

The generic exactness suite runs on every backend in ``test_online.py`` (on CUDA too, as the
``torch_cuda`` and ``torch_cuda_graphs`` variants); here the parts only torch has (devices,
``torch.dtype``, ``requires_grad``, the graphed task bodies) are pinned down. CUDA tests skip
when ``torch.cuda.is_available()`` is false.

Tolerances: float64 results are compared with ``1e-12`` times the largest output. Each
FutureFill task is one FFT round trip (relative error ~1e-16 * log2 n) and an output collects
at most log2 L of them, so 1e-12 leaves a wide margin while still catching any missed or doubled
term (those are O(1) relative errors).
"""

from __future__ import annotations

import numpy as np
import pytest

import futurefill

from .conftest import decaying_filters, oracle, run_online, selected_backends

torch = pytest.importorskip("torch")
if not {"torch", "torch_cuda", "torch_cuda_graphs"} & set(selected_backends()):
    pytest.skip("torch is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)

from futurefill_torch import TorchExecutor  # noqa: E402
from futurefill_torch._graphs import PatternGraphs  # noqa: E402

REL64 = 1e-12  # see the module docstring
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="torch.cuda.is_available() is False: no CUDA device"
)


def rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(y - ref).max() / np.abs(ref).max())


def make_conv(phi: np.ndarray, length: int, **kwargs) -> futurefill.OnlineConv:
    kwargs.setdefault("backend", TorchExecutor())
    return futurefill.OnlineConv(phi, length, **kwargs)


# ---------------------------------------------------------------------- devices
@pytest.mark.parametrize("device", [None, "cpu", "cpu:0", torch.device("cpu")])
def test_cpu_device_spellings(device) -> None:
    ex = TorchExecutor(device=device)
    assert ex.device == torch.device("cpu")
    assert ex.asarray(np.zeros(3)).device == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device exists here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_device_is_a_runtime_error(device) -> None:
    with pytest.raises(RuntimeError, match=r"torch\.cuda\.is_available\(\) is False"):
        TorchExecutor(device=device)
    with pytest.raises(RuntimeError, match="CUDA"):
        futurefill.get_backend("torch", device=device)


@pytest.mark.parametrize("device", ["mps", "meta", "gpu0", 3.5])
def test_unsupported_devices_are_refused(device) -> None:
    with pytest.raises(ValueError, match="torch"):
        TorchExecutor(device=device)


def test_cuda_graphs_need_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        TorchExecutor(cuda_graphs=True)


def test_registered_under_its_name() -> None:
    ex = futurefill.get_backend("torch")
    assert isinstance(ex, TorchExecutor)
    assert ex.name == "torch"


# ---------------------------------------------------------------------- dtypes
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("float32", "float32"),
        ("float64", "float64"),
        (np.float32, "float32"),
        (np.dtype("float64"), "float64"),
        ("torch.float32", "float32"),
    ],
)
def test_dtype_names_map_to_torch(given, expected) -> None:
    assert TorchExecutor().resolve_dtype(given) is getattr(torch, expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_dtypes_pass_through(dtype) -> None:
    native = getattr(torch, dtype)
    assert TorchExecutor().resolve_dtype(native) is native


@pytest.mark.parametrize(
    "dtype", [torch.bfloat16, torch.float16, "float16", "bfloat16", np.float16, torch.int32]
)
def test_low_precision_is_no_compute_dtype(dtype) -> None:
    with pytest.raises(TypeError, match="float32 or float64"):
        TorchExecutor().resolve_dtype(dtype)
    if dtype is torch.int32:
        with pytest.raises(TypeError, match="float32 or float64"):
            make_conv(np.ones((1, 4)), 4, dtype=dtype)
    else:  # half precision in and out, float32 inside
        conv = make_conv(np.ones((1, 4)), 4, dtype=dtype)
        assert conv.compute_dtype is torch.float32 and conv.dtype in (torch.bfloat16, torch.float16)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (np.ones((2, 8), np.float32), torch.float32),
        (np.ones((2, 8)), torch.float64),
        (np.ones((2, 8), np.int64), torch.float64),
        (torch.ones(2, 8), torch.float32),
    ],
)
def test_working_dtype_follows_the_filters(filters, expected) -> None:
    conv = make_conv(filters, 8)
    assert conv.dtype is expected
    y = conv.step(torch.ones((1, 2), dtype=expected))
    assert y.dtype is expected


def test_asarray_resolves_names_and_device() -> None:
    x = TorchExecutor().asarray([[1.0, 2.0]], dtype="float32")
    assert x.dtype is torch.float32
    assert x.device == torch.device("cpu")


# ---------------------------------------------------------------------- native arrays
def test_is_native_checks_type_and_device() -> None:
    ex = TorchExecutor()
    assert ex.is_native(torch.zeros(2))
    assert ex.is_native(torch.nn.Parameter(torch.zeros(2)))
    assert not ex.is_native(np.zeros(2))
    assert not ex.is_native([0.0, 1.0])
    # "meta" tensors exist on every machine: a tensor on another device is not native.
    assert not ex.is_native(torch.zeros(2, device="meta"))


def test_step_refuses_a_tensor_on_another_device() -> None:
    conv = make_conv(np.ones((2, 8)), 8)
    with pytest.raises(TypeError, match="device"):
        conv.step(torch.zeros((1, 2), dtype=torch.float64, device="meta"))
    assert conv.position == 0


def test_to_numpy_detaches() -> None:
    x = torch.ones(3, requires_grad=True)
    out = TorchExecutor().to_numpy(x * 2)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, [2.0, 2.0, 2.0])


# ---------------------------------------------------------------------- torch specifics
def test_float32_is_close(rng) -> None:
    L = 256
    phi = decaying_filters(rng, 2, L)
    u = rng.standard_normal((1, 2, L))
    conv = make_conv(phi.astype(np.float32), L, direct_below=1)
    assert conv.dtype is torch.float32
    # float32 FFT round trips err ~1e-7 relative, and an output adds up at most log2 L = 8 of
    # them; 2e-5 is a few times that bound, far below the O(1) error of a wrong term.
    assert rel_err(run_online(conv, u), oracle(u, phi)) <= 2e-5


def test_channel_slices_then_advance_equal_step(rng) -> None:
    B, C, L = 2, 5, 33
    phi = decaying_filters(rng, C, L)
    u = rng.standard_normal((B, C, L))
    conv = make_conv(phi, L, batch=B, direct_below=2)
    ys = []
    for t in range(L):
        ut = torch.as_tensor(u[..., t])
        y = torch.cat([conv.emit(ut[:, :2], slice(0, 2)), conv.emit(ut[:, 2:], slice(2, 5))], 1)
        conv.advance()
        ys.append(y.numpy())
    assert rel_err(np.stack(ys, -1), oracle(u, phi)) <= REL64


def test_inputs_that_require_grad_build_no_graph(rng) -> None:
    L = 20
    phi = decaying_filters(rng, 2, L)
    u = rng.standard_normal((1, 2, L))
    conv = make_conv(torch.nn.Parameter(torch.as_tensor(phi)), L, direct_below=2)
    ys = []
    for t in range(L):
        y = conv.step(torch.as_tensor(u[..., t]).requires_grad_(True))
        assert not y.requires_grad
        ys.append(y.numpy())
    assert not conv._state.buffer.requires_grad
    assert rel_err(np.stack(ys, -1), oracle(u, phi)) <= REL64


def test_filters_are_copied(rng) -> None:
    P, L = 4, 12
    phi = decaying_filters(rng, 1, P + L)
    u = rng.standard_normal((1, 1, P + L))
    expected = oracle(u, phi)
    mutable = phi.copy()
    conv = make_conv(mutable, L, prompt=P)
    mutable[:] = 0.0  # must not reach the state (a NumPy input would share memory)
    assert rel_err(run_online(conv, u), expected) <= REL64


def test_reset_replays_identically(rng) -> None:
    P, L = 5, 30
    phi = decaying_filters(rng, 2, P + L)
    u = rng.standard_normal((1, 2, P + L))
    conv = make_conv(phi, L, prompt=P, direct_below=2)
    first = run_online(conv, u)
    conv.reset()
    np.testing.assert_array_equal(run_online(conv, u), first)


def test_rollout_matches_the_numpy_backend(rng) -> None:
    L = 40
    phi = decaying_filters(rng, 3, L)
    u0 = rng.standard_normal((1, 3))
    kwargs = {"direct_below": 2}
    y_torch = make_conv(phi, L, **kwargs).rollout(torch.as_tensor(u0), torch.tanh)
    y_numpy = make_conv(phi, L, backend="numpy", **kwargs).rollout(u0, np.tanh)
    assert tuple(y_torch.shape) == (1, 3, L)
    assert rel_err(y_torch.numpy(), y_numpy) <= REL64


def test_default_direct_below_comes_from_the_measured_table(monkeypatch, tmp_path) -> None:
    from futurefill_torch.executor import SHIPPED

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing tuned here
    ex = TorchExecutor()
    for dtype in (torch.float32, torch.float64):
        table = SHIPPED.direct_below[f"cpu/{str(dtype).removeprefix('torch.')}"]
        for width in (1, 64, 65, 512, 4096):
            k0 = ex.default_direct_below(1, width, dtype)
            expected = next(k for limit, k in table if limit is None or width <= limit)
            assert k0 == expected
            assert k0 >= 1 and k0 & (k0 - 1) == 0
    assert SHIPPED.lookup("cuda", torch.float32, 64) == 64
    plan = make_conv(np.ones((64, 16)), 16).plan
    assert plan.spec.get("direct_below") == ex.default_direct_below(1, 64, torch.float64)


# ---------------------------------------------------------------------- graphed task body
@pytest.mark.parametrize("prompt", [0, 6])
@pytest.mark.parametrize("direct_below", [1, 4])
def test_graph_body_is_exact_without_capture(rng, prompt, direct_below) -> None:
    """The index arithmetic CUDA graphs replay, run eagerly on the CPU."""
    B, C, L = 2, 3, 50
    phi = decaying_filters(rng, C, prompt + L)
    u = rng.standard_normal((B, C, prompt + L))
    conv = make_conv(phi, L, prompt=prompt, batch=B, direct_below=direct_below)
    graphs = conv._state.workspace = PatternGraphs(conv._state)
    assert rel_err(run_online(conv, u), oracle(u, phi)) <= REL64
    # one body per step pattern, reused by every step of that pattern
    assert len(graphs.bodies) == len(conv.plan.step_patterns.patterns) - 1
    assert 0 < len(graphs.bodies) < conv.plan.num_tasks


def test_graph_body_survives_load_state_dict(rng) -> None:
    """``load_state_dict`` replaces the buffer; graphed tasks must keep their own buffer."""
    L = 40
    phi = decaying_filters(rng, 2, L)
    u = rng.standard_normal((1, 2, L))
    conv = make_conv(phi, L, direct_below=1)
    graphs = conv._state.workspace = PatternGraphs(conv._state)
    ys = [conv.step(torch.as_tensor(u[..., t])).numpy() for t in range(20)]
    snapshot = conv.state_dict()
    ys += [conv.step(torch.as_tensor(u[..., t])).numpy() for t in range(20, 30)]
    conv.load_state_dict(snapshot)
    assert conv._state.buffer is not graphs.buffer
    ys = ys[:20] + [conv.step(torch.as_tensor(u[..., t])).numpy() for t in range(20, L)]
    assert conv._state.buffer is graphs.buffer
    assert rel_err(np.stack(ys, -1), oracle(u, phi)) <= REL64


# ---------------------------------------------------------------------- CUDA
@needs_cuda
def test_cuda_device_is_normalized_and_cpu_tensors_are_foreign() -> None:
    ex = TorchExecutor(device="cuda")
    assert ex.device.type == "cuda" and ex.device.index is not None
    assert ex.is_native(torch.zeros(2, device=ex.device))
    assert not ex.is_native(torch.zeros(2))
    assert ex.default_direct_below(1, 64, torch.float32, tuned=False) == 64  # shipped cuda row
    conv = make_conv(np.ones((2, 8)), 8, backend=ex)
    with pytest.raises(TypeError, match="device"):
        conv.step(torch.zeros((1, 2), dtype=torch.float64))
    ex.synchronize()


@needs_cuda
@pytest.mark.parametrize("schedule", ["continuous", "epoched"])
def test_cuda_graph_replays_are_deterministic(rng, schedule) -> None:
    B, C, L, P = 2, 3, 45, 7
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((B, C, P + L))
    ex = TorchExecutor(device="cuda", cuda_graphs=True)
    conv = make_conv(phi, L, backend=ex, schedule=schedule, prompt=P, batch=B)
    y = run_online(conv, u)
    assert rel_err(y, oracle(u, phi)) <= REL64
    assert conv._state.workspace.bodies  # the graphs were used
    conv.reset()
    np.testing.assert_array_equal(run_online(conv, u), y)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_filter_tensors_set_the_input_dtype(dtype) -> None:
    conv = make_conv(torch.ones((1, 8), dtype=dtype), 8)
    assert conv.dtype is dtype and conv.compute_dtype is torch.float32
    assert conv.step(torch.ones((1, 1), dtype=dtype)).dtype is dtype
