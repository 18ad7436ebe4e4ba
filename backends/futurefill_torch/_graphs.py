"""CUDA graphs of the FutureFill work after a step: one graph per step pattern of the plan.

A plan's :attr:`~futurefill.Plan.step_patterns` lists the distinct sequences of task shapes
that run after a step; the steps sharing a pattern differ only in where their tasks sit. A
graph replays fixed kernels on fixed memory, so the graphed body reads its blocks and writes
its results through index tensors computed on the device: every task's source offset is in
one device tensor (``offsets``), and before a replay the host sets the first task row of the
step (``row``) with ``fill_`` (a kernel launch with the value as argument, no
synchronisation).

The decisions are made here, on the host, and tested without a GPU:

* **which** graphs: one per non-empty pattern the plan runs (:func:`capture_steps`), each
  warmed up on the offsets of the first step that runs it;
* **when**: all of them when the state is prepared (and again if the buffer they serve is
  replaced by one of another shape), never in the middle of a decode;
* **memory**: one graph memory pool per state, shared by all its graphs. Sharing is safe
  because a state's graphs replay one at a time on one stream and nothing a graph allocates
  outlives its replay (its results are added into the state's buffer, which is not in the
  pool), so a later capture may reuse what an earlier one freed. The pool's size is measured
  once after the captures (:func:`pool_bytes`, :attr:`PatternGraphs.pool_bytes`).

The CUDA calls themselves are in :class:`CudaRecorder` (the state's device made current, a
capture stream of its own, ``capture_error_mode="thread_local"`` so that another thread's
CUDA calls cannot invalidate a capture). Without a recorder the same bodies run eagerly, which
is how the index arithmetic is tested on machines without a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from futurefill.executor import ConvState
from futurefill.plan import StepPatterns, TaskShape

__all__ = ["CudaRecorder", "PatternGraphs", "Recorder", "capture_steps", "pool_bytes"]

Body = Callable[[], None]


def capture_steps(patterns: StepPatterns) -> dict[int, int]:
    """Every non-empty step pattern a plan runs, with the first step that runs it.

    Parameters
    ----------
    patterns : StepPatterns
        The plan's :attr:`~futurefill.Plan.step_patterns`.

    Returns
    -------
    dict
        ``{pattern: step}`` in the order the patterns are first run; the warm-up before a
        capture runs the pattern's tasks at that step's offsets (valid slots of the buffer).
    """
    pattern_of_step = np.asarray(patterns.pattern_of_step)
    ids, first = np.unique(pattern_of_step, return_index=True)
    order = np.argsort(first, kind="stable")
    return {int(ids[i]): int(first[i]) for i in order if ids[i] != 0}


def pool_bytes(segments: Iterable[Mapping[str, Any]], pool: Any, device_index: int) -> int:
    """Bytes of the allocator segments (``torch.cuda.memory_snapshot()``) owned by ``pool``
    on device ``device_index``."""
    key = tuple(pool)
    return sum(
        int(s["total_size"])
        for s in segments
        if tuple(s["segment_pool_id"]) == key and int(s["device"]) == device_index
    )


class Recorder(Protocol):
    """How bodies become graphs (:class:`CudaRecorder`, or a stand-in in tests)."""

    def guard(self) -> contextlib.AbstractContextManager[Any]:
        """The context captures and replays run in (the state's device current)."""

    def warm_up(self, body: Body) -> None:
        """Run ``body`` once before its capture (plans, allocator), as the capture will."""

    def record(self, body: Body) -> Body:
        """Capture ``body``; return what replays it."""

    def held_bytes(self) -> int:
        """Bytes of device memory held by the graphs recorded so far."""


class CudaRecorder:
    """CUDA graphs of one state: one memory pool and one capture stream, on one device.

    Parameters
    ----------
    device : torch.device
        The CUDA device of the state's buffer.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        with torch.cuda.device(device):
            self.pool = torch.cuda.graph_pool_handle()
            self.stream = torch.cuda.Stream(device=device)

    def guard(self) -> contextlib.AbstractContextManager[Any]:
        return torch.cuda.device(self.device)

    def warm_up(self, body: Body) -> None:
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            body()
        current.wait_stream(self.stream)

    def record(self, body: Body) -> Body:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(
            graph, pool=self.pool, stream=self.stream, capture_error_mode="thread_local"
        ):
            body()
        return graph.replay

    def held_bytes(self) -> int:
        return pool_bytes(torch.cuda.memory_snapshot(), self.pool, int(self.device.index or 0))


@dataclass
class _PatternBody:
    """The tasks of one step pattern, as kernels on fixed tensors, and what replays them."""

    buffer: torch.Tensor
    shapes: tuple[TaskShape, ...]
    spectra: tuple[torch.Tensor, ...]
    offsets: torch.Tensor
    row: torch.Tensor
    replay: Body | None = None

    def body(self) -> None:
        buf = self.buffer
        for i, shape in enumerate(self.shapes):
            a = self.offsets.index_select(0, self.row + i)
            block = buf.index_select(2, self._arange(0, shape.src_length) + a)
            spectrum = torch.fft.rfft(block, n=shape.fft_size, dim=-1)
            spectrum.mul_(self.spectra[i])
            z = torch.fft.irfft(spectrum, n=shape.fft_size, dim=-1)
            m = shape.dst_length
            targets = self._arange(shape.shift, shape.shift + m) + a
            # Targets are distinct, so each entry gets exactly one addition: deterministic.
            buf.index_add_(2, targets, z.narrow(2, shape.read_start, m))

    def _arange(self, start: int, stop: int) -> torch.Tensor:
        return torch.arange(start, stop, dtype=torch.int64, device=self.buffer.device)


class PatternGraphs:
    """Per-state bodies of the plan's step patterns, all built (and captured) at once.

    Parameters
    ----------
    state : ConvState
        The state whose plan and buffer the graphs serve.
    recorder : Recorder or None
        Captures the bodies as graphs (:class:`CudaRecorder`); ``None`` runs them eagerly.
    """

    def __init__(self, state: ConvState, recorder: Recorder | None = None) -> None:
        device = state.buffer.device
        self.recorder = recorder
        self.patterns = state.plan.step_patterns
        offsets = np.asarray(self.patterns.offsets, dtype=np.int64)  # a writable copy
        self.offsets = torch.as_tensor(offsets, device=device)
        self.row = torch.zeros(1, dtype=torch.int64, device=device)
        self.buffer: torch.Tensor = state.buffer
        self.bodies: dict[int, _PatternBody] = {}
        #: The token-step graphs being captured (:mod:`futurefill_torch._decode_graphs`):
        #: meanwhile the pattern bodies run inline, at the task row the host sets per replay.
        self.decode_capture: Any = None
        #: Device memory held for the graphs (their pool and the offset tensors), in bytes.
        self.pool_bytes = 0
        self._build(state)

    def guard(self) -> contextlib.AbstractContextManager[Any]:
        """The context a replay runs in (the state's device current)."""
        return contextlib.nullcontext() if self.recorder is None else self.recorder.guard()

    def run(self, state: ConvState, step: int) -> None:
        """Run the tasks planned after ``step`` on ``state.buffer``."""
        pattern = self.patterns.pattern_of_step.item(step)
        if pattern == 0:
            return
        if state.buffer is not self.buffer:
            self._rebind(state)
        body = self.bodies[pattern]
        if self.decode_capture is not None:
            body.body()  # part of the token step's graph; its row is set before each replay
            return
        with self.guard():
            self.row.fill_(state.plan.task_ptr.item(step))
            (body.replay or body.body)()

    def _rebind(self, state: ConvState) -> None:
        """Graphs hold the address of the buffer they were captured on: keep using it."""
        if self.buffer.shape != state.buffer.shape or self.buffer.dtype != state.buffer.dtype:
            self.buffer = state.buffer
            self._build(state)
        else:
            self.buffer.copy_(state.buffer)
            state.buffer = self.buffer

    def _build(self, state: ConvState) -> None:
        """A body for every pattern the plan runs; with a recorder, each warmed up on the
        first step of its pattern and captured, the buffer restored afterwards."""
        self.bodies.clear()  # graphs of another buffer give their pool memory back first
        recorder = self.recorder
        steps = capture_steps(self.patterns)
        if recorder is None:
            self.bodies.update((p, self._body(state, p)) for p in steps)
            return
        task_ptr = state.plan.task_ptr
        with recorder.guard():
            backup = self.buffer.clone()  # the warm-ups really add into the buffer
            for pattern, step in steps.items():
                body = self._body(state, pattern)
                self.row.fill_(task_ptr.item(step))
                recorder.warm_up(body.body)
                body.replay = recorder.record(body.body)
                self.bodies[pattern] = body
            self.buffer.copy_(backup)
        tables = self.offsets.numel() + self.row.numel()
        self.pool_bytes = recorder.held_bytes() + tables * self.offsets.element_size()

    def _body(self, state: ConvState, pattern: int) -> _PatternBody:
        shapes = tuple(self.patterns.shapes[s] for s in self.patterns.patterns[pattern])
        return _PatternBody(
            buffer=self.buffer,
            shapes=shapes,
            spectra=tuple(state.spectra[shape.spectrum] for shape in shapes),
            offsets=self.offsets,
            row=self.row,
        )
