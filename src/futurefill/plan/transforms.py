"""Transform reuse: the plan's tasks as a program of forward transforms, spectral products and
inverse transforms (:class:`TransformProgram`, derived from the task tables).

A task is an FFT convolution: forward transform of its source block, product with a filter
spectrum, inverse transform added into its target. Two tasks that read the same source block
with the same FFT size need its forward transform once; two tasks run after the same step
that add into the same target, with the same FFT size and the same read offset, need one
inverse transform of the sum of their products (the inverse is linear). The program makes
both explicit, so that executors need not discover them:

* ``FORWARD`` — transform the source block of op's task into spectrum *register*
  ``register`` (it stays there for later steps: a frequency-domain delay line);
* ``PRODUCT`` — add ``register`` times the filter spectrum of the op's task to the
  accumulator;
* ``INVERSE`` — inverse-transform the accumulator, add the slice the op's task reads into its
  target, and empty the accumulator.

The accumulator lives within one step; registers live from the step that writes them to the
last step that reads them (they are then reused: :attr:`TransformProgram.num_registers` is
the most alive at once). Registers hold transforms of inputs, which never change once
emitted, so an executor may recompute a register from the buffer (after a restored snapshot,
say) instead of saving it. Steps whose tasks share nothing are marked
:attr:`~TransformProgram.fused`: they have no ops and run their tasks as before.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from ._tables import PlanError, PlanTables, readonly

__all__ = ["FORWARD", "INVERSE", "KIND_NAMES", "PRODUCT", "TransformProgram", "transform_program"]

FORWARD, PRODUCT, INVERSE = 0, 1, 2
#: Names of the op kinds, indexed by kind.
KIND_NAMES = ("forward", "product", "inverse")


@dataclass(frozen=True, eq=False)
class TransformProgram:
    """A plan's tasks as forward transforms, spectral products and inverse transforms.

    Attributes
    ----------
    op_ptr : ndarray of int32, shape (length + 1,)
        The ops run after step ``t`` are rows ``op_ptr[t]:op_ptr[t+1]``.
    kind : ndarray of int32
        ``FORWARD``, ``PRODUCT`` or ``INVERSE`` of every op.
    task : ndarray of int32
        The task whose source (forward), filter spectrum (product) or target and read offset
        (inverse) the op uses.
    register : ndarray of int32
        Register written (forward) or read (product); ``-1`` for an inverse.
    register_fft_size : ndarray of int32, shape (num_registers,)
        FFT size of the transforms each register holds.
    fused : ndarray of bool, shape (length,)
        Steps whose tasks share no transform: no ops, their tasks run one by one.
    """

    op_ptr: np.ndarray
    kind: np.ndarray
    task: np.ndarray
    register: np.ndarray
    register_fft_size: np.ndarray
    fused: np.ndarray

    @property
    def num_registers(self) -> int:
        """Number of spectrum registers (the most alive after any step)."""
        return int(self.register_fft_size.shape[0])

    @property
    def shares(self) -> bool:
        """Whether any step shares a transform (else the program is empty)."""
        return not bool(self.fused.all())

    def count(self, kind: int) -> int:
        """Number of ops of ``kind``."""
        return int(np.count_nonzero(self.kind == kind))

    def ops(self, step: int) -> np.ndarray:
        """The ops run after ``step`` as an ``(n, 3)`` table: kind, task, register."""
        lo, hi = self.op_ptr[step], self.op_ptr[step + 1]
        return np.stack([self.kind[lo:hi], self.task[lo:hi], self.register[lo:hi]], axis=1)


def _group_ids(*columns: np.ndarray) -> np.ndarray:
    """An id per row: equal ids for equal rows of ``columns``."""
    if columns[0].size == 0:
        return np.zeros(0, np.int64)
    return np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def transform_program(plan: PlanTables, *, share: bool = True) -> TransformProgram:
    """Derive the :class:`TransformProgram` of ``plan`` from its task tables.

    Sources are shared by tasks with equal ``(src_start, src_stop, fft_size)``; inverse
    transforms by tasks run after the same step with equal ``(dst_start, dst_stop, fft_size,
    read offset)``. Registers are allocated per FFT size, the one freed longest ago first.
    ``share=False`` gives the empty program: every step fused, every task on its own.
    """
    L = plan.length
    if not share:
        return TransformProgram(
            op_ptr=readonly(np.zeros(L + 1)),
            kind=readonly([]),
            task=readonly([]),
            register=readonly([]),
            register_fft_size=readonly([]),
            fused=readonly(np.ones(L), bool),
        )
    t = plan.after_step.astype(np.int64)
    a, b = plan.src_start.astype(np.int64), plan.src_stop.astype(np.int64)
    c, d = plan.dst_start.astype(np.int64), plan.dst_stop.astype(np.int64)
    n = plan.fft_size.astype(np.int64)
    read = c - a - plan.filter_start
    source = _group_ids(a, b, n)
    target = _group_ids(t, c, d, n, read)
    uses = np.bincount(source) if source.size else np.zeros(0, np.int64)
    terms = np.bincount(target) if target.size else np.zeros(0, np.int64)
    shared = (uses[source] > 1) | (terms[target] > 1)
    fused = np.ones(L, dtype=bool)
    fused[t[shared]] = False

    first_use = np.full(uses.shape, L, np.int64)
    last_use = np.full(uses.shape, -1, np.int64)
    np.minimum.at(first_use, source, t)
    np.maximum.at(last_use, source, t)

    kinds: list[int] = []
    tasks: list[int] = []
    registers: list[int] = []
    register_of: dict[int, int] = {}
    register_fft: list[int] = []
    free: dict[int, list[tuple[int, int]]] = {}  # fft size -> heap of (freed after, register)
    ptr = np.zeros(L + 1, np.int64)
    task_ptr = plan.task_ptr
    for step in np.flatnonzero(~fused):
        rows = range(task_ptr.item(step), task_ptr.item(step + 1))
        for i in rows:  # a register for each source first used here
            s = int(source[i])
            if s in register_of:
                continue
            size = int(n[i])
            heap = free.setdefault(size, [])
            if heap:  # freed after an earlier step
                reg = heapq.heappop(heap)[1]
            else:
                reg = len(register_fft)
                register_fft.append(size)
            register_of[s] = reg  # alive until its last use
            kinds.append(FORWARD)
            tasks.append(i)
            registers.append(reg)
        groups: dict[int, list[int]] = {}
        for i in rows:
            groups.setdefault(int(target[i]), []).append(i)
        for members in groups.values():
            for i in members:
                kinds.append(PRODUCT)
                tasks.append(i)
                registers.append(register_of[int(source[i])])
            kinds.append(INVERSE)
            tasks.append(members[0])
            registers.append(-1)
        for i in rows:  # registers whose last use is this step become free after it
            s = int(source[i])
            if last_use[s] == step and s in register_of:
                reg = register_of.pop(s)
                heapq.heappush(free[int(n[i])], (int(step), reg))
        ptr[step + 1] = len(kinds)
    ptr = np.maximum.accumulate(ptr)
    return TransformProgram(
        op_ptr=readonly(ptr),
        kind=readonly(kinds),
        task=readonly(tasks),
        register=readonly(registers),
        register_fft_size=readonly(register_fft),
        fused=readonly(fused, bool),
    )


def check_program(plan: PlanTables, program: TransformProgram) -> None:
    """Prove that ``program`` computes exactly ``plan``'s tasks, or raise
    :class:`~futurefill.plan.PlanError`.

    Every task of a step that is not fused is one product; every product reads a register
    last written, in this step or an earlier one, with the transform of the product's own
    source; the products before an inverse share its target and read offset and run after
    the same step; no accumulator is left over at the end of a step.
    """
    held: dict[int, tuple[int, int, int]] = {}
    seen = np.zeros(plan.num_tasks, dtype=bool)
    a, b, c, d = plan.src_start, plan.src_stop, plan.dst_start, plan.dst_stop
    n, lo = plan.fft_size, plan.filter_start
    for step in range(plan.length):
        tasks = range(plan.task_ptr.item(step), plan.task_ptr.item(step + 1))
        lo_op, hi_op = program.op_ptr.item(step), program.op_ptr.item(step + 1)
        if program.fused[step]:
            if hi_op != lo_op:
                raise PlanError(f"step {step} is fused but has transform ops")
            seen[tasks.start : tasks.stop] = True
            continue
        pending: list[int] = []
        for op in range(lo_op, hi_op):
            kind, i, reg = (int(x[op]) for x in (program.kind, program.task, program.register))
            if i not in tasks:
                raise PlanError(f"op {op} uses task {i}, which is not run after step {step}")
            src = (a.item(i), b.item(i), n.item(i))
            if kind == FORWARD:
                if program.register_fft_size[reg] != n[i]:
                    raise PlanError(f"op {op} writes a register of another FFT size")
                held[reg] = src
            elif kind == PRODUCT:
                if held.get(reg) != src:
                    raise PlanError(f"op {op} reads a register not holding its source")
                if seen[i]:
                    raise PlanError(f"task {i} is computed twice")
                seen[i] = True
                pending.append(i)
            elif kind == INVERSE:
                key = (c.item(i), d.item(i), n.item(i), c.item(i) - a.item(i) - lo.item(i))
                if not pending or any(
                    (c.item(j), d.item(j), n.item(j), c.item(j) - a.item(j) - lo.item(j)) != key
                    for j in pending
                ):
                    raise PlanError(f"op {op}: an inverse of products of other targets")
                pending = []
            else:
                raise PlanError(f"op {op} has an unknown kind {kind}")
        if pending:
            raise PlanError(f"step {step} leaves products without their inverse")
    if not seen.all():
        raise PlanError(f"task {int(np.argmin(seen))} is never computed")
