"""StreamPool: many streams of one set of filters, each at its own position (continuous batching).

A serving engine keeps a pool of sequences that arrive, run and leave at different times, each
at its own position, with prompts of any length; it forks sequences (parallel sampling, beam
search, prefix sharing) and undoes drafted steps (speculative decoding). A :class:`StreamPool`
does that for an online causal convolution: ``capacity`` slots, each an independent stream of
the same filters, all running one prompt-free plan in their own coordinates (slot ``s`` at step
``t`` produces the output at position ``prompt_s + t``). The work of a call is grouped across
slots: the window sums of all stepped slots are one batched kernel, and the FutureFill tasks due
in them are one batched transform pair per task shape (:mod:`futurefill.pool.grouping`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import array_api_extra as xpx
import numpy as np

from .. import interpreter
from .._checks import check_int
from .._inputs import convert_shaped, host_filters
from .._labels import dtype_name
from .._registry import get_backend
from ..executor import Executor
from ..memory import format_bytes
from ..plan import Plan, PlanSpec, make_plan
from ..plan.registry import resolve_spec
from ..state import ConvState
from . import prompt as _prompt
from . import snapshot
from .grouping import due_groups
from .journal import UndoJournal
from .slots import PoolStats, SlotTable, channel_range, check_pool_size, check_taps

__all__ = ["PoolStats", "StreamPool"]

Array = Any
_ALL = slice(None)
#: Scratch of one batched transform, in bytes, above which a group is split (per call).
DEFAULT_GROUP_BYTES = 256 << 20


class StreamPool:
    """A fixed number of slots, each an independent online convolution at its own position.

    Parameters
    ----------
    filters : array, shape (C, N)
        Filter taps shared by every slot; ``N`` must cover a slot's prompt plus its steps.
    length : int
        Most steps any slot takes after its prompt (each slot may ask for fewer).
    capacity : int
        Number of slots.
    schedule : str, PlanSpec or Plan
        The schedule every slot runs (a prompt-free plan of ``length`` steps); ``"continuous"``
        by default.
    dtype : optional
        ``float32`` or ``float64`` (default: that of the filters, float64 for integers).
    backend, device : optional
        As for :class:`futurefill.OnlineConv`.
    max_group_bytes : int
        Scratch memory of one batched transform; a larger group is split.
    **params
        Schedule parameters (e.g. ``direct_below=16``).

    Notes
    -----
    Memory is ``capacity x C x length`` values for the buffers plus the filters and their
    spectra (:attr:`memory_bytes`), refused with a :class:`MemoryError` naming the size when it
    would not fit. A prompt's future is folded into its slot at the slot's first step; see
    :meth:`prefill`. :meth:`rewind` needs a :meth:`mark` first (an undo journal: see
    :mod:`futurefill.pool.journal` for its cost).

    Examples
    --------
    >>> import numpy as np, futurefill
    >>> phi = futurefill.decaying_random_filters(4, 64, seed=0)
    >>> pool = futurefill.StreamPool(phi, length=32, capacity=3)
    >>> a = pool.admit()
    >>> b = pool.admit(prompt=np.ones((4, 10)))          # a 10-input prompt
    >>> y = pool.step([a, b], np.ones((2, 4)))          # each slot at its own position
    >>> pool.position(a), pool.position(b)
    (1, 11)
    >>> c = pool.fork(b)                                 # same state, diverges from here
    >>> pool.release(a)
    """

    def __init__(
        self,
        filters: Array,
        length: int,
        *,
        capacity: int,
        schedule: str | PlanSpec | Plan = "continuous",
        dtype: Any = None,
        backend: str | Executor | None = None,
        device: Any = None,
        max_group_bytes: int = DEFAULT_GROUP_BYTES,
        **params: Any,
    ) -> None:
        executor = get_backend(backend, device=device)
        length = check_int("length", length, 1)
        capacity = check_int("capacity", capacity, 1)
        group_bytes = check_int("max_group_bytes", max_group_bytes, 1)
        host = host_filters(executor, filters)
        channels, taps = host.shape
        if taps < length:
            raise ValueError(f"filters have {taps} taps, fewer than length={length} steps")
        if dtype is None:
            dtype = executor.default_dtype(host.dtype)
        dtype = executor.resolve_dtype(dtype)
        itemsize = np.dtype(executor.to_numpy(executor.zeros((1,), dtype)).dtype).itemsize
        check_pool_size(capacity, channels, length, taps, itemsize)
        if isinstance(schedule, Plan):
            plan = schedule
            if params or (plan.length, plan.prompt) != (length, 0):
                raise ValueError(
                    f"a pool runs a prompt-free plan of length={length}; this plan has length "
                    f"{plan.length} and prompt {plan.prompt}"
                )
        else:
            spec = PlanSpec.coerce(schedule).with_params(**params)
            spec = resolve_spec(spec, executor, batch=capacity, channels=channels, dtype=dtype)
            plan = make_plan(length, spec)
        self._executor = executor
        self._dtype = dtype
        self._itemsize = itemsize
        #: Largest rows x channels x FFT size of one batched transform (~3 such arrays).
        self._max_elements = max(1, group_bytes // (3 * itemsize))
        self._taps = taps
        self._state: ConvState = interpreter.new_state(
            executor, plan, host, batch=capacity, dtype=dtype, prepare=False
        )
        self._filters_digest = hashlib.sha256(
            np.ascontiguousarray(host, dtype=np.float64).tobytes()
        ).hexdigest()[:20]
        self._slots = SlotTable(capacity, channels)
        self.stats = PoolStats()

    # ------------------------------------------------------------------ sizes
    @property
    def plan(self) -> Plan:
        """The prompt-free plan every slot runs."""
        return self._state.plan

    @property
    def backend(self) -> Executor:
        """The executor running the pool."""
        return self._executor

    @property
    def dtype(self) -> Any:
        """Working dtype."""
        return self._dtype

    @property
    def capacity(self) -> int:
        """Number of slots."""
        return int(self._slots.active.size)

    @property
    def channels(self) -> int:
        """Channels of every slot."""
        return self._state.channels

    @property
    def length(self) -> int:
        """Most steps of a slot after its prompt."""
        return self.plan.length

    @property
    def memory_bytes(self) -> int:
        """Bytes of the pool's arrays: buffers, filters, window taps and filter spectra."""
        s = self._state
        spectra = sum(n // 2 + 1 for _, _, n in self.plan.spectrum_keys)
        reals = self.capacity * self.channels * self.length
        reals += self.channels * (self._taps + s.taps_reversed.shape[-1] + 2 * spectra)
        return self._itemsize * reals

    @property
    def active_slots(self) -> list[int]:
        """Slots in use, ascending."""
        return self._slots.in_use()

    @property
    def free_slots(self) -> int:
        """Number of free slots."""
        return int((~self._slots.active).sum())

    def position(self, slot: int) -> int:
        """Position of the next output of ``slot`` (its prompt length plus its steps)."""
        row = self._slots.row(slot)
        return int(self._slots.prompt_length(row) + self._slots.step[row])

    def steps(self, slot: int) -> int:
        """Steps ``slot`` took since its prompt."""
        return int(self._slots.step[self._slots.row(slot)])

    def remaining(self, slot: int) -> int:
        """Steps ``slot`` may still take."""
        row = self._slots.row(slot)
        return int(self._slots.limit[row] - self._slots.step[row])

    def __repr__(self) -> str:
        p = self.plan
        return (
            f"StreamPool(schedule={str(p.spec or 'custom')!r}, length={self.length}, "
            f"capacity={self.capacity}, active={int(self._slots.active.sum())}, "
            f"channels={self.channels}, dtype={self._dtype}, backend={self._executor.name!r}, "
            f"memory={format_bytes(self.memory_bytes)})"
        )

    # ------------------------------------------------------------------ admission
    def admit(self, prompt: Array | None = None, *, length: int | None = None) -> int:
        """Claim a free slot, optionally with a whole prompt ``(C, P)``; return its id.

        The prompt's outputs are not computed (use :meth:`prefill` for them); its future is
        folded into the slot at its first step. A full pool raises :class:`RuntimeError`
        (nothing is overwritten).

        Parameters
        ----------
        prompt : array, shape (C, P), optional
            The prompt inputs of every channel.
        length : int, optional
            Most steps this slot will take (default and at most: the pool's ``length``).
        """
        limit = self.length if length is None else check_int("length", length, 1, self.length)
        if prompt is not None:
            u = convert_shaped(
                self._executor, prompt, self._dtype, (self.channels, -1), "the prompt", finite=True
            )
            check_taps(self._taps, int(u.shape[-1]), limit)
        row = self._slots.free_row("release() one or build a larger pool")
        self._claim(row, limit)
        if prompt is not None and int(u.shape[-1]):
            pending = self._slots.prompt_inputs(row, self._executor, self._dtype)
            pending.append(self._executor, u, _ALL)
        return row

    def prefill(self, slot: int, u: Array, channels: slice = _ALL) -> Array:
        """Give the next chunk of ``slot``'s prompt for ``channels``; return its outputs.

        Any number of chunks may be given before the slot's first step; cutting a prompt into
        chunks leaves the same state as giving it whole. Each chunk's outputs cost one FFT
        convolution of the prompt so far.

        Parameters
        ----------
        slot : int
        u : array, shape (c, p)
            The chunk's inputs, for the ``c`` channels of ``channels``.
        channels : slice
            Contiguous channels (all by default): layers sharing a pool prefill their own.

        Returns
        -------
        array, shape (c, p)
        """
        row = self._slots.row(slot)
        if self._slots.closed[row] or self._slots.emitted[row].any():
            raise RuntimeError(f"slot {slot} has taken steps: its prompt is closed")
        ch = channel_range(channels, self.channels)
        u = convert_shaped(
            self._executor,
            u,
            self._dtype,
            (ch.stop - ch.start, -1),
            "the prompt chunk",
            finite=True,
        )
        pending = self._slots.pending.get(row)
        given = np.zeros(1, np.int64) if pending is None else pending.lengths[ch]
        if int(given.min()) != int(given.max()):
            raise RuntimeError(
                f"channels {ch.start}..{ch.stop - 1} of slot {slot} were given prompts of "
                "different lengths: prefill them range by range"
            )
        p, start = int(u.shape[-1]), int(given.max())
        check_taps(self._taps, start + p, int(self._slots.limit[row]))
        pending = self._slots.prompt_inputs(row, self._executor, self._dtype)
        xp = self._executor.xp
        with self._slots.guard([row]):
            pending.append(self._executor, u, ch)
            return _prompt.chunk_outputs(
                xp, self._state.filters, pending.inputs, start, start + p, ch
            )

    def release(self, slot: int) -> None:
        """Free ``slot``: its buffer is zeroed, so nothing of it reaches the next occupant."""
        if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)):
            raise TypeError(f"a slot is an int, got {type(slot).__name__}")
        row = int(slot)
        if not (0 <= row < self.capacity) or not self._slots.active[row]:
            raise ValueError(f"slot {slot} is not in use")
        self._state.buffer = xpx.at(self._state.buffer)[row, ...].set(0)
        self._slots.free(row)

    def fork(self, slot: int) -> int:
        """A new slot with ``slot``'s exact state (buffer, position, prompt, journal)."""
        row = self._slots.row(slot, whole=True)
        new = self._slots.free_row("no room to fork into")
        self._claim(new, int(self._slots.limit[row]))
        s = self._state
        s.buffer = xpx.at(s.buffer)[new, ...].set(s.buffer[row, ...])
        self._slots.copy_row(row, new, self._executor.xp)
        return new

    # ------------------------------------------------------------------ stepping
    def step(self, slots: Sequence[int], u: Array) -> Array:
        """One step of every slot in ``slots``, each at its own position, in one call.

        Parameters
        ----------
        slots : sequence of int
            Distinct slots in use.
        u : array, shape (len(slots), C)
            Row ``i`` is the input of ``slots[i]``.

        Returns
        -------
        array, shape (len(slots), C)
        """
        rows = self._slots.rows(slots, whole=True)
        u = convert_shaped(self._executor, u, self._dtype, (rows.size, self.channels), "u")
        self._slots.check_prompts(rows)
        with self._slots.guard(rows):
            self._begin(rows)
            y = self._emit(rows, u, _ALL)
            self._fill(rows)
        return y

    def emit(self, slots: Sequence[int], u: Array, channels: slice = _ALL) -> Array:
        """Outputs of ``channels`` at the current step of ``slots`` (each channel once per
        step); the future is filled by :meth:`advance`."""
        rows = self._slots.rows(slots)
        ch = channel_range(channels, self.channels)
        if self._slots.emitted[rows, ch].any():
            raise RuntimeError(
                f"channels {ch.start}..{ch.stop - 1} were already emitted at this step"
            )
        u = convert_shaped(self._executor, u, self._dtype, (rows.size, ch.stop - ch.start), "u")
        starting = rows[~self._slots.emitted[rows].any(axis=1)]
        self._slots.check_prompts(starting)
        with self._slots.guard(rows):
            self._begin(starting)
            y = self._emit(rows, u, ch)
        self._slots.emitted[rows, ch] = True
        return y

    def advance(self, slots: Sequence[int]) -> None:
        """Fill the future of ``slots`` once all their channels were emitted; next step."""
        rows = self._slots.rows(slots)
        missing = ~self._slots.emitted[rows].all(axis=1)
        if missing.any():
            bad = rows[missing].tolist()
            raise RuntimeError(f"slots {bad} have channels not emitted at this step")
        with self._slots.guard(rows):
            self._fill(rows)
        self._slots.emitted[rows] = False

    def _begin(self, rows: np.ndarray) -> None:
        """Fold pending prompts into their slots; journal the slots the step overwrites."""
        s = self._state
        self._slots.closed[rows] = True
        for row in self._slots.noted(rows):
            pending = self._slots.pending.pop(row, None)
            if pending is not None:
                P = pending.length()
                self._slots.prompt[row] = P
                if P:
                    future = _prompt.prompt_future(
                        self._executor.xp, s.filters, pending.inputs, P, int(self._slots.limit[row])
                    )
                    s.buffer = xpx.at(s.buffer)[row, :, : future.shape[-1]].set(future)
            journal = self._slots.journal.get(row)
            if journal is not None:
                journal.save_slot(self._executor.xp, s.buffer, row, int(self._slots.step[row]))

    def _emit(self, rows: np.ndarray, u: Array, channels: slice) -> Array:
        steps = self._slots.step[rows]
        starts = self.plan.window_slot[steps].astype(np.int64)
        return self._executor.emit_rows(self._state, rows, u, channels, steps, starts)

    def _fill(self, rows: np.ndarray) -> None:
        """Run the tasks due after this step of ``rows`` (journaling what they add to)."""
        plan, steps = self.plan, self._slots.step[rows]
        self._slots.save_targets(self._executor.xp, plan, self._state.buffer, rows)
        groups = due_groups(
            plan, rows, steps, channels=self.channels, max_elements=self._max_elements
        )
        self._executor.fill_groups(self._state, groups, max_elements=self._max_elements)
        self._slots.step[rows] += 1
        self.stats.count(int(rows.size), groups)

    # ------------------------------------------------------------------ speculation
    def mark(self, slot: int) -> None:
        """Start recording ``slot``'s steps so that :meth:`rewind` can undo them (any earlier
        record is dropped)."""
        self._slots.journal[self._slots.row(slot, whole=True)] = UndoJournal()

    def commit(self, slot: int) -> None:
        """Stop recording ``slot``'s steps (they can no longer be undone)."""
        self._slots.journal.pop(self._slots.row(slot, whole=True), None)

    def rewind(self, slot: int, k: int) -> None:
        """Undo the last ``k`` steps of ``slot`` exactly, back to at most its :meth:`mark`.

        Costs a copy of what those steps wrote (no transform); the slot stays marked.
        """
        row = self._slots.row(slot, whole=True)
        journal = self._slots.journal.get(row)
        if journal is None:
            raise RuntimeError(f"slot {slot} is not marked: call mark(slot) before the steps")
        k = check_int("k", k, 0, len(journal))
        s = self._state
        with self._slots.guard([row]):
            s.buffer, step = journal.undo(s.buffer, row, k)
            if k:
                self._slots.step[row] = step

    # ------------------------------------------------------------------ snapshots
    def state_dict(self, slot: int) -> dict[str, Any]:
        """``slot`` as plain data (NumPy arrays, ints, strings): its buffer, position and any
        pending prompt, to :meth:`load_state_dict` into a pool of the same filters and plan
        (here, in another process or on another machine). Its journal is not included."""
        row = self._slots.row(slot, whole=True)
        ex = self._executor
        limit = int(self._slots.limit[row])
        pending = self._slots.pending.get(row)
        return snapshot.slot_state(
            plan_fingerprint=self.plan.fingerprint,
            filters_digest=self._filters_digest,
            dtype=dtype_name(self._dtype),
            channels=self.channels,
            limit=limit,
            step=int(self._slots.step[row]),
            prompt=int(self._slots.prompt[row]),
            closed=bool(self._slots.closed[row]),
            buffer=ex.to_numpy(self._state.buffer[row, :, :limit]).copy(),
            pending=None
            if pending is None
            else ex.to_numpy(pending.inputs[:, : int(pending.lengths.max())]).copy(),
            pending_lengths=None if pending is None else pending.lengths.copy(),
        )

    def load_state_dict(self, state: dict[str, Any]) -> int:
        """Admit a slot saved by :meth:`state_dict` (of this pool or an equal one); return
        its id. A state that does not fit this pool is refused before anything changes."""
        checked = snapshot.check_slot_state(
            state,
            plan_fingerprint=self.plan.fingerprint,
            filters_digest=self._filters_digest,
            dtype=dtype_name(self._dtype),
            channels=self.channels,
            length=self.length,
            taps=self._taps,
        )
        row = self._slots.free_row("release() one first")
        ex = self._executor
        limit = checked["limit"]
        buffer = ex.asarray(checked["buffer"], dtype=self._dtype)
        self._claim(row, limit)
        s = self._state
        s.buffer = xpx.at(s.buffer)[row, :, :limit].set(buffer)
        self._slots.step[row] = checked["step"]
        self._slots.prompt[row] = checked["prompt"]
        self._slots.closed[row] = checked["closed"]
        if checked["pending"] is not None:
            self._slots.pending[row] = _prompt.PromptInputs(
                ex.asarray(checked["pending"], dtype=self._dtype),
                np.asarray(checked["pending_lengths"], np.int64).copy(),
            )
        return row

    # ------------------------------------------------------------------ helpers
    def _claim(self, row: int, limit: int) -> None:
        self._slots.claim(row, limit)
        self._state.buffer = xpx.at(self._state.buffer)[row, ...].set(0)
