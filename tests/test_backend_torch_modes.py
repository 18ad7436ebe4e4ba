"""The torch executor and ``OnlineConvModule`` under ``torch.compile`` and ``inference_mode``.

``torch.compile`` traced the stateful step into graphs that read the wrong slots (relative
error 0.99 with the naive schedule at C = 2, 0.29 with the continuous one at C = 4, from the
fourth step on, with the ``aot_eager`` and ``inductor`` backends): every kernel and every
module method is now a graph break that runs eagerly. A state built under
``torch.inference_mode()`` held inference tensors, which cannot be updated in place once the
mode is left: states are now ordinary tensors.

Tolerance: outputs within ``1e-12`` of the largest ``numpy.convolve`` oracle output (float64,
a few FFT round trips of relative error ~1e-16 log2 n each); the failures above are O(1).
"""

from __future__ import annotations

import numpy as np
import pytest

import futurefill

from .conftest import decaying_filters, oracle, selected_backends

torch = pytest.importorskip("torch")
if "torch" not in selected_backends():
    pytest.skip("torch is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)

from futurefill_torch import OnlineConvModule, TorchExecutor  # noqa: E402

REL64 = 1e-12  # see the module docstring
STEPS = 6  # the compiled steps went wrong from the fourth on


def assert_exact(ys: list[torch.Tensor], u: np.ndarray, phi: np.ndarray) -> None:
    y = torch.stack(ys, dim=-1).numpy()
    ref = oracle(u, phi)
    assert np.abs(y - ref).max() <= REL64 * np.abs(ref).max()


def test_compiled_steps_are_exact(rng) -> None:
    """The default (inductor) backend: a compiled module, and a compiled function stepping an
    ``OnlineConv``, with computation of its own around the step."""
    phi2 = decaying_filters(rng, 2, STEPS)
    u2 = rng.standard_normal((1, 2, STEPS))
    module = torch.compile(OnlineConvModule(phi2, STEPS, schedule="naive"))
    assert_exact([module(torch.from_numpy(u2[..., t].copy())) for t in range(STEPS)], u2, phi2)

    phi4 = decaying_filters(rng, 4, STEPS)
    u4 = rng.standard_normal((1, 4, STEPS))
    conv = futurefill.OnlineConv(phi4, STEPS, backend=TorchExecutor(), direct_below=1)

    @torch.compile
    def step(x: torch.Tensor) -> torch.Tensor:
        return conv.step(x * 2.0) * 0.5

    assert_exact([step(torch.from_numpy(u4[..., t].copy())) for t in range(STEPS)], u4, phi4)


def test_fullgraph_compilation_is_refused(rng) -> None:
    """A stateful step cannot be one graph: ``fullgraph=True`` fails at the graph break."""
    module = OnlineConvModule(decaying_filters(rng, 2, 4), 4)
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    with pytest.raises(Exception, match="disable"):
        compiled(torch.zeros((1, 2), dtype=torch.float64))
    assert module.position == 0


def test_module_built_under_inference_mode_steps_outside_it(rng) -> None:
    C, L = 3, 12
    phi = decaying_filters(rng, C, L)
    u = rng.standard_normal((1, C, L))
    inputs = [torch.from_numpy(u[..., t].copy()) for t in range(L)]
    with torch.inference_mode():
        module = OnlineConvModule(torch.from_numpy(phi), L)
        ys = [module(x) for x in inputs[:4]]
        snapshot = module.state_dict()
    ys += [module(x) for x in inputs[4:8]]
    assert not module.stream.is_inference()
    assert_exact(ys + [module(x) for x in inputs[8:]], u, phi)

    # a state dict loaded under inference mode, the stream continued outside it
    resumed = OnlineConvModule(phi, L)
    with torch.inference_mode():
        resumed.load_state_dict(snapshot)
    assert_exact(ys[:4] + [resumed(x) for x in inputs[4:]], u, phi)


def test_online_conv_built_under_inference_mode_steps_outside_it(rng) -> None:
    C, L, P = 2, 10, 3
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((1, C, P + L))
    with torch.inference_mode():
        conv = futurefill.OnlineConv(phi, L, prompt=P, backend=TorchExecutor())
    ys = list(conv.prefill(torch.from_numpy(u[..., :P])).unbind(-1))
    ys += [conv.step(torch.from_numpy(u[..., t].copy())) for t in range(P, P + L)]
    assert_exact(ys, u, phi)
