"""Prompts of pool slots: prefilled in any number of chunks, folded into the buffer once.

A slot's prompt may arrive in pieces (chunked prefill) and, with several layers sharing one
pool, one channel range at a time. Until the slot's first step the prompt's inputs are kept
(:class:`PromptInputs`); each chunk's outputs are one FFT convolution of the prompt so far.
At the first step the whole prompt's contribution to the slot's future outputs is computed by
one FFT convolution and written into the slot's buffer, and the inputs are dropped -- the same
computation on the same inputs however the prompt was cut, so chunked and whole prefills leave
identical states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_extra as xpx
import numpy as np

from .. import ops
from .._checks import next_pow2
from ..executor import Executor
from ..memory import check_memory
from ..state import ConvState

__all__ = ["PromptInputs", "chunk_outputs", "prompt_future", "write_future"]

Array = Any


@dataclass
class PromptInputs:
    """The prompt inputs given so far to one slot.

    Attributes
    ----------
    inputs : array, shape (C, capacity)
        Columns ``0 .. lengths[c] - 1`` of channel ``c`` hold its prompt.
    lengths : ndarray of int64, shape (C,)
        Prompt inputs given per channel.
    """

    inputs: Array
    lengths: np.ndarray

    @classmethod
    def empty(cls, executor: Executor, channels: int, dtype: Any) -> PromptInputs:
        """No inputs yet, for ``channels`` channels."""
        return cls(executor.zeros((channels, 0), dtype), np.zeros(channels, np.int64))

    def copy(self, xp: Any) -> PromptInputs:
        """An independent copy."""
        return PromptInputs(xp.asarray(self.inputs, copy=True), self.lengths.copy())

    def length(self) -> int:
        """The prompt's length, once every channel has the same; raise otherwise."""
        first, last = int(self.lengths.min()), int(self.lengths.max())
        if first != last:
            raise RuntimeError(
                f"the prompt of some channels has {first} inputs and of others {last}: give "
                "every channel the same prompt before the first step"
            )
        return first

    def append(self, executor: Executor, u: Array, channels: slice) -> int:
        """Add ``u`` ``(c, p)`` after the inputs of ``channels``; return where it starts."""
        start = self.lengths[channels]
        if start.size and int(start.min()) != int(start.max()):
            raise RuntimeError("these channels were given prompts of different lengths")
        q, p = int(start[0]), int(u.shape[-1])
        capacity = int(self.inputs.shape[-1])
        if q + p > capacity:
            grown = max(q + p, 2 * capacity)
            pad = executor.zeros((self.inputs.shape[0], grown - capacity), self.inputs.dtype)
            self.inputs = executor.xp.concat([self.inputs, pad], axis=-1)
        self.inputs = xpx.at(self.inputs)[channels, q : q + p].set(u)
        self.lengths[channels] = q + p
        return q


def chunk_outputs(
    xp: Any, filters: Array, inputs: Array, start: int, stop: int, channels: slice
) -> Array:
    """Outputs ``start .. stop-1`` of the causal convolution of the prompt ``inputs[:,
    :stop]`` of ``channels`` (one FFT; ``start`` inputs came in earlier chunks)."""
    p = stop - start
    n = next_pow2(max(stop, start + 2 * p - 1))
    c = channels.stop - channels.start
    check_memory(f"the FFT of a prompt chunk of {c} channels x {stop} inputs", 6 * c * n * 8)
    spectrum = ops.filter_spectrum(filters[channels, ...], 0, stop, n, xp=xp)
    return ops.fill_future(inputs[channels, :stop], spectrum, n, start, stop, xp=xp)


def prompt_future(xp: Any, filters: Array, inputs: Array, prompt: int, steps: int) -> Array:
    """The contribution of the prompt ``inputs[:, :prompt]`` to outputs ``prompt .. prompt +
    steps - 1`` (the slot's buffer), shape ``(C, steps)``: one FFT of size
    ``next_pow2(prompt + steps)``, exact (the wrap-around lands before ``prompt``)."""
    n = next_pow2(prompt + steps)
    C = int(inputs.shape[0])
    check_memory(f"the FFT of a prompt of {C} channels x {prompt} inputs", 6 * C * n * 8)
    spectrum = ops.filter_spectrum(filters, 0, prompt + steps, n, xp=xp)
    return ops.fill_future(inputs[:, :prompt], spectrum, n, prompt, prompt + steps, xp=xp)


def write_future(
    xp: Any, state: ConvState, row: int, inputs: Array, prompt: int, steps: int
) -> Array:
    """``state``'s buffer with slots ``0 .. steps - 1`` of ``row`` (zeros) set to the
    contribution of ``inputs[:, :prompt]``: a slot's prompt, or every input before its new
    segment."""
    if not prompt:
        return state.buffer
    future = prompt_future(xp, state.filters, inputs, prompt, steps)
    return xpx.at(state.buffer)[row, :, :steps].set(future)
