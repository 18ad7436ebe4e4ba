"""The plan's shared transforms inside the compiled rollout: spectrum registers in the loop.

:attr:`futurefill.Plan.transforms` says which tasks share a forward transform (one source
block, several filter slices) or an inverse transform (one target, several products). In
the blocked rollout (:mod:`futurefill_jax._program`) the tasks of an FFT size whose every
transform op runs after the last step of a window block are run from it, per FFT size:

* ``forward`` rows ``(source slot, register)``: the block's spectrum into a register of a
  bank ``(registers, B, C, n/2 + 1)`` carried by the loop;
* ``inverse`` rows ``(target slot, products, registers..., spectra...)``: the sum of the
  products of registers and filter spectra, one inverse transform, its slice added to the
  target.

Registers are a cache of the inputs: a rollout starting at step ``t`` first transforms again
the sources of the registers alive across ``t`` (``reload`` rows, by step), so that it starts
anywhere, like the rest of the program. Sizes below :data:`~futurefill_jax._tasks.FFT_FROM`
(direct Toeplitz products) and plans whose ops do not fit this shape keep running task by
task (:class:`~futurefill_jax._tasks.TaskRunner`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from futurefill.plan import Plan
from futurefill.plan.transforms import FORWARD, INVERSE, PRODUCT

from ._kernels import after
from ._tasks import FFT_FROM, put, window

__all__ = ["SpectralRunner", "spectral_runner"]

Array = Any


@dataclass(frozen=True)
class _Size:
    """The tables of one FFT size (see the module docstring)."""

    n: int
    k: int  # source length
    m: int  # target length (a target cut at the end of the buffer writes into the padding)
    read: int  # where the first target sits in the inverse transform
    ops_every: int  # every op runs after a step t with t + 1 a multiple of this
    registers: int
    spectra: tuple[tuple[int, int, int], ...]
    forward_ptr: np.ndarray
    forward_rows: np.ndarray  # (source slot, register)
    inverse_ptr: np.ndarray
    inverse_rows: np.ndarray  # (target slot, count, registers..., spectra...)
    reload_ptr: np.ndarray
    reload_rows: np.ndarray  # (source slot, register)


def _csr(steps: list[int], rows: list[list[int]], width: int, length: int) -> tuple:
    counts = np.bincount(np.asarray(steps, np.int64), minlength=length)[:length]
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    table = np.asarray(rows, np.int32).reshape(-1, width)
    order = np.argsort(np.asarray(steps, np.int64), kind="stable")
    return ptr, table[order] if len(rows) else table


class SpectralRunner:
    """The shared transforms of one plan, per FFT size, for the blocked rollout.

    Attributes
    ----------
    handles : ndarray of bool, shape (num_tasks,)
        Tasks run from the transform ops here (the others run task by task).
    pad : int
        Back padding the targets need.
    """

    def __init__(self, plan: Plan, sizes: dict[int, _Size], handles: np.ndarray) -> None:
        self.plan = plan
        self.sizes = [sizes[n] for n in sorted(sizes)]
        self.handles = handles
        self.pad = max(s.m for s in self.sizes)

    def constants(self, spectra: dict[tuple[int, int, int], Any]) -> list:
        """Per size: the stacked filter spectra and the six tables."""
        consts: list = []
        for s in self.sizes:
            stacked = np.stack([np.asarray(spectra[key]) for key in s.spectra])
            consts += [stacked, s.forward_ptr, s.forward_rows, s.inverse_ptr, s.inverse_rows]
            consts += [s.reload_ptr, s.reload_rows]
        return consts

    @property
    def num_constants(self) -> int:
        return 7 * len(self.sizes)

    def registers(self, batch: int, channels: int, dtype: Any) -> tuple:
        """Empty register banks, one per size."""
        cdt = jnp.result_type(dtype, jnp.complex64)
        return tuple(
            jnp.zeros((s.registers, batch, channels, s.n // 2 + 1), cdt) for s in self.sizes
        )

    def reload(self, U: Array, regs: tuple, cs: Sequence[Array], t: Array) -> tuple:
        """The registers alive across step ``t``, transformed again from the inputs ``U``."""
        out = list(regs)
        for i, s in enumerate(self.sizes):
            if s.reload_rows.shape[0]:  # (no register outlives the step that writes it)
                ptr, rows = cs[7 * i + 5], cs[7 * i + 6]
                out[i] = lax.fori_loop(ptr[t], ptr[t + 1], self._forward(s, U, rows), regs[i])
        return tuple(out)

    @property
    def every(self) -> list[int]:
        """All size indices."""
        return list(range(len(self.sizes)))

    def rare(self, chunk: int) -> list[int]:
        """Sizes whose ops all run after the last step of a chunk of ``chunk`` steps."""
        return [i for i, s in enumerate(self.sizes) if s.ops_every % chunk == 0]

    def run(
        self,
        U: Array,
        A: Array,
        regs: tuple,
        cs: Sequence[Array],
        t0: Array,
        t1: Array,
        which: list[int] | None = None,
    ) -> tuple:
        """The ops of sizes ``which`` (default: all) planned after steps ``t0 .. t1-1`` (all
        after one step): forward transforms into the registers, then one inverse transform
        per target, added into ``A``."""
        out = list(regs)
        for i in self.every if which is None else which:
            s = self.sizes[i]
            spectra, f_ptr, f_rows, i_ptr, i_rows = cs[7 * i : 7 * i + 5]
            R = lax.fori_loop(f_ptr[t0], f_ptr[t1], self._forward(s, U, f_rows), regs[i])
            A = lax.fori_loop(i_ptr[t0], i_ptr[t1], self._inverse(s, R, spectra, i_rows), A)
            out[i] = R
        return A, tuple(out)

    @staticmethod
    def _forward(s: _Size, U: Array, rows: Array) -> Any:
        def body(j: Array, R: Array) -> Array:
            x = window(U, rows[j, 0], s.k)
            spectrum = jnp.fft.rfft(x, n=s.n, axis=-1)
            return lax.dynamic_update_index_in_dim(R, spectrum.astype(R.dtype), rows[j, 1], 0)

        return body

    @staticmethod
    def _inverse(s: _Size, R: Array, spectra: Array, rows: Array) -> Any:
        K = (rows.shape[1] - 2) // 2

        def body(j: Array, A: Array) -> Array:
            row = rows[j]

            def product(q: Array, total: Array) -> Array:
                reg = lax.dynamic_index_in_dim(R, row[2 + q], 0, keepdims=False)
                spec = lax.dynamic_index_in_dim(spectra, row[2 + K + q], 0, keepdims=False)
                return total + reg * spec

            total = lax.fori_loop(0, row[1], product, jnp.zeros(R.shape[1:], R.dtype))
            z = jnp.fft.irfft(total, n=s.n, axis=-1)[..., s.read : s.read + s.m]
            old = window(A, row[0], s.m)
            return put(A, old + z.astype(A.dtype), after(row[0], old[..., :1]))

        return body


@functools.lru_cache(maxsize=64)
def spectral_runner(plan: Plan, block: int) -> SpectralRunner | None:
    """The :class:`SpectralRunner` of ``plan`` for window blocks of ``block`` steps, or
    ``None`` when no FFT size of at least ``2 * FFT_FROM`` shares transforms in a shape it
    serves (every op after the last step of a block; per size one source length and one
    read offset)."""
    program = plan.transforms
    if not program.shares:
        return None
    o, L = plan.origin, plan.length
    a, b = plan.src_start.astype(np.int64) - o, plan.src_stop.astype(np.int64) - o
    c, d = plan.dst_start.astype(np.int64) - o, plan.dst_stop.astype(np.int64) - o
    n_of = plan.fft_size.astype(np.int64)
    read_of = c - a - plan.filter_start  # where the first target sits in the convolution
    step_of = plan.after_step.astype(np.int64)
    op_step = step_of[program.task] if program.task.size else np.zeros(0, np.int64)
    sizes: dict[int, _Size] = {}
    handles = np.zeros(plan.num_tasks, dtype=bool)
    for n in np.unique(n_of[program.task]).tolist():
        ops = np.flatnonzero(n_of[program.task] == n)
        tasks = np.unique(program.task[ops])
        k, m = int((b - a)[tasks].max()), int((d - c)[tasks].max())
        if (
            k < FFT_FROM
            or np.any((op_step[ops] + 1) % block != 0)
            or np.any((b - a)[tasks] != k)
            or np.any(read_of[tasks] != read_of[tasks[0]])
            or np.any(((d - c)[tasks] != m) & (d[tasks] != plan.buffer_length))
        ):
            continue
        sizes[n] = _tables(plan, program, ops, n, k, m, int(read_of[tasks[0]]), (a, c), L)
        handles[tasks] = True
    if not sizes:
        return None
    return SpectralRunner(plan, sizes, handles)


def _tables(
    plan: Plan,
    program: Any,
    ops: np.ndarray,
    n: int,
    k: int,
    m: int,
    read: int,
    slots: tuple[np.ndarray, np.ndarray],
    L: int,
) -> _Size:
    """The tables of FFT size ``n`` from its ops (in program order)."""
    a, c = slots
    local: dict[int, int] = {}
    spectra: dict[tuple[int, int, int], int] = {}
    fwd: tuple[list[int], list[list[int]]] = ([], [])
    inverses: list[tuple[int, int, list[tuple[int, int]]]] = []  # (step, target, products)
    writes: list[tuple[int, int, int]] = []  # (step, source slot, register) of each forward
    writer: dict[int, int] = {}  # register -> the forward that wrote what it holds
    last_read: dict[int, int] = {}  # forward -> the last step reading its spectrum
    group: list[tuple[int, int]] = []
    for op in ops.tolist():
        kind, task, reg = (int(x[op]) for x in (program.kind, program.task, program.register))
        step = int(plan.after_step[task])
        r = local.setdefault(reg, len(local))
        if kind == FORWARD:
            fwd[0].append(step)
            fwd[1].append([int(a[task]), r])
            writer[r] = len(writes)
            writes.append((step, int(a[task]), r))
        elif kind == PRODUCT:
            key = (int(plan.filter_start[task]), int(plan.filter_stop[task]), n)
            group.append((r, spectra.setdefault(key, len(spectra))))
            last_read[writer[r]] = step
        elif kind == INVERSE:
            inverses.append((step, int(c[task]), group))
            group = []
    K = max(len(g) for _, _, g in inverses)
    inverse_rows = [
        [target, len(g)]
        + [r for r, _ in g] + [0] * (K - len(g))
        + [q for _, q in g] + [0] * (K - len(g))
        for _, target, g in inverses
    ]  # fmt: skip
    reload_steps: list[int] = []
    reload_rows: list[list[int]] = []
    for w, (step, src, r) in enumerate(writes):
        for t in range(step + 1, last_read.get(w, step) + 1):  # a rollout starting at t
            reload_steps.append(t)
            reload_rows.append([src, r])
    f_ptr, f_rows = _csr(fwd[0], fwd[1], 2, L)
    i_ptr, i_rows = _csr([i[0] for i in inverses], inverse_rows, 2 + 2 * K, L)
    r_ptr, r_rows = _csr(reload_steps, reload_rows, 2, L)
    return _Size(
        n=n,
        k=k,
        m=m,
        read=read,
        ops_every=int(
            np.gcd.reduce(np.asarray([t + 1 for t in fwd[0] + [i[0] for i in inverses]]))
        ),
        registers=len(local),
        spectra=tuple(spectra),
        forward_ptr=f_ptr,
        forward_rows=f_rows,
        inverse_ptr=i_ptr,
        inverse_rows=i_rows,
        reload_ptr=r_ptr,
        reload_rows=r_rows,
    )
