"""A model's whole token step as one CUDA graph per step pattern (across-layer batching).

A decode step of a reference model runs every layer (its projections, its ``emit`` of the
shared online convolution, its MLP) and then one ``advance`` (the FutureFill tasks of the
step). :class:`DecodeGraphs` captures all of it -- the body the decoder hands over through
:meth:`futurefill.executor.Executor.capture_decode` -- as one graph per *decode key*: the
steps sharing a key differ only in where they read and write, so one graph replays them all
once the host has set three device integers with ``fill_`` (no synchronisation): the step's
buffer slot, the first slot of its window, and its first task row (read by the pattern bodies
of :class:`futurefill_torch._graphs.PatternGraphs`). A key is ``(window width, step
pattern)``: the width fixes the window's shape, the pattern the shapes of the step's tasks.

The decisions are made on the host and tested without a GPU (the recorder stand-in of
``tests/test_backend_torch_graphs.py`` replays the bodies eagerly):

* **which** graphs: one per key the steps still to run have (:func:`decode_steps`), each
  warmed up and captured at the first step that has it; none when there are more than
  :data:`MAX_DECODE_GRAPHS` keys (the naive schedule: every step has its own width), and the
  decoder then runs its Python step;
* **when**: all at once when the decoder starts (after its prompt), never in the middle of a
  decode; the buffer, the mixer states and the step counter are restored afterwards;
* **memory**: the pool of the state's pattern graphs (one pool per state), shared because the
  graphs replay one at a time on one stream; :attr:`PatternGraphs.pool_bytes` is measured
  again after the captures.

Inputs and outputs are static tensors: the tokens ``(B,)`` and the mixer states are copied
into the graph's own before a replay (only when they are not already those), the logits are
read from the captured output (and cloned: the next replay overwrites it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from futurefill.executor import ConvState
from futurefill.plan import Plan

from ._graphs import PatternGraphs

__all__ = [
    "MAX_DECODE_GRAPHS",
    "DecodeGraphs",
    "decode_steps",
    "indexed_emit",
    "token_step_program",
]

#: More keys than this and no token step is captured (each graph holds its own kernels and
#: its activations in the pool): the naive schedule, whose window widens at every step.
MAX_DECODE_GRAPHS = 128

State = tuple[torch.Tensor, ...]
Body = Callable[[torch.Tensor, list[State]], tuple[torch.Tensor, list[State]]]


def decode_steps(plan: Plan, start: int = 0) -> dict[tuple[int, int], int] | None:
    """The decode keys of the steps ``start ..`` of ``plan``, each with its first step.

    Parameters
    ----------
    plan : Plan
    start : int
        The first step still to run.

    Returns
    -------
    dict or None
        ``{(window width, step pattern): first step}`` in the order the keys first occur;
        ``None`` when there are more than :data:`MAX_DECODE_GRAPHS` keys.
    """
    width = np.asarray(plan.slot[start:], np.int64) - np.asarray(plan.window_slot[start:])
    pattern = np.asarray(plan.step_patterns.pattern_of_step[start:], np.int64)
    keys = np.stack([width, pattern], axis=1)
    unique, first = np.unique(keys, axis=0, return_index=True)
    if len(unique) > MAX_DECODE_GRAPHS:
        return None
    order = np.argsort(first, kind="stable")
    return {(int(unique[i, 0]), int(unique[i, 1])): start + int(first[i]) for i in order}


class DecodeGraphs:
    """The captured token steps of one decode: ``program(tokens, states) -> (logits, states)``.

    Parameters
    ----------
    state : ConvState
        The shared online convolution's state (its workspace the pattern graphs).
    graphs : PatternGraphs
        Its pattern graphs, with their recorder (their pool serves these graphs too).
    body : callable
        ``body(tokens, states) -> (logits, states)``: one token step of the model through the
        interpreter (every layer's ``emit``, then ``advance``).
    tokens : torch.Tensor, shape (B,)
        Example tokens (their shape and dtype).
    states : list of tuples of torch.Tensor
        The mixer states the first replay starts from.
    steps : dict
        :func:`decode_steps` of the plan from the current step.
    """

    def __init__(
        self,
        state: ConvState,
        graphs: PatternGraphs,
        body: Body,
        tokens: torch.Tensor,
        states: Sequence[State],
        steps: dict[tuple[int, int], int],
    ) -> None:
        recorder = graphs.recorder
        if recorder is None:
            raise ValueError("the pattern graphs have no recorder to capture with")
        device = state.buffer.device
        self.state, self.graphs, self.body = state, graphs, body
        self.tokens = tokens.clone()
        self.states: list[State] = [tuple(a.clone() for a in s) for s in states]
        self.slot = torch.zeros(1, dtype=torch.int64, device=device)
        self.start = torch.zeros(1, dtype=torch.int64, device=device)
        self.keys = steps
        self.logits: dict[tuple[int, int], torch.Tensor] = {}
        self.replays: dict[tuple[int, int], Callable[[], None]] = {}
        self._windows: dict[int, torch.Tensor] = {}
        with recorder.guard():
            buffer, kept = state.buffer.clone(), [tuple(a.clone() for a in s) for s in self.states]
            step = state.step
            for key, first in steps.items():
                run = self._runner(key, first)
                self._set(first)
                try:
                    recorder.warm_up(run)
                    self.replays[key] = recorder.record(run)
                finally:
                    state.step = step
                state.buffer.copy_(buffer)  # the warm-ups really ran the step
                self._copy_states(kept)
        tables = graphs.offsets.numel() + graphs.row.numel() + 2
        graphs.pool_bytes = recorder.held_bytes() + tables * graphs.offsets.element_size()

    # ------------------------------------------------------------------ capture
    def _runner(self, key: tuple[int, int], first: int) -> Callable[[], None]:
        """The captured body of ``key``: the model's step from the static inputs, its new
        mixer states written back into them, its logits kept as the key's output."""

        def run() -> None:
            # Python runs this when it is warmed up and captured (and a stand-in recorder at
            # every replay): the kernels then read the device integers, not the host's step.
            self.graphs.decode_capture = self
            self.state.step = first  # the interpreter's bookkeeping, host-side only
            try:
                logits, new = self.body(self.tokens, self.states)
                self._copy_states([tuple(a.clone() for a in s) for s in new])  # they may alias
            finally:
                self.graphs.decode_capture = None
            self.logits[key] = logits

        return run

    def _copy_states(self, states: Sequence[State]) -> None:
        for mine, theirs in zip(self.states, states, strict=True):
            for a, b in zip(mine, theirs, strict=True):
                a.copy_(b)

    def window(self, width: int) -> torch.Tensor:
        """Buffer indices of a window of ``width`` slots from the step's start slot (device
        arithmetic: captured, it follows the start set before each replay)."""
        if width not in self._windows:
            self._windows[width] = torch.arange(width, dtype=torch.int64, device=self.slot.device)
        return self._windows[width] + self.start

    def _set(self, step: int) -> None:
        """Point the device integers at ``step``: its slot, window start and first task."""
        plan = self.state.plan
        self.slot.fill_(plan.slot.item(step))
        self.start.fill_(plan.window_slot.item(step))
        self.graphs.row.fill_(plan.task_ptr.item(step))

    # ------------------------------------------------------------------ replay
    def __call__(
        self, tokens: torch.Tensor, states: Sequence[State]
    ) -> tuple[torch.Tensor, list[State]]:
        """Run the current step of the decode: logits ``(B, V)`` and the new mixer states."""
        state = self.state
        captured = self.graphs.buffer
        if state.buffer is not captured:  # replaced (a restored state): keep the captured one
            if state.buffer.shape != captured.shape or state.buffer.dtype != captured.dtype:
                raise RuntimeError(
                    "the token-step graphs were captured on a buffer of another shape"
                )
            captured.copy_(state.buffer)
            state.buffer = captured
        t = state.step
        plan = state.plan
        key = (
            plan.slot.item(t) - plan.window_slot.item(t),
            plan.step_patterns.pattern_of_step.item(t),
        )
        with self.graphs.guard():
            self.tokens.copy_(tokens)
            if states is not self.states:
                self._copy_states(states)
            self._set(t)
            self.replays[key]()
            state.step = t + 1
            return self.logits[key].clone(), self.states


def indexed_emit(
    capture: DecodeGraphs,
    buf: torch.Tensor,
    taps: torch.Tensor,
    u: torch.Tensor,
    width: int,
) -> torch.Tensor:
    """:meth:`TorchExecutor.emit` as it is captured: the slot and the window's start read
    from device integers, the same arithmetic in the same order (the same results)."""
    last = taps.shape[1] - 1
    current = buf.index_select(2, capture.slot).squeeze(2)
    y = torch.addcmul(current, taps.select(1, last), u)
    if width:
        window = buf.index_select(2, capture.window(width))
        y += torch.linalg.vecdot(window, taps.narrow(1, last - width, width))
    buf.index_copy_(2, capture.slot, u.unsqueeze(2))
    return y


def token_step_program(
    state: ConvState, body: Body, tokens: Any, states: Sequence[State]
) -> DecodeGraphs | None:
    """The captured token steps of ``state``'s decode, or ``None``: no pattern graphs with a
    recorder on this state (no ``cuda_graphs``), or too many decode keys."""
    graphs = state.workspace
    if not isinstance(graphs, PatternGraphs) or graphs.recorder is None:
        return None
    steps = decode_steps(state.plan, state.step)
    if not steps:
        return None
    return DecodeGraphs(state, graphs, body, tokens, states, steps)
