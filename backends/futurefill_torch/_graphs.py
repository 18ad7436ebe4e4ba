"""CUDA graphs of the FutureFill work after a step: one graph per step pattern of the plan.

A plan's :attr:`~futurefill.Plan.step_patterns` lists the distinct sequences of task shapes
that run after a step; the steps sharing a pattern differ only in where their tasks sit. A
graph replays fixed kernels on fixed memory, so the graphed body reads its blocks and writes
its results through index tensors computed on the device: every task's source offset is in
one device tensor (``offsets``), and before a replay the host sets the first task row of the
step (``row``) with ``fill_`` (a kernel launch with the value as argument, no
synchronisation).

The same body runs without capture (``capture=False``), which is how its index arithmetic is
tested on machines without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from futurefill.executor import ConvState
from futurefill.plan import TaskShape

__all__ = ["PatternGraphs"]


@dataclass
class _PatternBody:
    """The tasks of one step pattern, as kernels on fixed tensors, and its captured graph."""

    buffer: torch.Tensor
    shapes: tuple[TaskShape, ...]
    spectra: tuple[torch.Tensor, ...]
    offsets: torch.Tensor
    row: torch.Tensor
    graph: Any = None

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

    def capture(self) -> None:
        """Warm up (cuFFT plans, allocator), then record :meth:`body` as a CUDA graph.

        The warm-up really runs the body on the offsets in ``row``, so the caller must set
        ``row`` to a step of this pattern first.
        """
        self.warm_up()
        self.record()

    def warm_up(self) -> None:
        """Run :meth:`body` once on a side stream and undo what it added to the buffer."""
        backup = self.buffer.clone()
        if self.buffer.is_cuda:
            side = torch.cuda.Stream(device=self.buffer.device)
            side.wait_stream(torch.cuda.current_stream(self.buffer.device))
            with torch.cuda.stream(side):
                self.body()
            torch.cuda.current_stream(self.buffer.device).wait_stream(side)
        else:
            self.body()
        self.buffer.copy_(backup)

    def record(self) -> None:
        """Capture :meth:`body` as a CUDA graph (after :meth:`warm_up`)."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.body()
        self.graph = graph


class PatternGraphs:
    """Per-state graphs of the plan's step patterns (built on first use).

    Parameters
    ----------
    state : ConvState
        The state whose plan and buffer the graphs serve.
    capture : bool
        Capture CUDA graphs (CUDA only); otherwise run the same bodies eagerly.
    """

    def __init__(self, state: ConvState, *, capture: bool) -> None:
        device = state.buffer.device
        self.capture = capture
        self.patterns = state.plan.step_patterns
        offsets = np.asarray(self.patterns.offsets, dtype=np.int64)  # a writable copy
        self.offsets = torch.as_tensor(offsets, device=device)
        self.row = torch.zeros(1, dtype=torch.int64, device=device)
        self.buffer: torch.Tensor = state.buffer
        self.bodies: dict[int, _PatternBody] = {}

    def run(self, state: ConvState, step: int) -> None:
        """Run the tasks planned after ``step`` on ``state.buffer``."""
        pattern = self.patterns.pattern_of_step.item(step)
        if pattern == 0:
            return
        if state.buffer is not self.buffer:
            self._rebind(state)
        # The row first: capturing a new pattern's graph runs its body once, on this step.
        self.row.fill_(state.plan.task_ptr.item(step))
        body = self.bodies.get(pattern)
        if body is None:
            body = self.bodies[pattern] = self._make(state, pattern)
        if body.graph is None:
            body.body()
        else:
            body.graph.replay()

    def _rebind(self, state: ConvState) -> None:
        """Graphs hold the address of the buffer they were captured on: keep using it."""
        if self.buffer.shape != state.buffer.shape or self.buffer.dtype != state.buffer.dtype:
            self.buffer = state.buffer
            self.bodies.clear()
        else:
            self.buffer.copy_(state.buffer)
            state.buffer = self.buffer

    def _make(self, state: ConvState, pattern: int) -> _PatternBody:
        shapes = tuple(self.patterns.shapes[s] for s in self.patterns.patterns[pattern])
        body = _PatternBody(
            buffer=state.buffer,
            shapes=shapes,
            spectra=tuple(state.spectra[shape.spectrum] for shape in shapes),
            offsets=self.offsets,
            row=self.row,
        )
        if self.capture:
            body.capture()
        return body
