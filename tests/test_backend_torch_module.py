"""``futurefill_torch.OnlineConvModule``: the online convolution as a ``torch.nn.Module``.

Pinned down here: the buffers are the live state; ``state_dict`` / ``load_state_dict`` resume
a stream bit-identically (``torch.equal``, same device and kernels) and refuse foreign or
edited state with the module unchanged; devices and dtypes (``.to``, ``.half()`` refused,
``.float()`` only without a stream); nesting in a parent module; ``deepcopy``. CUDA tests skip
when ``torch.cuda.is_available()`` is false.

Tolerances: against the ``numpy.convolve`` oracle, float64 outputs within ``1e-12`` of the
largest (each output sums at most log2 L FFT round trips of relative error ~1e-16 log2 n); a
CUDA stream against the CPU one within ``1e-12`` as well (cuFFT and the CPU FFT round
differently, by the same ~1e-16 per round trip).
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

import futurefill

from .conftest import decaying_filters, oracle, selected_backends

torch = pytest.importorskip("torch")
# Runs with any torch variant selected (the GPU check selects torch_cuda, not torch).
if not {"torch", "torch_cuda", "torch_cuda_graphs"} & set(selected_backends()):
    pytest.skip("no torch variant among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)

from futurefill_torch import OnlineConvModule, TorchExecutor  # noqa: E402

REL64 = 1e-12  # see the module docstring
SCHEDULES = ("naive", "epoched", "continuous")
B, C, P, L = 2, 3, 5, 40
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="torch.cuda.is_available() is False: no CUDA device"
)


@pytest.fixture
def phi(rng: np.random.Generator) -> np.ndarray:
    return decaying_filters(rng, C, P + L)


@pytest.fixture
def inputs(rng: np.random.Generator) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal((B, C, P + L)))


def make(phi: np.ndarray, **kwargs) -> OnlineConvModule:
    kwargs = {"prompt": P, "batch": B, **kwargs}
    return OnlineConvModule(phi, L, **kwargs)


def feed(module: OnlineConvModule, u: torch.Tensor, start: int, stop: int) -> list[torch.Tensor]:
    """Outputs of steps ``start .. stop - 1`` (input positions), inputs moved to the module."""
    return [module(u[..., t].contiguous().to(module.device)) for t in range(start, stop)]


def assert_identical(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def roundtrip(state: dict) -> dict:
    """Through ``torch.save`` and ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ---------------------------------------------------------------------- streaming
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_forward_is_one_exact_step(phi, inputs, schedule: str) -> None:
    module = make(phi, schedule=schedule)
    prompt_out = module.prefill(inputs[..., :P])
    outs = feed(module, inputs, P, P + L)
    got = torch.cat([prompt_out, torch.stack(outs, dim=-1)], dim=-1).numpy()
    want = oracle(inputs.numpy(), phi)
    assert np.abs(got - want).max() <= REL64 * np.abs(want).max()
    assert module.position == L and module.remaining == 0
    # The same as the OnlineConv it wraps, bit for bit.
    conv = futurefill.OnlineConv(phi, L, schedule=schedule, prompt=P, batch=B, backend="torch")
    conv.prefill(inputs[..., :P])
    reference = [conv.step(inputs[..., t].contiguous()) for t in range(P, P + L)]
    assert_identical(outs, reference)


def test_buffers_are_the_live_state(phi, inputs) -> None:
    module = make(phi)
    buffers = dict(module.named_buffers())
    assert set(buffers) == {"filters", "stream"}
    assert buffers["filters"].shape == (C, P + L) and buffers["filters"].dtype == torch.float64
    np.testing.assert_array_equal(buffers["filters"].numpy(), phi)
    assert buffers["stream"].shape == (B, C, module.plan.buffer_length)
    module.prefill(inputs[..., :P])
    feed(module, inputs, P, P + 3)
    assert module.stream is buffers["stream"]  # updated in place, not replaced
    assert torch.equal(module.stream, module.state_dict()["stream"])
    assert module.stream.abs().max() > 0


def test_emit_advance_and_reset(phi, inputs) -> None:
    module, whole = make(phi), make(phi)
    for m in (module, whole):
        m.prefill(inputs[..., :P])
    for t in range(P, P + 6):
        u = inputs[..., t].contiguous()
        parts = [module.emit(u[:, :1], slice(0, 1)), module.emit(u[:, 1:], slice(1, C))]
        module.advance()
        assert torch.equal(torch.cat(parts, dim=1), whole(u))
    module.reset()
    assert module.position == 0 and not module.stream.any()
    with pytest.raises(RuntimeError, match="prefill"):
        module(inputs[..., P].contiguous())


def test_inputs_are_checked(phi) -> None:
    module = make(phi, prompt=0)
    with pytest.raises(ValueError, match="shape"):
        module(torch.zeros(B, C + 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="real numbers"):
        module(torch.zeros(B, C, dtype=torch.complex128))
    with pytest.raises(TypeError, match="device meta"):
        module(torch.zeros(B, C, dtype=torch.float64, device="meta"))
    assert module.position == 0
    # float32 and NumPy inputs are converted: the outputs of converting by hand.
    by_hand = make(phi, prompt=0)
    u = torch.linspace(-1, 1, B * C, dtype=torch.float32).reshape(B, C)
    assert torch.equal(module(u), by_hand(u.double()))
    assert torch.equal(module(u.numpy()), by_hand(u.double()))


# ---------------------------------------------------------------------- state dict
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("stop", [P, P + 1, P + 17])
def test_state_dict_resumes_bit_identically(phi, inputs, schedule: str, stop: int) -> None:
    source = make(phi, schedule=schedule)
    source.prefill(inputs[..., :P])
    feed(source, inputs, P, stop)
    state = roundtrip(source.state_dict())
    assert set(state) == {"filters", "stream", "_extra_state"}
    fresh = make(phi, schedule=schedule)
    assert str(fresh.load_state_dict(state)) == "<All keys matched successfully>"
    assert fresh.position == source.position == stop - P
    assert torch.equal(fresh.stream, source.stream)
    assert_identical(feed(fresh, inputs, stop, P + L), feed(source, inputs, stop, P + L))


def test_state_dict_mid_step_and_mid_prefill(phi, inputs) -> None:
    # Saved with some channels emitted (before advance), and with some channels prefilled.
    source = make(phi)
    source.prefill(inputs[..., :P])
    u = inputs[..., P].contiguous()
    source.emit(u[:, :1], slice(0, 1))
    fresh = make(phi)
    fresh.load_state_dict(roundtrip(source.state_dict()))
    for m in (source, fresh):
        m.emit(u[:, 1:], slice(1, C))
        m.advance()
    assert_identical(feed(fresh, inputs, P + 1, P + L), feed(source, inputs, P + 1, P + L))
    half = make(phi)
    half.prefill(inputs[:, :1, :P], slice(0, 1))
    other = make(phi)
    other.load_state_dict(half.state_dict())
    for m in (half, other):
        m.prefill(inputs[:, 1:, :P], slice(1, C))
    assert_identical(feed(other, inputs, P, P + 4), feed(half, inputs, P, P + 4))


def test_state_dict_is_a_snapshot(phi, inputs) -> None:
    source = make(phi)
    source.prefill(inputs[..., :P])
    feed(source, inputs, P, P + 3)
    state = source.state_dict()
    later = feed(source, inputs, P + 3, P + 10)  # the module goes on: the snapshot stays
    fresh = make(phi)
    fresh.load_state_dict(state)
    assert fresh.position == 3
    assert_identical(feed(fresh, inputs, P + 3, P + 10), later)


def test_load_takes_the_filters_from_the_state_dict(phi, inputs, rng) -> None:
    source = make(phi)
    source.prefill(inputs[..., :P])
    feed(source, inputs, P, P + 4)
    other = make(decaying_filters(rng, C, P + L))
    other.load_state_dict(source.state_dict())
    assert torch.equal(other.filters, source.filters)
    assert_identical(feed(other, inputs, P + 4, P + L), feed(source, inputs, P + 4, P + L))


def _edited(state: dict, key: str) -> dict:
    state = dict(state)
    if key == "stream":
        state["stream"] = state["stream"].clone()
        state["stream"][0, 0, 0] += 1.0
    elif key == "position":
        state["_extra_state"] = {**state["_extra_state"], "position": 1}
    elif key == "filters":
        state["filters"] = state["filters"][:, :-1]
    elif key == "masks":
        state["_extra_state"] = {**state["_extra_state"], "emitted": torch.zeros(C)}
    return state


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("stream", "edited or corrupted"),
        ("position", "edited or corrupted"),
        ("filters", "do not fit"),
        ("masks", "bool tensor"),
    ],
)
def test_load_refuses_edited_state_and_changes_nothing(phi, inputs, key, message) -> None:
    source = make(phi)
    source.prefill(inputs[..., :P])
    feed(source, inputs, P, P + 2)
    target = make(phi)
    target.prefill(inputs[..., :P])
    before = copy.deepcopy(target.state_dict())
    with pytest.raises(RuntimeError, match=message):
        target.load_state_dict(_edited(source.state_dict(), key))
    after = target.state_dict()
    for name, value in before["_extra_state"].items():
        same = after["_extra_state"][name]
        assert torch.equal(same, value) if isinstance(value, torch.Tensor) else same == value
    assert torch.equal(after["stream"], before["stream"])


def test_load_refuses_another_plan_and_reports_keys(phi) -> None:
    state = make(phi).state_dict()
    with pytest.raises(RuntimeError, match="another plan"):
        make(phi, schedule="naive").load_state_dict(state)
    with pytest.raises(RuntimeError, match="another plan"):
        OnlineConvModule(phi, L - 1, prompt=P, batch=B).load_state_dict(state)
    with pytest.raises(RuntimeError, match="buffer must have shape"):
        make(phi, batch=B + 1).load_state_dict(state)
    result = make(phi).load_state_dict({**state, "extra": torch.zeros(1)}, strict=False)
    assert result.unexpected_keys == ["extra"]
    with pytest.raises(RuntimeError, match="Missing key"):
        make(phi).load_state_dict({"filters": state["filters"]})


def test_nested_in_a_parent_module(phi, inputs) -> None:
    def parent() -> torch.nn.Module:
        net = torch.nn.Module()
        net.proj = torch.nn.Linear(C, C, dtype=torch.float64)
        net.conv = make(phi, prompt=0)
        return net

    source, fresh = parent(), parent()
    for t in range(5):
        source.conv(source.proj(inputs[..., t]).detach())
    state = roundtrip(source.state_dict())
    assert {"conv.filters", "conv.stream", "conv._extra_state", "proj.weight"} <= set(state)
    fresh.load_state_dict(state)
    u = inputs[..., 5].contiguous()
    assert torch.equal(fresh.conv(u), source.conv(u))


def test_deepcopy_is_independent_and_pickling_is_refused(phi, inputs) -> None:
    module = make(phi)
    module.prefill(inputs[..., :P])
    feed(module, inputs, P, P + 3)
    twin = copy.deepcopy(module)
    assert twin.stream is not module.stream and twin.position == 3
    assert_identical(feed(twin, inputs, P + 3, P + L), feed(module, inputs, P + 3, P + L))
    with pytest.raises(TypeError, match="state_dict"):
        torch.save(module, io.BytesIO())


# ---------------------------------------------------------------------- devices and dtypes
@pytest.mark.parametrize(
    "convert",
    [
        lambda m: m.half(),
        lambda m: m.bfloat16(),
        lambda m: m.to(torch.float16),
    ],
)
def test_low_precision_is_refused_and_changes_nothing(phi, inputs, convert) -> None:
    module = make(phi)
    module.prefill(inputs[..., :P])
    with pytest.raises(TypeError, match="float32 or float64"):
        convert(module)
    assert module.dtype == torch.float64 and module.stream.dtype == torch.float64
    reference = make(phi)
    reference.prefill(inputs[..., :P])
    assert_identical(feed(module, inputs, P, P + 5), feed(reference, inputs, P, P + 5))


def test_float_and_double_only_without_a_stream(phi, inputs) -> None:
    module = make(phi)
    module.float()  # fresh: rebuilt in float32
    assert module.dtype == module.stream.dtype == torch.float32
    module.prefill(inputs[..., :P].float())
    outs = feed(module, inputs.float(), P, P + 3)
    assert outs[0].dtype == torch.float32
    with pytest.raises(RuntimeError, match="mid-stream"):
        module.double()
    assert module.dtype == torch.float32 and module.position == 3
    module.reset()
    module.double()
    assert module.dtype == torch.float64
    np.testing.assert_array_equal(module.filters.numpy(), phi.astype(np.float32))


def test_moving_tensors_rebuilds_and_continues(phi, inputs) -> None:
    # On the CPU, a conversion that copies every tensor walks the path of a device move.
    module, reference = make(phi), make(phi)
    for m in (module, reference):
        m.prefill(inputs[..., :P])
        feed(m, inputs, P, P + 4)
    stream = module.stream
    assert module._apply(lambda t: t.clone()) is module
    assert module.stream is not stream and torch.equal(module.stream, stream)
    assert module.to("cpu") is module and module.cpu().device == torch.device("cpu")
    assert_identical(feed(module, inputs, P + 4, P + L), feed(reference, inputs, P + 4, P + L))


def test_moves_and_copies_take_no_snapshot(phi, inputs, monkeypatch) -> None:
    """The digest seals snapshots (``state_dict``); a move or a copy continues the stream
    without one, so the stream is not copied back to the host for it (the filters are, once:
    a new ``OnlineConv`` checks them)."""
    module, reference = make(phi), make(phi)
    for m in (module, reference):
        m.prefill(inputs[..., :P])
        feed(m, inputs, P, P + 4)
    read_back: list[tuple[int, ...]] = []
    to_numpy = TorchExecutor.to_numpy

    def counting(self, x):
        read_back.append(tuple(x.shape))
        return to_numpy(self, x)

    monkeypatch.setattr(TorchExecutor, "to_numpy", counting)
    module._apply(lambda t: t.clone())
    twin = copy.deepcopy(module)
    assert read_back and tuple(module.stream.shape) not in read_back
    monkeypatch.undo()
    rest = feed(reference, inputs, P + 4, P + L)
    assert_identical(feed(module, inputs, P + 4, P + L), rest)
    assert_identical(feed(twin, inputs, P + 4, P + L), rest)


def test_dtype_change_is_refused_mid_step(phi, inputs) -> None:
    """Channels emitted at step 0 hold inputs: converting would drop them."""
    module = OnlineConvModule(phi, L, batch=B)
    reference = OnlineConvModule(phi, L, batch=B)
    u = inputs[..., 0].contiguous()
    module.emit(u[:, :1], slice(0, 1))
    with pytest.raises(RuntimeError, match="mid-stream"):
        module.float()
    assert module.dtype == torch.float64
    y = torch.cat([module.emit(u[:, 1:], slice(1, C))], dim=1)
    module.advance()
    assert torch.equal(y, reference(u)[:, 1:])
    assert_identical(feed(module, inputs, 1, 6), feed(reference, inputs, 1, 6))


def test_devices_other_than_cpu_and_cuda_are_refused(phi) -> None:
    module = make(phi)
    with pytest.raises(ValueError, match="cpu' or 'cuda"):
        module.to("meta")
    assert module.device == torch.device("cpu") and module.stream.device.type == "cpu"


def test_constructor(phi) -> None:
    from_tensor = OnlineConvModule(torch.from_numpy(phi).float(), L, prompt=P)
    assert from_tensor.dtype == torch.float32 and from_tensor.device.type == "cpu"
    chosen = OnlineConvModule(phi, L, dtype=torch.float32, cuda_graphs=True, direct_below=4)
    assert chosen.dtype == torch.float32  # cuda_graphs: no effect on the CPU
    assert chosen.plan.spec.params["direct_below"] == 4
    assert "length=40" in repr(chosen) and "position=0" in repr(chosen)
    with pytest.raises(ValueError, match="taps"):
        OnlineConvModule(phi, P + L + 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        OnlineConvModule(phi, L, dtype=torch.int32)
    half = OnlineConvModule(phi, L, dtype=torch.float16)  # float16 in and out, float32 inside
    assert half(torch.ones((1, phi.shape[0]), dtype=torch.float16)).dtype == torch.float16


@needs_cuda
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_to_cuda_mid_stream_and_back(phi, inputs, cuda_graphs: bool) -> None:
    module, reference = make(phi, cuda_graphs=cuda_graphs), make(phi)
    for m in (module, reference):
        m.prefill(inputs[..., :P])
        feed(m, inputs, P, P + 7)
    module.to("cuda")
    assert module.device.type == "cuda"
    assert {b.device.type for b in module.buffers()} == {"cuda"}
    on_cuda = feed(module, inputs, P + 7, P + 20)
    on_cpu = feed(reference, inputs, P + 7, P + 20)
    for x, y in zip(on_cuda, on_cpu, strict=True):
        assert x.device.type == "cuda"
        assert (x.cpu() - y).abs().max() <= REL64 * y.abs().max()
    # A CUDA state dict resumes bit-identically in a fresh CUDA module; then back to the CPU.
    fresh = make(phi, device="cuda", cuda_graphs=cuda_graphs)
    fresh.load_state_dict(roundtrip(module.state_dict()))
    assert_identical(feed(fresh, inputs, P + 20, P + 30), feed(module, inputs, P + 20, P + 30))
    module.cpu()
    reference_state = module.state_dict()
    assert reference_state["stream"].device.type == "cpu"
    tail = feed(module, inputs, P + 30, P + L)
    assert all(y.device.type == "cpu" for y in tail)
    want = oracle(inputs.numpy(), phi)[..., P + 30 :]
    got = torch.stack(tail, dim=-1).numpy()
    assert np.abs(got - want).max() <= REL64 * np.abs(want).max()
