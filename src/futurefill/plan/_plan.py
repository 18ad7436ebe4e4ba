"""The plan: pure data saying what every executor does at every step.

A plan is built from sizes only (never from arrays). Positions are global: the prompt occupies
positions ``0 .. prompt-1`` and online step ``t`` produces output ``prompt + t``. An executor
keeps one buffer per (batch, channel) of :attr:`Plan.buffer_length` slots; slot
``p - origin`` holds the accumulated future of output ``p`` until ``p`` is emitted and the
input ``u[p]`` afterwards. Every executor interprets a plan the same way:

* ``prefill`` (only when ``prompt > 0``) computes the prompt outputs by one FFT convolution and,
  when :attr:`Plan.prefill_fills_future` is true, also the prompt's whole contribution to every
  later output (the cache); the prompt inputs are then dropped.
* online step ``t`` returns ``y[j] = A[j] + sum(phi[j - s] * u[s] for s in window_start[t] ..
  j)`` with ``j = prompt + t``, where ``A`` is everything filled ahead of time;
* after step ``t`` the tasks ``task_ptr[t] : task_ptr[t + 1]`` run. A task adds the
  contribution of inputs ``src_start .. src_stop-1`` to outputs ``dst_start .. dst_stop-1``,
  computed as an FFT convolution of size ``fft_size`` with filter taps
  ``filter_start .. filter_stop-1``.

Executors read the per-step tables (:attr:`Plan.slot`, :attr:`Plan.window_slot`), the task
columns or :meth:`Plan.task_offsets`; compiled backends read :attr:`Plan.step_patterns`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .._checks import check_int, next_pow2
from ._records import StepPatterns, TaskOffsets, TaskShape, Tiling
from ._tables import TASK_COLUMNS, IntArray, PlanError, PlanTables, readonly
from .checks import validate_plan
from .cost import PlanCost, plan_cost
from .spec import PlanSpec
from .transforms import TransformProgram, check_program, transform_program

__all__ = [
    "MAX_POSITIONS",
    "TASK_COLUMNS",
    "IntArray",
    "Plan",
    "PlanError",
    "StepPatterns",
    "TaskOffsets",
    "TaskShape",
    "Tiling",
]

_REQUIRED_COLUMNS = TASK_COLUMNS[:5]

#: Largest supported ``prompt + length`` (positions are stored as int32).
MAX_POSITIONS = 1 << 30
_INT32 = np.iinfo(np.int32)


@dataclass(frozen=True, eq=False, repr=False)
class Plan(PlanTables):
    """An explicit generation schedule.

    Build one with :func:`futurefill.make_plan` (a registered schedule) or
    :meth:`Plan.from_tasks` (explicit tables). Plans compare equal when they have the same
    :attr:`key`.

    Attributes
    ----------
    spec : PlanSpec or None
        The schedule and all its parameters (defaults filled in); ``None`` for a plan built
        from explicit tables.
    length : int
        Number of online steps (outputs produced one at a time after the prompt).
    prompt : int
        Number of inputs given at once before the online steps.
    origin : int
        First position whose input an executor must keep (``0`` when the prompt is kept,
        ``prompt`` otherwise). Buffers hold positions ``origin .. prompt+length-1``.
    window_start : ndarray of int32, shape (length,)
        First input position of the directly summed local window of each online step.
    task_ptr : ndarray of int32, shape (length + 1,)
        Tasks run after step ``t`` are rows ``task_ptr[t]:task_ptr[t+1]`` of the task columns.
    src_start, src_stop, dst_start, dst_stop, filter_start, filter_stop, fft_size
        Task columns (int32 arrays of equal length, ordered by step).
    prefill_fft_size : int
        FFT size of the prefill convolution (0 without a prompt).
    defaulted : frozenset of str
        Parameters of :attr:`spec` that took their default value.

    Examples
    --------
    >>> import futurefill
    >>> plan = futurefill.make_plan(8, "continuous")
    >>> plan.length, plan.num_tasks, str(plan.spec)
    (8, 7, 'continuous(direct_below=1)')
    >>> plan == futurefill.make_plan(8, futurefill.PlanSpec("continuous", direct_below=1))
    True
    """

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_tasks(
        cls,
        length: int,
        *,
        window_start: npt.ArrayLike,
        tasks: Mapping[str, npt.ArrayLike] | npt.ArrayLike | None = None,
        prompt: int = 0,
        keep_prompt: bool = False,
        spec: PlanSpec | None = None,
        defaulted: frozenset[str] = frozenset(),
        validate: bool = True,
        share_transforms: bool = True,
    ) -> Plan:
        """A plan from explicit tables, checked by :meth:`validate`.

        Parameters
        ----------
        length : int
            Number of online steps, ``>= 1``.
        window_start : array-like of int, shape (length,)
            First input position summed directly by each step (global positions).
        tasks : mapping or array-like, optional
            Task columns by name, or an ``(n, 8)`` / ``(n, 5)`` table in :data:`TASK_COLUMNS`
            order. ``after_step``, ``src_start``, ``src_stop``, ``dst_start`` and
            ``dst_stop`` are required; ``filter_start``, ``filter_stop`` and ``fft_size``
            default to the smallest filter slice and power-of-two FFT that serve the task.
            Tasks may be given in any order (they are sorted by step, stably).
        prompt : int
            Number of prompt inputs given by ``prefill``.
        keep_prompt : bool
            Keep the prompt inputs (the local windows then reach into the prompt) instead of
            filling the prompt's whole future at prefill.
        spec : PlanSpec, optional
            The schedule this plan realises (set by :func:`futurefill.make_plan`); plans with
            the same spec, length and prompt are equal.
        defaulted : frozenset of str
            Parameters of ``spec`` that took their default.
        validate : bool
            Prove exactly-once coverage and causality (:meth:`validate`); on by default.
        share_transforms : bool
            Let tasks share forward and inverse transforms (:attr:`transforms`); ``False``
            runs every task on its own (timing single tasks, as the calibration does).

        Returns
        -------
        Plan

        Raises
        ------
        PlanError
            The tables do not describe an exact, causal schedule.

        Examples
        --------
        Steps 0 and 1 sum their inputs directly; after step 1 one task adds inputs 0 and 1
        to outputs 2 and 3, whose windows then start at input 2:

        >>> import numpy as np, futurefill
        >>> plan = futurefill.Plan.from_tasks(4, window_start=[0, 0, 2, 2], tasks={
        ...     "after_step": [1], "src_start": [0], "src_stop": [2], "dst_start": [2],
        ...     "dst_stop": [4]})
        >>> plan.tasks()  # filter slice and FFT size filled in
        array([[1, 0, 2, 2, 4, 1, 4, 4]], dtype=int32)
        >>> phi, u = np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([[[1.0, -1.0, 2.0, 0.5]]])
        >>> y = futurefill.OnlineConv.from_plan(phi, plan, backend="numpy").run(u)
        >>> bool(np.allclose(y[0, 0], np.convolve(u[0, 0], phi[0])[:4]))
        True
        """
        L = check_int("length", length, 1)
        P = check_int("prompt", prompt, 0)
        if P + L > MAX_POSITIONS:
            raise ValueError(f"prompt + length must be at most 2**30, got {P + L}")
        starts = np.asarray(window_start)
        if starts.shape != (L,) or starts.dtype.kind not in "iu":
            raise PlanError(f"window_start must be {L} integers, got shape {starts.shape}")
        _check_int32("window_start", starts)
        cols = _task_columns(tasks, L)
        steps = cols.pop("after_step")
        order = None if np.all(steps[1:] >= steps[:-1]) else np.argsort(steps, kind="stable")
        counts = np.bincount(steps, minlength=L)
        del steps
        task_ptr = np.concatenate([[0], np.cumsum(counts)])
        stored = {}  # int32, sorted by step; each int64 column dropped once stored
        for name in TASK_COLUMNS[1:]:
            col = cols.pop(name)
            stored[name] = readonly(col if order is None else col[order])
            del col
        origin = 0 if (keep_prompt or P == 0) else P
        fills = P > 0 and origin == P
        prefill_fft = 0 if P == 0 else next_pow2((2 * P + L - 1) if fills else (2 * P - 1))
        digest = None
        if spec is None:
            h = hashlib.sha256(np.asarray([L, P, origin, share_transforms], np.int64).tobytes())
            h.update(np.ascontiguousarray(starts, np.int64).tobytes())
            h.update(np.repeat(np.arange(L, dtype=np.int64), counts).tobytes())  # after_step
            for name in TASK_COLUMNS[1:]:
                h.update(np.ascontiguousarray(stored[name], np.int64).tobytes())
            digest = h.hexdigest()
        plan = cls(
            spec=spec,
            length=L,
            prompt=P,
            origin=origin,
            window_start=readonly(starts),
            task_ptr=readonly(task_ptr),
            **stored,
            prefill_fft_size=prefill_fft,
            defaulted=frozenset(defaulted),
            share_transforms=bool(share_transforms),
            key=("tasks", digest) if spec is None else ("spec", spec, L, P),
        )
        if validate:
            plan.validate()
        return plan

    # ------------------------------------------------------------------ identity
    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hex digest identifying the plan (equal plans have equal fingerprints)."""
        if self.spec is None:
            return str(self.key[1])[:20]
        return hashlib.sha256(repr(self.key).encode()).hexdigest()[:20]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        spec = repr(str(self.spec)) if self.spec is not None else "'custom'"
        return f"Plan({spec}, length={self.length}, prompt={self.prompt}, tasks={self.num_tasks})"

    def __str__(self) -> str:
        return str(self.cost())

    # ------------------------------------------------------------------ derived sizes
    # ------------------------------------------------------------------ per-step tables
    @functools.cached_property
    def window_block_size(self) -> int | None:
        """``G`` when step ``t``'s window starts at step ``G * (t // G)`` for every ``t``.

        Then the steps run in aligned blocks of ``G`` (the last one may be shorter), each
        summing its own earlier inputs directly; ``None`` for any other window layout.
        """
        starts = self.window_slot.astype(np.int64) - self.slot[0]
        changes = np.flatnonzero(np.diff(starts))
        G = int(changes[0]) + 1 if changes.size else self.length
        steps = np.arange(self.length)
        return G if np.array_equal(starts, (steps // G) * G) else None

    @property
    def tasks_start_windows(self) -> bool:
        """Whether every task writes from the first step of a window block onwards.

        A window block is a run of steps whose local windows start at the same position
        (where the window start changes, a block begins). Then the accumulated future of a
        whole window block is final when its first step starts (tasks only write blocks not
        yet started), so an executor may copy it once per block, and tasks run inside a
        block may wait until its end.
        """
        if self.num_tasks == 0:
            return True
        first = self.dst_start.astype(np.int64) - self.prompt  # step of the first output
        starts = self.window_start
        begins = np.ones(self.length, dtype=bool)
        begins[1:] = starts[1:] != starts[:-1]
        return bool(np.all(begins[first]))

    # ------------------------------------------------------------------ task tables
    def tasks(self, step: int | None = None) -> IntArray:
        """Task table as an ``(n, 8)`` array in :data:`TASK_COLUMNS` order.

        Parameters
        ----------
        step : int, optional
            Only the tasks run after this online step.

        Examples
        --------
        >>> import futurefill
        >>> plan = futurefill.make_plan(8, "continuous")
        >>> plan.tasks().shape
        (7, 8)
        >>> plan.tasks(3)  # after step 3: inputs 0..3 fill outputs 4..7, FFT size 8
        array([[3, 0, 4, 4, 8, 1, 8, 8]], dtype=int32)
        """
        table = np.stack([getattr(self, c) for c in TASK_COLUMNS], axis=1)
        if step is None:
            return table
        return table[self.task_ptr[step] : self.task_ptr[step + 1]]

    def task_offsets(self, i: int) -> TaskOffsets:
        """Task ``i`` as buffer slots: what an executor needs to run it.

        Examples
        --------
        >>> import futurefill
        >>> plan = futurefill.make_plan(8, "continuous", prompt=4)  # slots start at the prompt
        >>> plan.origin, plan.tasks(0)[0, 1:5].tolist()
        (4, [4, 5, 5, 6])
        >>> off = plan.task_offsets(0)
        >>> off.src_start, off.src_stop, off.dst_start, off.dst_stop
        (0, 1, 1, 2)
        """
        o = self.origin
        a, c = self.src_start.item(i), self.dst_start.item(i)
        lo, hi, n = self.filter_start.item(i), self.filter_stop.item(i), self.fft_size.item(i)
        return TaskOffsets(
            src_start=a - o,
            src_stop=self.src_stop.item(i) - o,
            dst_start=c - o,
            dst_stop=self.dst_stop.item(i) - o,
            read_start=c - a - lo,  # where output c sits in the linear convolution
            fft_size=n,
            spectrum=(lo, hi, n),
        )

    @functools.cached_property
    def transforms(self) -> TransformProgram:
        """The tasks as forward transforms, spectral products and inverse transforms, each
        shared transform computed once (see :mod:`futurefill.plan.transforms`)."""
        return transform_program(self, share=self.share_transforms)

    @functools.cached_property
    def step_patterns(self) -> StepPatterns:
        """Task shapes, their offsets and the pattern of tasks after each step."""
        a = self.src_start.astype(np.int64)
        c = self.dst_start.astype(np.int64)
        table = np.stack(
            [
                self.src_stop - a,
                self.dst_stop - c,
                c - a,
                self.filter_start,
                self.filter_stop,
                self.fft_size,
            ],
            axis=1,
        ).astype(np.int64)
        if self.num_tasks:
            unique, shape_of_task = np.unique(table, axis=0, return_inverse=True)
        else:
            unique, shape_of_task = np.zeros((0, 6), np.int64), np.zeros(0, np.int64)
        shape_of_task = shape_of_task.reshape(-1)
        shapes = tuple(TaskShape(*(int(v) for v in row)) for row in unique)
        counts = np.diff(self.task_ptr)
        ids: dict[tuple[int, ...], int] = {(): 0}
        pattern_of_step = np.zeros(self.length, np.int64)
        single = np.flatnonzero(counts == 1)
        single_shapes = shape_of_task[self.task_ptr[single]]
        for sid in np.unique(single_shapes):
            ids[(int(sid),)] = len(ids)
        if single.size:
            lookup = np.zeros(len(shapes), np.int64)
            for pattern, pid in ids.items():
                if pattern:
                    lookup[pattern[0]] = pid
            pattern_of_step[single] = lookup[single_shapes]
        for t in np.flatnonzero(counts > 1):
            pattern = tuple(int(s) for s in shape_of_task[self.task_ptr[t] : self.task_ptr[t + 1]])
            pattern_of_step[t] = ids.setdefault(pattern, len(ids))
        return StepPatterns(
            shapes=shapes,
            shape_of_task=readonly(shape_of_task),
            offsets=readonly(a - self.origin),
            patterns=tuple(ids),
            pattern_of_step=readonly(pattern_of_step),
        )

    # ------------------------------------------------------------------ checks and cost
    def validate(self) -> None:
        """Prove the plan is exact and causal, or raise :class:`PlanError`.

        See :func:`futurefill.plan.checks.validate_plan` for what is checked; when tasks share
        transforms, :func:`futurefill.plan.transforms.check_program` also proves that
        :attr:`transforms` computes exactly the tasks.

        Examples
        --------
        >>> import futurefill
        >>> futurefill.make_plan(16, "continuous").validate()  # returns None: proven
        >>> bad = futurefill.Plan.from_tasks(2, window_start=[0, 1], validate=False)
        >>> bad.validate()  # output 1 never gets input 0
        Traceback (most recent call last):
        ...
        futurefill.plan._tables.PlanError: output 1: input 0 is never added (inputs missing)
        """
        validate_plan(self)
        if self.transforms.shares:
            check_program(self, self.transforms)

    def cost(self, channels: int | None = None, batch: int | None = None) -> PlanCost:
        """Estimated work and memory of running this plan (see :class:`PlanCost`).

        Parameters
        ----------
        channels, batch : int, optional
            Multiply the per-channel work; without either, the figures are per channel and
            batch row (and the table says so).

        Examples
        --------
        >>> import futurefill
        >>> plan = futurefill.make_plan(8, "continuous")
        >>> int(plan.cost().online_flops), int(plan.cost(channels=2).online_flops)
        (382, 764)
        """
        return plan_cost(self, channels=channels, batch=batch)


def _task_columns(tasks: Any, length: int) -> dict[str, np.ndarray]:
    """Task columns as int64 arrays, with the filter slice and FFT size filled in if omitted."""
    if tasks is None:
        cols = {name: np.zeros(0, np.int64) for name in _REQUIRED_COLUMNS}
    elif isinstance(tasks, Mapping):
        unknown = set(tasks) - set(TASK_COLUMNS)
        if unknown:
            raise PlanError(f"unknown task columns {sorted(unknown)}; known: {TASK_COLUMNS}")
        missing = [name for name in _REQUIRED_COLUMNS if name not in tasks]
        if missing:
            raise PlanError(f"task columns {missing} are required")
        cols = {name: np.asarray(col) for name, col in tasks.items()}
    else:
        table = np.asarray(tasks)
        if table.ndim != 2 or table.shape[1] not in (5, 8):
            raise PlanError(f"a task table has 5 or 8 columns, got shape {table.shape}")
        cols = {name: table[:, i] for i, name in enumerate(TASK_COLUMNS[: table.shape[1]])}
    n = cols["after_step"].shape
    for name, col in cols.items():
        if col.ndim != 1 or col.shape != n or (col.size and col.dtype.kind not in "iu"):
            raise PlanError(f"task column {name!r} must be 1-D integers of one common length")
    for name, col in cols.items():
        _check_int32(f"task column {name!r}", col)
    cols = {name: col.astype(np.int64, copy=False) for name, col in cols.items()}
    step = cols["after_step"]
    if np.any(step < 0) or np.any(step >= length):
        raise PlanError(f"after_step must lie in 0..{length - 1}")
    a, b, c, d = (cols[k] for k in ("src_start", "src_stop", "dst_start", "dst_stop"))
    if "filter_start" not in cols:
        cols["filter_start"] = np.maximum(c - b + 1, 0)
    if "filter_stop" not in cols:
        cols["filter_stop"] = d - a
    if "fft_size" not in cols:
        lo, hi = cols["filter_start"], cols["filter_stop"]
        need = np.maximum(np.maximum(b + hi - c - 1, d - a - lo), hi - lo)
        cols["fft_size"] = _next_pow2(need)
        _check_int32("task column 'fft_size'", cols["fft_size"])
    return cols


def _next_pow2(n: np.ndarray) -> np.ndarray:
    """Elementwise :func:`next_pow2` of an int64 array (exact: ``frexp`` of an integer below
    2**53 gives its bit length)."""
    bits = np.frexp(np.maximum(n - 1, 0).astype(np.float64))[1]
    return np.left_shift(1, bits.astype(np.int64))


def _check_int32(what: str, values: np.ndarray) -> None:
    """Refuse values that int32 tables cannot hold (they would wrap silently)."""
    if values.size and (values.min() < _INT32.min or values.max() > _INT32.max):
        bad = values.max() if values.max() > _INT32.max else values.min()
        raise PlanError(
            f"{what} holds {bad}, outside the int32 range of plan tables "
            f"({_INT32.min}..{_INT32.max}); positions stop at 2**30"
        )
