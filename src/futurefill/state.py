"""ConvState: everything one online convolution keeps, with its whole cursor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .plan import Plan

__all__ = ["ConvState"]

Array = Any


@dataclass(eq=False)
class ConvState:
    """The state of one online convolution: arrays owned by its executor, cursor by the core.

    Attributes
    ----------
    plan : Plan
        The schedule being run.
    filters : array, shape (C, N)
        Filter taps in the working dtype, on the working device (a private copy).
    taps_reversed : array, shape (C, W)
        The first ``W = plan.window_length`` taps reversed, for local windows.
    spectra : dict
        Filter spectrum per ``(filter_start, filter_stop, fft_size)`` of the plan, computed once.
    buffer : array, shape (B, C, plan.buffer_length)
        Slot ``p - plan.origin`` holds the accumulated future contributions to output ``p``
        until ``p`` is emitted and the input ``u[p]`` afterwards (one buffer serves both, so the
        state is exactly ``buffer_length`` values per channel).
    prefilled : ndarray of bool, shape (C,)
        Channels whose prompt was given.
    emitted : ndarray of bool, shape (C,)
        Channels emitted at the current step (reset by ``advance``).
    step : int
        Index of the next online step.
    num_emitted : int
        Number of channels emitted at the current step.
    revision : int
        Incremented whenever the buffer is replaced or cleared by anything but a kernel
        (reset, a restored snapshot), so that executors can drop data derived from it.
    registers : dict
        Spectra of input blocks kept between steps for the plan's shared transforms
        (:attr:`futurefill.Plan.transforms`), by register: ``(tag, spectrum)`` with ``tag =
        (revision, src_start, src_stop, fft_size)``; a register whose tag does not match is
        recomputed from the buffer (see :meth:`futurefill.executor.ArrayAPIExecutor.held`).
    workspace : object
        The executor's own derived data (work arrays, compiled functions); its type is the
        executor's business.
    poisoned : str or None
        Why every call is refused, or ``None``: a kernel failed midway through a call that
        could not be undone, so the buffer's contents are unknown (see
        :mod:`futurefill.undo`). Cleared by a reset and a restored snapshot.
    """

    plan: Plan
    filters: Array
    taps_reversed: Array
    spectra: dict[tuple[int, int, int], Array]
    buffer: Array
    prefilled: np.ndarray
    emitted: np.ndarray
    step: int = 0
    num_emitted: int = 0
    revision: int = 0
    registers: dict[int, tuple[tuple[int, int, int, int], Any]] = field(default_factory=dict)
    workspace: Any = None
    poisoned: str | None = None

    @property
    def batch(self) -> int:
        """Batch size ``B``."""
        return int(self.buffer.shape[0])

    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return int(self.buffer.shape[1])

    @property
    def prompt_given(self) -> bool:
        """Whether every channel's prompt was given (always true without a prompt)."""
        return self.plan.prompt == 0 or bool(self.prefilled.all())
