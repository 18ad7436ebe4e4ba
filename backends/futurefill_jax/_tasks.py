"""The plan's tasks inside traced code: kernel classes, their constants, and the loops that
run the tasks planned after a range of steps.

Shared by the compiled rollout (:mod:`futurefill_jax._program`), the functional API
(:mod:`futurefill_jax.functional`) and the step-by-step executor. The tasks of class ``j``
planned after steps ``t0 .. t1-1`` are rows ``ptr_j[t0] .. ptr_j[t1]-1`` of the class's table;
a loop whose trip count is read from the table runs them (XLA copies whole buffers passed
through a conditional, but updates loop state in place).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from futurefill.plan import Plan

from ._classes import TaskClass, classify
from ._kernels import Spmd, after, contribution

__all__ = [
    "FFT_FROM",
    "TaskRunner",
    "put",
    "taps_at",
    "task_runner",
    "window",
    "window_phases",
]

Array = Any

#: Uniform classes reading fewer slots than this multiply by Toeplitz taps instead of FFTs.
#: Measured at D=1, L=65536: FFT from 128 ~0.54 us/token, from 64 ~0.8, from 32 ~2.3, from
#: 256 ~0.7 (XLA:CPU FFT calls have a fixed cost of several microseconds).
FFT_FROM = 128


def window(x: Array, start: Array, size: int) -> Array:
    """``x[..., start : start + size]`` at a traced start."""
    return lax.dynamic_slice_in_dim(x, start, size, axis=-1)


def put(x: Array, value: Array, start: Array) -> Array:
    """``x[..., start : start + n] = value`` at a traced start."""
    return lax.dynamic_update_slice_in_dim(x, value, start, axis=-1)


def taps_at(filters: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """``filters[:, lags]`` with zeros for lags outside ``0 .. N-1``."""
    N = filters.shape[-1]
    ok = (lags >= 0) & (lags < N)
    return np.where(ok, filters[:, np.clip(lags, 0, N - 1)], 0.0)


def window_phases(plan: Plan, per_octave: int = 1) -> list[tuple[int, int, int]]:
    """``(first step, stop step, M)``: phases with a static window of ``M`` older inputs, the
    least size of a ladder at least the longest window so far (0 while every window is
    empty): powers of two, or with ``per_octave = q`` also ``q - 1`` evenly spaced sizes
    between them (a window that grows by one per step then reads at most ``1/q`` more than it
    needs instead of up to twice, at the price of ``q`` times more phases to compile)."""
    widths = plan.slot.astype(np.int64) - plan.window_slot
    longest = np.maximum(np.maximum.accumulate(widths), 0)
    power = 1 << np.ceil(np.log2(np.maximum(longest, 1))).astype(np.int64)
    rung = power // 2 // max(per_octave, 1)  # spacing of the sizes below `power`
    finer = -(-longest // np.maximum(rung, 1)) * rung
    sizes = np.where(rung >= 1, finer, power)
    sizes = np.where(longest > 0, sizes, 0)
    edges = np.flatnonzero(np.diff(sizes)) + 1
    firsts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [plan.length]])
    return [(int(f), int(s), int(sizes[f])) for f, s in zip(firsts, stops, strict=True)]


class TaskRunner:
    """The kernel classes of one plan and the traced code that runs their tasks.

    Parameters
    ----------
    plan : Plan
        The plan.
    offset : int
        Array index of buffer slot 0 (front padding).
    skip : ndarray of bool, optional
        Tasks run elsewhere (by the shared transforms of :mod:`futurefill_jax._spectral`).
    """

    def __init__(self, plan: Plan, offset: int, skip: np.ndarray | None = None) -> None:
        self.plan = plan
        self.classes: list[TaskClass] = classify(plan, skip)[0]
        self.offset = offset
        self.direct = [c.kernel.uniform and c.kernel.k < FFT_FROM for c in self.classes]
        #: Back padding after which no window of a task runs past the end.
        self.pad = max([1] + [max(c.kernel.k, c.kernel.m) for c in self.classes])

    @property
    def every(self) -> list[int]:
        """All class indices."""
        return list(range(len(self.classes)))

    def constants(self, spectra: Mapping[tuple[int, int, int], Any], filters: np.ndarray) -> list:
        """Operands of the classes, three per class: the filter spectrum (or the Toeplitz taps
        of a small uniform class), the step pointers and the task rows."""
        consts: list = []
        for cls, direct in zip(self.classes, self.direct, strict=True):
            kern = cls.kernel
            if direct:
                lo, hi, _ = kern.spectrum
                j, s = np.arange(kern.m)[:, None], np.arange(kern.k)[None, :]
                lags = kern.shift + j - s
                operand = taps_at(filters, np.where((lags >= lo) & (lags < hi), lags, -1))
            else:
                operand = spectra[kern.spectrum]
            consts += [operand, cls.pointers(self.plan.length), cls.rows]
        return consts

    def per_channel(self) -> list[bool]:
        """For each constant of :meth:`constants`: whether its first axis is the channel."""
        return [True, False, False] * len(self.classes)

    def rare(self, chunk: int) -> list[int]:
        """Classes whose tasks all run after the last step of a chunk of ``chunk`` steps."""
        return [j for j, c in enumerate(self.classes) if np.all((c.steps + 1) % chunk == 0)]

    def run(
        self,
        U: Array | None,
        A: Array,
        cs: Sequence[Array],
        t0: Any,
        t1: Any,
        which: Sequence[int],
        *,
        padded: bool = True,
        spmd: Spmd | None = None,
    ) -> Array:
        """Add the tasks of classes ``which`` planned after steps ``t0 .. t1-1`` into ``A``,
        reading their inputs from ``U``, or from ``A`` itself when ``U`` is ``None`` (one
        buffer for both: tasks read inputs and write accumulators, never the same slots; the
        loop then carries the only copy, so XLA updates it in place).

        ``padded``: the arrays are padded by :attr:`pad`, so no window needs clamping;
        ``spmd``: where the arrays lie when sharded (each device transforms its own shard).
        """
        for j in which:
            kern = self.classes[j].kernel
            operand, ptr, rows = cs[3 * j : 3 * j + 3]
            direct = self.direct[j]

            def body(
                i: Array,
                A: Array,
                kern: Any = kern,
                operand: Any = operand,
                rows: Any = rows,
                direct: bool = direct,
            ) -> Array:
                a = rows[i, 0] + self.offset
                if kern.uniform:  # the other bounds follow from the static sizes
                    b, c, d = a + kern.k, a + kern.shift, a + kern.shift + kern.m
                else:
                    b, c, d = (rows[i, q] + self.offset for q in (1, 2, 3))
                w = c if padded else jnp.minimum(c, A.shape[-1] - kern.m)
                old = window(A, w, kern.m)
                # Reading the block at an index computed from A keeps XLA from hoisting the
                # task out of its loop (it would then always run).
                a = after(a, old[..., :1])
                _, piece = contribution(
                    A if U is None else U,
                    operand,
                    (a, b, c, d),
                    kern,
                    dst_length=A.shape[-1],
                    direct=direct,
                    clamp=not padded,
                    spmd=spmd,
                )
                return put(A, old + piece, w)

            A = lax.fori_loop(ptr[t0], ptr[t1], body, A)
        return A


@functools.lru_cache(maxsize=64)
def task_runner(plan: Plan, offset: int, skip_of: Any = None) -> TaskRunner:
    """The (cached) :class:`TaskRunner` of ``plan`` with slot 0 at array index ``offset``,
    leaving out the tasks that ``skip_of`` (a cached runner with a ``handles`` mask) runs."""
    return TaskRunner(plan, offset, None if skip_of is None else skip_of.handles)
