"""How the torch executor's CUDA graphs are planned and recorded, checked without a GPU.

:mod:`futurefill_torch._graphs` decides on the host which step patterns get a graph, when
they are captured (all when a state is built), and that one memory pool, one capture stream
and ``capture_error_mode="thread_local"`` serve all captures of a state on its own device.
Here a stand-in recorder replays the bodies eagerly (so the outputs are checked against the
``numpy.convolve`` oracle, within ``1e-12`` of the largest as in ``test_backend_torch.py``),
and the CUDA calls of :class:`CudaRecorder` are replaced by recording fakes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

import futurefill

from .conftest import decaying_filters, oracle, run_online, selected_backends

torch = pytest.importorskip("torch")
if not {"torch", "torch_cuda", "torch_cuda_graphs"} & set(selected_backends()):
    pytest.skip("torch is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)

from futurefill_torch import TorchExecutor  # noqa: E402
from futurefill_torch._graphs import (  # noqa: E402
    CudaRecorder,
    PatternGraphs,
    capture_steps,
    pool_bytes,
)

REL64 = 1e-12
CASES = (("continuous", {"direct_below": 1}), ("epoched", {"epoch": 5}), ("continuous", {}))


class StandInRecorder:
    """Records what :class:`PatternGraphs` asks of a recorder; "graphs" replay eagerly."""

    def __init__(self) -> None:
        self.warm_up_rows: list[int] = []
        self.recorded = 0
        self.outside_guard = 0
        self._inside = 0

    @contextlib.contextmanager
    def guard(self):
        self._inside += 1
        try:
            yield
        finally:
            self._inside -= 1

    def warm_up(self, body) -> None:
        self.warm_up_rows.append(int(body.__self__.row.item()))
        body()

    def record(self, body):
        self.recorded += 1
        self.outside_guard += self._inside == 0
        return body

    def held_bytes(self) -> int:
        return 4096


def first_steps(pattern_of_step: np.ndarray) -> dict[int, int]:
    """The oracle of :func:`capture_steps`: a plain loop."""
    found: dict[int, int] = {}
    for step, pattern in enumerate(pattern_of_step.tolist()):
        if pattern and pattern not in found:
            found[pattern] = step
    return found


@pytest.mark.parametrize(("schedule", "params"), CASES)
def test_capture_steps_names_each_pattern_at_its_first_step(schedule, params) -> None:
    plan = futurefill.make_plan(200, schedule, prompt=3, **params)
    steps = capture_steps(plan.step_patterns)
    assert steps == first_steps(np.asarray(plan.step_patterns.pattern_of_step))
    assert list(steps.values()) == sorted(steps.values())  # in the order they are first run
    assert set(steps) == set(range(1, len(plan.step_patterns.patterns)))


@pytest.mark.parametrize(("schedule", "params"), CASES)
def test_every_graph_is_captured_when_the_state_is_built(rng, schedule, params) -> None:
    B, C, P, L = 2, 3, 4, 64
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((B, C, P + L))
    conv = futurefill.OnlineConv(
        phi, L, schedule=schedule, prompt=P, batch=B, backend=TorchExecutor(), **params
    )
    y_prompt = conv.prefill(torch.from_numpy(u[..., :P]))
    before = conv.state.buffer.clone()
    recorder = StandInRecorder()
    graphs = conv.state.workspace = PatternGraphs(conv.state, recorder)
    expected = first_steps(np.asarray(conv.plan.step_patterns.pattern_of_step))
    # one capture per pattern, inside the device guard, before any step
    assert recorder.recorded == len(expected) == len(graphs.bodies)
    assert recorder.outside_guard == 0
    # each warm-up read the offsets of the first step of its pattern (valid slots) ...
    task_ptr = conv.plan.task_ptr
    assert recorder.warm_up_rows == [int(task_ptr[s]) for s in expected.values()]
    # ... and the buffer is as it was
    assert torch.equal(conv.state.buffer, before)
    assert graphs.pool_bytes == 4096 + 8 * (conv.plan.num_tasks + 1)
    # decoding captures nothing more, and the replayed bodies are exact
    rest = run_online_from(conv, u, P)
    assert recorder.recorded == len(expected)
    y = np.concatenate([y_prompt.numpy(), rest], axis=-1)
    ref = oracle(u, phi)
    assert np.abs(y - ref).max() <= REL64 * np.abs(ref).max()


def run_online_from(conv: futurefill.OnlineConv, u: np.ndarray, start: int) -> np.ndarray:
    """Host outputs of the steps after a prompt of ``start`` inputs."""
    ys = [conv.step(torch.from_numpy(u[..., t].copy())).numpy() for t in range(start, u.shape[-1])]
    return np.stack(ys, axis=-1)


def test_workspace_size_reports_the_graphs_memory(rng) -> None:
    phi = decaying_filters(rng, 2, 40)
    ex = TorchExecutor()
    conv = futurefill.OnlineConv(phi, 40, backend=ex, direct_below=1)
    assert ex.workspace_size(conv.state) == {}  # no graphs: nothing beyond the arrays
    conv.state.workspace = PatternGraphs(conv.state, StandInRecorder())
    assert ex.workspace_size(conv.state) == {"cuda_graphs_bytes": conv.state.workspace.pool_bytes}
    assert ex.workspace_size(conv.state)["cuda_graphs_bytes"] > 4096
    u = rng.standard_normal((1, 2, 40))
    ref = oracle(u, phi)
    assert np.abs(run_online(conv, u) - ref).max() <= REL64 * np.abs(ref).max()


def test_pool_bytes_counts_the_pools_segments_on_its_device() -> None:
    segments = [
        {"device": 0, "segment_pool_id": (0, 7), "total_size": 2 << 20},
        {"device": 0, "segment_pool_id": (0, 7), "total_size": 512},
        {"device": 1, "segment_pool_id": (0, 7), "total_size": 1 << 20},  # another device
        {"device": 0, "segment_pool_id": (0, 0), "total_size": 1 << 30},  # the default pool
        {"device": 0, "segment_pool_id": (1, 7), "total_size": 8},  # another pool
    ]
    assert pool_bytes(segments, (0, 7), 0) == (2 << 20) + 512
    assert pool_bytes(segments, (0, 7), 1) == 1 << 20
    assert pool_bytes(segments, (5, 5), 0) == 0


class FakeCuda:
    """Stand-ins for the ``torch.cuda`` calls :class:`CudaRecorder` makes, recording them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.devices: list[Any] = []
        self.captures: list[dict[str, Any]] = []
        self.pools = 0
        fake = self

        class Graph:
            def replay(self) -> None:
                return None

        @contextlib.contextmanager
        def device(dev):
            fake.devices.append(dev)
            yield

        @contextlib.contextmanager
        def graph(g, **kwargs):
            fake.captures.append({"graph": g, **kwargs})
            yield

        def graph_pool_handle():
            fake.pools += 1
            return (0, fake.pools)

        class Stream:
            def __init__(self, device=None) -> None:
                self.device = device

            def wait_stream(self, other) -> None:
                return None

        cuda = torch.cuda
        for name, value in {
            "device": device,
            "graph": graph,
            "CUDAGraph": Graph,
            "graph_pool_handle": graph_pool_handle,
            "Stream": Stream,
            "stream": lambda s: contextlib.nullcontext(),
            "current_stream": lambda dev=None: Stream(dev),
        }.items():
            monkeypatch.setattr(cuda, name, value)


def test_cuda_recorder_shares_one_pool_and_stream_on_the_states_device(monkeypatch) -> None:
    fake = FakeCuda(monkeypatch)
    dev = torch.device("cuda", 1)
    recorder = CudaRecorder(dev)
    assert fake.pools == 1 and recorder.pool == (0, 1)
    assert recorder.stream.device == dev
    ran: list[str] = []
    with recorder.guard():
        recorder.warm_up(lambda: ran.append("warm-up"))
        replays = [recorder.record(lambda i=i: ran.append(f"capture {i}")) for i in range(2)]
    assert ran == ["warm-up", "capture 0", "capture 1"]
    assert fake.pools == 1  # one pool for every capture of the state
    assert [c["pool"] for c in fake.captures] == [recorder.pool] * 2
    assert [c["stream"] for c in fake.captures] == [recorder.stream] * 2
    assert {c["capture_error_mode"] for c in fake.captures} == {"thread_local"}
    assert replays == [c["graph"].replay for c in fake.captures]
    assert fake.devices and all(d == dev for d in fake.devices)


def test_synchronize_waits_on_the_executors_device(monkeypatch) -> None:
    """Not on the current device: an executor on cuda:1 waits for cuda:1."""
    waited: list[Any] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    ex = TorchExecutor()
    ex.synchronize()
    assert waited == []  # the CPU has nothing queued
    ex.device = torch.device("cuda", 1)  # what _resolve_device gives for "cuda:1"
    ex.synchronize()
    assert waited == [torch.device("cuda", 1)]
