"""CUDA graphs for the FutureFill tasks of the continuous schedule, one graph per task size.

A graph replays fixed kernels on fixed memory, but the tasks of one size differ in where their
block starts. The graphed body therefore reads the block and writes the result through index
tensors computed on the device from a one-element ``offset`` tensor; before a replay the host
sets the offset with ``fill_`` (a kernel launch with the value as argument, no synchronisation).

The same body runs without capture (``capture=False``), which is how its index arithmetic is
tested on machines without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from futurefill.executor import ConvState

__all__ = ["TaskGraphs"]

#: (source length, target length, filter start, filter stop, FFT size, target - source start)
TaskShape = tuple[int, int, int, int, int, int]


@dataclass
class _StaticTask:
    """One task shape: index tensors, the spectrum, and (on CUDA) the captured graph."""

    buffer: torch.Tensor
    spectrum: torch.Tensor
    n: int
    read_start: int
    src_index: torch.Tensor
    dst_index: torch.Tensor
    offset: torch.Tensor
    graph: Any = None

    def body(self) -> None:
        buf = self.buffer
        block = buf.index_select(2, self.src_index + self.offset)
        spectrum = torch.fft.rfft(block, n=self.n, dim=-1)
        spectrum.mul_(self.spectrum)
        z = torch.fft.irfft(spectrum, n=self.n, dim=-1)
        m = self.dst_index.shape[0]
        # Targets are distinct, so each entry gets exactly one addition: deterministic.
        buf.index_add_(2, self.dst_index + self.offset, z.narrow(2, self.read_start, m))

    def capture(self) -> None:
        """Warm up (cuFFT plans, allocator) on a side stream, then capture :meth:`body`."""
        backup = self.buffer.clone()  # the warm-up really adds into the buffer: undo it
        side = torch.cuda.Stream(device=self.buffer.device)
        side.wait_stream(torch.cuda.current_stream(self.buffer.device))
        with torch.cuda.stream(side):
            self.body()
        torch.cuda.current_stream(self.buffer.device).wait_stream(side)
        self.buffer.copy_(backup)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.body()
        self.graph = graph


@dataclass
class TaskGraphs:
    """Per-state cache of graphed tasks, keyed by task shape.

    Parameters
    ----------
    capture : bool
        Capture CUDA graphs (CUDA only); otherwise run the same body eagerly.
    """

    capture: bool
    tasks: dict[TaskShape, _StaticTask] = field(default_factory=dict)
    buffer: torch.Tensor | None = None

    def run(self, state: ConvState, i: int) -> None:
        """Run task ``i`` of ``state.plan`` on ``state.buffer``."""
        if state.buffer is not self.buffer:
            self._rebind(state)
        plan = state.plan
        o = plan.origin
        a, b = plan.src_start.item(i) - o, plan.src_stop.item(i) - o
        c, d = plan.dst_start.item(i) - o, plan.dst_stop.item(i) - o
        lo, hi, n = plan.filter_start.item(i), plan.filter_stop.item(i), plan.fft_size.item(i)
        shape = (b - a, d - c, lo, hi, n, c - a)
        task = self.tasks.get(shape)
        if task is None:
            task = self.tasks[shape] = self._make(state, shape)
        task.offset.fill_(a)
        if task.graph is None:
            task.body()
        else:
            task.graph.replay()

    def _rebind(self, state: ConvState) -> None:
        """Graphs hold the address of the buffer they were captured on: keep using it."""
        if self.buffer is None or self.buffer.shape != state.buffer.shape:
            self.buffer = state.buffer
            self.tasks.clear()
        else:
            self.buffer.copy_(state.buffer)
            state.buffer = self.buffer

    def _make(self, state: ConvState, shape: TaskShape) -> _StaticTask:
        k, m, lo, hi, n, shift = shape
        buf = state.buffer
        index = {"dtype": torch.int64, "device": buf.device}
        task = _StaticTask(
            buffer=buf,
            spectrum=state.spectra[(lo, hi, n)],
            n=n,
            read_start=shift - lo,
            src_index=torch.arange(k, **index),
            dst_index=torch.arange(shift, shift + m, **index),
            offset=torch.zeros(1, **index),
        )
        if self.capture:
            task.capture()
        return task
