"""Generation schedules as plans: pure data saying which FutureFill task runs after which step.

A plan is built from sizes only (never from arrays), so equal arguments give equal, cached plans.
Positions are global: the prompt occupies positions ``0 .. prompt-1`` and online step ``t``
produces output ``prompt + t``. Every executor interprets plans the same way:

* ``prefill`` (only when ``prompt > 0``) computes the prompt outputs by one FFT convolution and,
  when :attr:`Plan.prefill_fills_future` is true, also the prompt's whole contribution to every
  later output (the cache); the prompt inputs are then dropped.
* online step ``t`` (position ``j = prompt + t``) returns
  ``y[j] = A[j] + sum(phi[j - s] * u[s] for s in window_start[t] .. j)`` where ``A`` is the
  accumulator of everything filled ahead of time;
* after step ``t`` the tasks ``task_ptr[t] : task_ptr[t + 1]`` run. A task adds the
  contribution of inputs ``src_start .. src_stop-1`` to outputs ``dst_start .. dst_stop-1``,
  computed as an FFT convolution of size ``fft_size`` with filter taps
  ``filter_start .. filter_stop-1``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["SCHEDULES", "Plan", "PlanCost", "PlanError", "TaskOffsets", "make_plan"]

Schedule = Literal["naive", "epoched", "continuous"]
SCHEDULES: tuple[str, ...] = ("naive", "epoched", "continuous")

#: Task columns, in the order of :meth:`Plan.tasks`.
TASK_COLUMNS = (
    "after_step",
    "src_start",
    "src_stop",
    "dst_start",
    "dst_stop",
    "filter_start",
    "filter_stop",
    "fft_size",
)

IntArray = npt.NDArray[np.int32]

#: Largest supported ``prompt + length`` (positions are stored as int32).
MAX_POSITIONS = 1 << 30


class PlanError(ValueError):
    """A plan breaks one of its invariants (coverage, causality or FFT sizing)."""


class TaskOffsets(NamedTuple):
    """One task in the coordinates of an executor's buffer (slot = position - origin).

    ``fill_future(buffer[..., src_start:src_stop], spectra[spectrum], fft_size, read_start,
    read_start + dst_stop - dst_start)`` is added to ``buffer[..., dst_start:dst_stop]``.
    """

    src_start: int
    src_stop: int
    dst_start: int
    dst_stop: int
    read_start: int
    fft_size: int
    spectrum: tuple[int, int, int]


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _readonly(a: npt.ArrayLike) -> IntArray:
    arr = np.ascontiguousarray(a, dtype=np.int32)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False, repr=False)
class Plan:
    """An explicit generation schedule (build it with :func:`make_plan`).

    Attributes
    ----------
    schedule : {"naive", "epoched", "continuous"}
        Name of the schedule.
    length : int
        Number of online steps (outputs produced one at a time after the prompt).
    prompt : int
        Number of inputs given at once before the online steps.
    epoch : int or None
        Epoch length of the epoched schedule.
    direct_below : int
        Aligned block size summed directly at emit time (continuous); inputs and outputs in the
        same aligned block of this size never go through an FFT.
    origin : int
        First position whose input an executor must keep (``0`` for naive, which keeps the
        prompt; ``prompt`` otherwise). Buffers hold positions ``origin .. prompt+length-1``.
    window_start : ndarray of int64, shape (length,)
        First input position of the directly summed local window of each online step.
    task_ptr : ndarray of int64, shape (length + 1,)
        Tasks run after step ``t`` are rows ``task_ptr[t]:task_ptr[t+1]`` of the task columns.
    after_step, src_start, src_stop, dst_start, dst_stop, filter_start, filter_stop, fft_size
        Task columns (int64 arrays of equal length).
    prefill_fft_size : int
        FFT size of the prefill convolution (0 without a prompt).
    """

    schedule: str
    length: int
    prompt: int
    epoch: int | None
    direct_below: int
    epoch_is_default: bool
    origin: int
    window_start: IntArray
    task_ptr: IntArray
    src_start: IntArray
    src_stop: IntArray
    dst_start: IntArray
    dst_stop: IntArray
    filter_start: IntArray
    filter_stop: IntArray
    fft_size: IntArray
    prefill_fft_size: int
    _key: tuple[Any, ...] = field(default=())

    # ------------------------------------------------------------------ derived sizes
    @property
    def total(self) -> int:
        """Number of positions, ``prompt + length``; filters need at least this many taps."""
        return self.prompt + self.length

    @property
    def prefill_fills_future(self) -> bool:
        """Whether prefill also fills the prompt's contribution to all later outputs."""
        return self.prompt > 0 and self.origin == self.prompt

    @property
    def buffer_length(self) -> int:
        """Length of the per-channel state buffer (inputs kept plus outputs filled ahead)."""
        return self.total - self.origin

    @property
    def window_length(self) -> int:
        """Longest local window of any step (number of taps summed directly)."""
        steps = np.arange(self.length, dtype=np.int64) + self.prompt
        return int((steps - self.window_start).max()) + 1

    @property
    def tasks_start_windows(self) -> bool:
        """Whether every task writes from the first position of a window block onwards.

        Then the accumulated future of a whole window block is final when its first step
        starts (tasks only write blocks not yet started), so an executor may copy it once per
        block. True for every schedule :func:`make_plan` builds.
        """
        if self.num_tasks == 0:
            return True
        first = self.dst_start.astype(np.int64)
        return bool(np.all(self.window_start[first - self.prompt] == first))

    @property
    def num_tasks(self) -> int:
        """Number of FutureFill tasks."""
        return int(self.src_start.shape[0])

    @property
    def after_step(self) -> IntArray:
        """The online step after which each task runs (derived from :attr:`task_ptr`)."""
        return np.repeat(np.arange(self.length, dtype=np.int32), np.diff(self.task_ptr))

    @property
    def spectrum_keys(self) -> tuple[tuple[int, int, int], ...]:
        """Distinct ``(filter_start, filter_stop, fft_size)`` triples; one spectrum each."""
        if self.num_tasks == 0:
            return ()
        triples = np.stack([self.filter_start, self.filter_stop, self.fft_size], axis=1)
        return tuple((int(lo), int(hi), int(n)) for lo, hi, n in np.unique(triples, axis=0))

    def tasks(self, step: int | None = None) -> IntArray:
        """Task table as an ``(n, 8)`` array in :data:`TASK_COLUMNS` order.

        Parameters
        ----------
        step : int, optional
            Only the tasks run after this online step.
        """
        table = np.stack([getattr(self, c) for c in TASK_COLUMNS], axis=1)
        if step is None:
            return table
        return table[self.task_ptr[step] : self.task_ptr[step + 1]]

    def task_offsets(self, i: int) -> TaskOffsets:
        """Task ``i`` as buffer slots: what an executor needs to run it."""
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

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Prove the plan is exact and causal, or raise :class:`PlanError`.

        Checks that (1) every pair (input ``s``, output ``j``) with ``s <= j`` is covered exactly
        once, by the prefill, the local window of ``j`` or one task; (2) no task reads an input
        not yet known or writes an output already returned; (3) every FFT task has enough filter
        taps and an FFT long enough that circular wrap-around cannot reach the outputs it reads.
        The coverage check tiles each output's inputs with intervals: O(sum of task output
        lengths) time and memory, i.e. O(L log L) for the continuous schedule.
        """
        L, P = self.length, self.prompt
        steps = np.arange(L, dtype=np.int64)
        pos = P + steps
        if self.window_start.shape != (L,) or self.task_ptr.shape != (L + 1,):
            raise PlanError("window_start must have `length` entries and task_ptr `length+1`")
        if self.task_ptr[0] != 0 or self.task_ptr[-1] != self.num_tasks:
            raise PlanError("task_ptr must start at 0 and end at the number of tasks")
        if np.any(self.window_start > pos) or np.any(self.window_start < self.origin):
            raise PlanError("a local window starts after its step or before the kept inputs")
        if self.prompt > 0 and not self.prefill_fills_future and self.origin != 0:
            raise PlanError("a prompt that is not filled ahead must be kept (origin 0)")

        a, b, c, d, lo, hi, n = (getattr(self, col).astype(np.int64) for col in TASK_COLUMNS[1:])
        t = self.after_step.astype(np.int64)
        if np.any(np.diff(self.task_ptr) < 0):
            raise PlanError("task_ptr must be non-decreasing")
        if np.any(a >= b) or np.any(c >= d):
            raise PlanError("every task needs a non-empty source and target range")
        if np.any(b > P + t + 1):
            raise PlanError("a task reads an input that is not known after its step")
        if np.any(c < P + t + 1):
            raise PlanError("a task writes an output that was already returned")
        if np.any(a < self.origin) or np.any(d > self.total):
            raise PlanError("a task reaches outside the kept positions")
        if np.any(lo < 0) or np.any(lo > c - b + 1) or np.any(hi < d - a):
            raise PlanError("a task's filter slice misses taps it needs")
        if np.any(hi > self.total) or np.any(hi - lo > n):
            raise PlanError("a task's filter slice is longer than the filters or its FFT")
        if np.any(n < b + hi - c - 1) or np.any(n < d - a - lo):
            raise PlanError("a task's FFT is too short: circular wrap-around reaches its outputs")
        if self.prompt > 0:
            need = (2 * P + L - 1) if self.prefill_fills_future else (2 * P - 1)
            if self.prefill_fft_size < need:
                raise PlanError("the prefill FFT is too short")

        # Coverage: for every online output j, the intervals [window_start, j+1), the tasks'
        # [src_start, src_stop) with j in [dst_start, dst_stop) and, if the prompt was filled
        # ahead, [0, prompt) must tile [0, j+1) exactly.
        counts = d - c
        js = np.repeat(c, counts) + (
            np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        )
        iv_j = np.concatenate([pos, js])
        iv_lo = np.concatenate([self.window_start.astype(np.int64), np.repeat(a, counts)])
        iv_hi = np.concatenate([pos + 1, np.repeat(b, counts)])
        if self.prefill_fills_future:
            iv_j = np.concatenate([iv_j, pos])
            iv_lo = np.concatenate([iv_lo, np.zeros(L, np.int64)])
            iv_hi = np.concatenate([iv_hi, np.full(L, P, np.int64)])
        order = np.lexsort((iv_lo, iv_j))
        iv_j, iv_lo, iv_hi = iv_j[order], iv_lo[order], iv_hi[order]
        first = np.ones(iv_j.shape, bool)
        first[1:] = iv_j[1:] != iv_j[:-1]
        last = np.ones(iv_j.shape, bool)
        last[:-1] = first[1:]
        if not np.array_equal(iv_j[first], pos):
            raise PlanError("some output is covered by no interval")
        if np.any(iv_lo[first] != 0):
            bad = int(iv_j[first][np.argmax(iv_lo[first] != 0)])
            raise PlanError(f"output {bad}: the first inputs are never added")
        if np.any(iv_hi[last] != iv_j[last] + 1):
            bad = int(iv_j[last][np.argmax(iv_hi[last] != iv_j[last] + 1)])
            raise PlanError(f"output {bad}: inputs are missing or counted beyond the output")
        gap = iv_lo[~first] != iv_hi[np.flatnonzero(~first) - 1]
        if np.any(gap):
            bad = int(iv_j[~first][np.argmax(gap)])
            raise PlanError(f"output {bad}: inputs counted twice or skipped")

    # ------------------------------------------------------------------ cost
    def cost(self, channels: int = 1, batch: int = 1) -> PlanCost:
        """Estimated work and memory of running this plan.

        FLOP model: a real FFT of size ``n`` costs ``2.5 n log2 n``; a task is a forward FFT, a
        complex spectrum product (``6 (n/2+1)``) and an inverse FFT, plus the addition into the
        accumulator; a local window of ``w`` taps costs ``2 w``.

        Parameters
        ----------
        channels, batch : int
            Multiply the per-channel work.
        """
        bc = channels * batch
        n = self.fft_size.astype(np.float64)
        task_flops = (5.0 * n * np.log2(np.maximum(n, 2)) + 6.0 * (n // 2 + 1)) + (
            self.dst_stop - self.dst_start
        )
        per_step_tasks = np.zeros(self.length)
        np.add.at(per_step_tasks, self.after_step, task_flops)
        window = 2.0 * (self.prompt + np.arange(self.length) - self.window_start + 1)
        step_flops = (window + per_step_tasks) * bc
        prefill = 0.0
        if self.prompt:
            m = float(self.prefill_fft_size)
            prefill = (7.5 * m * math.log2(m) + 6 * (m // 2 + 1)) * bc
        spectra = sum(k[2] // 2 + 1 for k in self.spectrum_keys)
        sizes, counts = np.unique(self.fft_size, return_counts=True)
        by_size = {
            int(s): (int(k), float(task_flops[self.fft_size == s].sum() * bc))
            for s, k in zip(sizes, counts, strict=True)
        }
        return PlanCost(
            plan=self,
            channels=channels,
            batch=batch,
            prefill_flops=prefill,
            online_flops=float(step_flops.sum()),
            worst_step=int(np.argmax(step_flops)) if self.length else 0,
            worst_step_flops=float(step_flops.max()) if self.length else 0.0,
            state_values=self.buffer_length * bc,
            spectrum_values=spectra * channels,
            window_values=self.window_length * channels,
            tasks_by_fft_size=by_size,
        )

    def __repr__(self) -> str:
        return str(self.cost())

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Draw the tiling of the input x output triangle (needs matplotlib).

        See :func:`futurefill.plot.plot_plan` for the parameters.
        """
        from .plot import plot_plan

        return plot_plan(self, ax=ax, **kwargs)


@dataclass(frozen=True)
class PlanCost:
    """Cost estimate of a :class:`Plan` for a number of channels and a batch size."""

    plan: Plan
    channels: int
    batch: int
    prefill_flops: float
    online_flops: float
    worst_step: int
    worst_step_flops: float
    state_values: int
    spectrum_values: int
    window_values: int
    tasks_by_fft_size: dict[int, tuple[int, float]]

    @property
    def flops_per_step(self) -> float:
        """Average online FLOPs per step."""
        return self.online_flops / max(self.plan.length, 1)

    def __str__(self) -> str:
        p = self.plan
        head = f"Plan(schedule={p.schedule!r}, length={p.length}, prompt={p.prompt}"
        if p.schedule == "epoched":
            head += f", epoch={p.epoch}"
            if p.epoch_is_default:
                head += " [default: int(sqrt(L*log2(L)))]"
        if p.schedule == "continuous":
            head += f", direct_below={p.direct_below}"
        head += ")"
        lines = [
            head,
            f"  channels x batch          : {self.channels} x {self.batch}",
            f"  FutureFill tasks          : {p.num_tasks}",
            f"  prefill FLOPs             : {self.prefill_flops:.4g}"
            + (f" (FFT size {p.prefill_fft_size})" if p.prompt else ""),
            f"  online FLOPs              : {self.online_flops:.4g}"
            f" ({self.flops_per_step:.4g} per step)",
            f"  worst step                : t={self.worst_step}"
            f" ({self.worst_step_flops:.4g} FLOPs)",
            f"  state (inputs + future)   : {self.state_values} values",
            f"  filter spectra            : {self.spectrum_values} complex values",
            f"  longest local window      : {p.window_length} taps",
        ]
        if self.tasks_by_fft_size:
            lines.append("  FFT size   tasks        FLOPs")
            for size, (count, flops) in sorted(self.tasks_by_fft_size.items()):
                lines.append(f"  {size:>8d} {count:>7d} {flops:>12.4g}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- builders
def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def default_epoch(length: int) -> int:
    """The authors' epoch length ``int(sqrt(L * log2 L))``, at least 1 and at most ``L``."""
    return max(1, min(length, int(math.sqrt(length * math.log2(max(length, 2))))))


def make_plan(
    length: int,
    *,
    schedule: str = "continuous",
    prompt: int = 0,
    epoch: int | None = None,
    direct_below: int | None = None,
) -> Plan:
    """Build (or fetch from the cache) the plan of a generation schedule.

    Parameters
    ----------
    length : int
        Number of online steps, ``>= 1``.
    schedule : {"naive", "epoched", "continuous"}
        ``naive`` sums every past input at each step (O(L^2)); ``epoched`` fills the next
        ``epoch`` outputs from all past inputs at each epoch start (O(L^1.5 sqrt(log L)));
        ``continuous`` fills dyadic blocks (O(L log^2 L)).
    prompt : int
        Number of prompt inputs given at once by ``prefill`` (``>= 0``).
    epoch : int, optional
        Epoch length for ``epoched``; default ``int(sqrt(L log2 L))``, the authors' choice.
    direct_below : int, optional
        For ``continuous``: a power of two ``k0``; pairs of positions in the same aligned block
        of ``k0`` steps are summed directly at emit time, larger blocks by FFT. Default 1.

    Returns
    -------
    Plan
        Equal arguments return the same (cached) object.
    """
    length = _check_int("length", length, 1)
    prompt = _check_int("prompt", prompt, 0)
    if prompt + length > MAX_POSITIONS:
        raise ValueError(f"prompt + length must be at most 2**30, got {prompt + length}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if schedule != "epoched" and epoch is not None:
        raise ValueError(f"epoch applies only to the epoched schedule, not {schedule!r}")
    if schedule != "continuous" and direct_below is not None:
        raise ValueError(f"direct_below applies only to the continuous schedule, not {schedule!r}")
    if epoch is not None:
        epoch = _check_int("epoch", epoch, 1)
    if direct_below is not None:
        direct_below = _check_int("direct_below", direct_below, 1)
        if direct_below & (direct_below - 1):
            raise ValueError(f"direct_below must be a power of two, got {direct_below}")
    return _build(schedule, length, prompt, epoch, direct_below)


@functools.lru_cache(maxsize=64)
def _build(
    schedule: str, length: int, prompt: int, epoch: int | None, direct_below: int | None
) -> Plan:
    L, P = length, prompt
    steps = np.arange(L, dtype=np.int64)
    epoch_is_default = False
    if schedule == "naive":
        origin = 0
        window_start = np.zeros(L, np.int64)
        none = np.zeros(0, np.int64)
        tasks = (none,) * 7  # after_step, src, src_stop, dst, dst_stop, filter, filter_stop
        fft = none
    elif schedule == "epoched":
        origin = P
        if epoch is None:
            epoch, epoch_is_default = default_epoch(L), True
        E = epoch
        window_start = P + (steps // E) * E
        t0 = np.arange(E, L, E, dtype=np.int64)
        # One fixed filter slice phi[1:L] and FFT size >= L-1 serve every epoch, so a single
        # spectrum is computed once (see ALGORITHMS.md, "a variant ... fixed FFT size").
        tasks = (
            t0 - 1,
            np.full_like(t0, P),
            P + t0,
            P + t0,
            P + np.minimum(t0 + E, L),
            np.ones_like(t0),
            np.full_like(t0, L),
        )
        fft = np.full(t0.shape, _next_pow2(max(L - 1, 1)), np.int64)
    else:
        origin = P
        k0 = 1 if direct_below is None else direct_below
        direct_below = k0
        window_start = P + (steps // k0) * k0
        t1 = steps[:-1] + 1  # t + 1 for every step with a future
        k = t1 & -t1  # lowbit(t + 1)
        keep = k >= k0
        t1, k = t1[keep], k[keep]
        # Taps phi[1:2k] serve every block of size k (one spectrum per level); the top level may
        # be cut at L taps, which is all that outputs < L can need.
        hi = np.minimum(2 * k, L)
        tasks = (t1 - 1, P + t1 - k, P + t1, P + t1, P + np.minimum(t1 + k, L), np.ones_like(k), hi)
        fft = 2 * k
    counts = np.bincount(tasks[0], minlength=L) if len(tasks[0]) else np.zeros(L, np.int64)
    task_ptr = np.concatenate([[0], np.cumsum(counts)])
    fills = P > 0 and origin == P
    prefill_fft = 0 if P == 0 else _next_pow2((2 * P + L - 1) if fills else (2 * P - 1))
    return Plan(
        schedule=schedule,
        length=L,
        prompt=P,
        epoch=epoch if schedule == "epoched" else None,
        direct_below=direct_below if schedule == "continuous" and direct_below else 1,
        epoch_is_default=epoch_is_default,
        origin=origin,
        window_start=_readonly(window_start),
        task_ptr=_readonly(task_ptr),
        src_start=_readonly(tasks[1]),
        src_stop=_readonly(tasks[2]),
        dst_start=_readonly(tasks[3]),
        dst_stop=_readonly(tasks[4]),
        filter_start=_readonly(tasks[5]),
        filter_stop=_readonly(tasks[6]),
        fft_size=_readonly(fft),
        prefill_fft_size=prefill_fft,
        _key=(schedule, L, P, epoch, direct_below if schedule == "continuous" else None),
    )
