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
    """An id per row: equal ids for equal rows of ``columns`` (ids ``0 .. groups-1``).

    One ``lexsort`` and one pass over each column: about 20 bytes a row beside the columns.
    """
    rows = columns[0].shape[0]
    if rows == 0:
        return np.zeros(0, np.int32)
    order = np.lexsort(columns[::-1])
    new = np.zeros(rows, bool)
    for column in columns:
        ordered = column[order]
        new[1:] |= ordered[1:] != ordered[:-1]
        del ordered
    ids = np.empty(rows, np.int32)
    ids[order] = np.cumsum(new, dtype=np.int32)
    return ids


def transform_program(plan: PlanTables, *, share: bool = True) -> TransformProgram:
    """Derive the :class:`TransformProgram` of ``plan`` from its task tables.

    Sources are shared by tasks with equal ``(src_start, src_stop, fft_size)``; inverse
    transforms by tasks run after the same step with equal ``(dst_start, dst_stop, fft_size,
    read offset)``. After a step that shares, the forward transforms of the sources first
    used there come first (in task order), then each target's products (in task order) and
    its inverse, targets in the order of their first task. A source holds its register from
    its first to its last use by such a step; registers are allocated per FFT size, the one
    freed longest ago first (:func:`_allocate`). ``share=False`` gives the empty program: every
    step fused, every task on its own. All of it is array work: O(n log n) in the tasks.
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
    t = plan.after_step
    a, b, c, d, n = plan.src_start, plan.src_stop, plan.dst_start, plan.dst_stop, plan.fft_size
    read = c - a - plan.filter_start  # in -2**30 .. 2**30: int32 holds it
    source = _group_ids(a, b, n)
    target = _group_ids(t, c, d, n, read)
    uses = np.bincount(source) if source.size else np.zeros(0, np.int64)
    terms = np.bincount(target) if target.size else np.zeros(0, np.int64)
    shared = (uses[source] > 1) | (terms[target] > 1)
    fused = np.ones(L, dtype=bool)
    fused[t[shared]] = False
    del uses, terms, shared, read
    rows = np.flatnonzero(~fused[t]).astype(np.int32)  # tasks of the steps that share
    step, source, target = t[rows], source[rows], target[rows]
    del t
    # forward: the first use of each source; registers: held from first to last use
    first = _firsts(source)
    last = np.empty(int(source.max(initial=-1)) + 1, np.int32)
    last[source] = step  # plan order is step order: the last write is the last use
    reg_of_source = np.zeros(last.shape, np.int32)
    sources = source[first]
    reg_of_source[sources], register_fft = _allocate(
        step[first], last[sources], n[rows[first]].astype(np.int64)
    )
    # products and inverses: grouped by target, each target named by its first task
    heads = _firsts(target)
    inverse_rows = rows[heads]
    head_of = np.zeros(int(target.max(initial=-1)) + 1, np.int32)
    head_of[target[heads]] = inverse_rows
    lead = head_of[target]
    del head_of, target, heads, last
    n_fwd, n_prod, n_inv = first.size, rows.size, inverse_rows.size
    # one sort of all ops by (step, forwards first, target's first task, inverse last, task)
    op_step = np.concatenate([step[first], step, plan.after_step[inverse_rows]])
    op_task = np.concatenate([rows[first], rows, inverse_rows])
    op_group = np.concatenate([np.full(n_fwd, -1, np.int32), lead, inverse_rows])
    op_kind = np.repeat(np.array([FORWARD, PRODUCT, INVERSE], np.int32), [n_fwd, n_prod, n_inv])
    op_reg = np.concatenate(
        [reg_of_source[sources], reg_of_source[source], np.full(n_inv, -1, np.int32)]
    )
    del step, rows, lead, source, sources, first, reg_of_source
    order = np.lexsort((op_task, op_kind == INVERSE, op_group, op_step))
    del op_group
    ptr = np.zeros(L + 1, np.int64)
    np.cumsum(np.bincount(op_step, minlength=L), out=ptr[1:])
    return TransformProgram(
        op_ptr=readonly(ptr),
        kind=readonly(op_kind[order]),
        task=readonly(op_task[order]),
        register=readonly(op_reg[order]),
        register_fft_size=readonly(register_fft),
        fused=readonly(fused, bool),
    )


def _firsts(ids: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct value of ``ids``, in index order."""
    return np.sort(np.unique(ids, return_index=True)[1])


def _allocate(
    first: np.ndarray, last: np.ndarray, size: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Registers for values alive from step ``first`` to step ``last`` (inclusive), ``size``
    telling which registers can hold them; return each value's register and each register's
    size.

    Per size, values take a register as they start (in index order; starts before the frees
    of a step) and free it after their last step: the register freed longest ago is taken
    first, a new one only when none is free, so that a size has as many registers as values
    alive at once at most. The queue is resolved without a loop over values: the ``k``-th
    value to start takes a new register exactly when ``k`` minus the frees before it reaches
    the running count of new registers; otherwise it takes the register of the value freed
    ``k - new``-th, found by pointer jumping.
    """
    register = np.zeros(first.shape, np.int64)
    sizes: list[np.ndarray] = []
    for fft_size in np.unique(size).tolist():
        mine = np.flatnonzero(size == fft_size)
        start, stop = first[mine], last[mine]
        frees = np.lexsort((np.arange(mine.size), stop))  # values by the step they free
        before = np.searchsorted(stop[frees], start, "left")  # frees before each start
        k = np.arange(mine.size)
        slack = k - before
        made = np.maximum.accumulate(np.concatenate([[0], slack + 1]))[:-1]  # new ones so far
        new = slack == made
        parent = np.where(new, k, frees[np.minimum(k - made, mine.size - 1)])
        while True:  # the register of the value freed before: follow it to a new one
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
        ids = np.cumsum(new) - 1
        register[mine] = sum(len(x) for x in sizes) + ids[parent]
        sizes.append(np.full(int(new.sum()), fft_size, np.int64))
    return register, np.concatenate([np.zeros(0, np.int64), *sizes])


def check_program(plan: PlanTables, program: TransformProgram) -> None:
    """Prove that ``program`` computes exactly ``plan``'s tasks, or raise
    :class:`~futurefill.plan.PlanError`.

    Every task of a step that is not fused is one product; every product reads a register
    whose last write (a forward transform, in this step or an earlier one) was of the
    product's own source; the products before an inverse share its target and read offset
    and run after the same step; no accumulator is left over at the end of a step. Array
    work: O(n log n) in the ops.
    """
    kind, task, reg = (np.asarray(x) for x in (program.kind, program.task, program.register))
    ptr, T = np.asarray(program.op_ptr, np.int64), plan.num_tasks
    count = np.diff(ptr)
    if ptr.shape != (plan.length + 1,) or ptr[0] != 0 or ptr[-1] != kind.shape[0]:
        raise PlanError("op_ptr must have length + 1 entries from 0 to the number of ops")
    if np.any(count < 0):
        raise PlanError("op_ptr must be non-decreasing")
    _first_bad(program.fused & (count != 0), "step {} is fused but has transform ops")
    _first_bad((kind < FORWARD) | (kind > INVERSE), "op {} has an unknown kind")
    op_step = np.repeat(np.arange(plan.length, dtype=np.int32), count)
    inside = (task >= 0) & (task < T)
    inside[inside] = plan.after_step[task[inside]] == op_step[inside]
    if not inside.all():
        op = int(np.argmin(inside))
        raise PlanError(f"op {op} uses task {task[op]}, which is not run after step {op_step[op]}")
    del inside
    forward, product = kind == FORWARD, kind == PRODUCT
    a, b, n = plan.src_start, plan.src_stop, plan.fft_size
    sizes = program.register_fft_size
    valid = (reg >= 0) & (reg < sizes.shape[0])
    right = valid & (sizes[np.where(valid, reg, 0)] == n[task])
    _first_bad(forward & ~right, "op {} writes a register of another FFT size")
    del right
    source = _group_ids(a, b, n)[task]  # of every op's task
    holds = _last_written(reg, forward)  # the forward op that last wrote each op's register
    valid &= holds >= 0
    valid &= source[np.maximum(holds, 0)] == source
    del holds, source
    _first_bad(product & ~valid, "op {} reads a register not holding its source")
    del valid
    times = np.bincount(task[product], minlength=T)
    _first_bad(times > 1, "task {} is computed twice")
    # each product's inverse: the next inverse op, in the product's step, of its target
    ops = kind.shape[0]
    after = np.where(kind == INVERSE, np.arange(ops), ops)
    after = np.minimum.accumulate(after[::-1])[::-1]
    found = after < ops
    after = np.minimum(after, max(ops - 1, 0))
    found &= op_step[after] == op_step
    _first_bad(product & ~found, "op {}: its step leaves products without their inverse")
    del found
    target = _group_ids(plan.dst_start, plan.dst_stop, n, plan.dst_start - a - plan.filter_start)
    target = target[task]
    mixed = product & (target[after] != target)
    mixed |= (kind == INVERSE) & (np.bincount(after[product], minlength=ops) == 0)
    _first_bad(mixed, "op {}: an inverse of products of other targets")
    _first_bad(~program.fused[plan.after_step] & (times == 0), "task {} is never computed")


def _last_written(register: np.ndarray, write: np.ndarray) -> np.ndarray:
    """For every op, the last op at or before it with ``write`` on the same ``register``
    (-1 for none)."""
    small = register.size == 0 or (register.min() >= -1 and register.max() < 2**15 - 1)
    keys = register.astype(np.int16) if small else register  # a radix sort: O(n)
    by_register = np.argsort(keys, kind="stable")  # by register, then in op order
    del keys
    position = np.arange(register.shape[0])
    ordered = register[by_register]
    starts = np.empty(ordered.shape, bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    del ordered
    group = np.maximum.accumulate(np.where(starts, position, 0))
    del starts
    wrote = np.maximum.accumulate(np.where(write[by_register], position, -1))
    last = np.full(register.shape[0], -1, np.int64)
    last[by_register] = np.where(wrote >= group, by_register[np.maximum(wrote, 0)], -1)
    return last


def _first_bad(bad: np.ndarray, message: str) -> None:
    """Raise :class:`PlanError` with ``message`` naming the first index where ``bad``."""
    if np.any(bad):
        raise PlanError(message.format(int(np.argmax(bad))))
