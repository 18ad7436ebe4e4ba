"""StreamPool: many streams of one set of filters, each at its own position (continuous batching).

A serving engine keeps a pool of sequences that arrive, run and leave at different times, each
at its own position, with prompts of any length; it forks sequences (parallel sampling, beam
search, prefix sharing) and undoes drafted steps (speculative decoding). A :class:`StreamPool`
does that for an online causal convolution: ``capacity`` slots, each an independent stream of
the same filters, all running one prompt-free plan in their own coordinates (slot ``s`` at step
``t`` produces the output at position ``prompt_s + t``). A slot may take more steps than the
plan has, up to open-ended: it then runs in segments, each with every position before it as its
prompt (see :meth:`StreamPool.admit`). The work of a call is grouped across
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
from .journal import SegmentRecord, UndoJournal
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
        Steps of the plan every slot runs: the span of a slot's buffer. A slot admitted for
        more steps (or open-ended) runs in segments of ``length`` steps; see :meth:`admit`.
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
    spectra (:attr:`memory_bytes`; a slot longer than ``length`` keeps its inputs besides),
    refused with a :class:`MemoryError` naming the size when it
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
        self._slots = SlotTable(capacity, channels, length=plan.length, taps=taps)
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
        """Steps of the plan (of a slot's segment)."""
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
        return self._slots.position(self._slots.row(slot))

    def steps(self, slot: int) -> int:
        """Steps ``slot`` took since its prompt."""
        row = self._slots.row(slot)
        return self._slots.position(row) - self._slots.admission_prompt(row)

    def remaining(self, slot: int) -> int:
        """Steps ``slot`` may still take (an open-ended slot: until the filters' taps)."""
        row = self._slots.row(slot)
        return self._slots.end(row) - self._slots.position(row)

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
            Most steps this slot will take, at most what the filters leave after the prompt;
            ``None`` (default): open-ended, until the filters' taps run out.

        Notes
        -----
        A slot allowed more steps than the pool's :attr:`length` runs in *segments*: when a
        segment's ``length`` steps are done, the next step starts a new one with every position
        so far as its prompt, whose contribution to the segment's outputs is one FFT
        convolution of size ``next_pow2(position + length)`` (as a prompt's, at the first
        step). Such a slot keeps its inputs (``C x position`` values), and a step that starts a
        segment costs that FFT: about ``position / length`` times the work of an ordinary step
        of the plan's largest task, paid once per ``length`` steps. Outputs are exact whatever
        the segment boundaries. A pool whose ``length`` covers its slots never runs one.
        """
        wanted = 0 if length is None else check_int("length", length, 1)
        given = 0
        if prompt is not None:
            u = convert_shaped(
                self._executor, prompt, self._dtype, (self.channels, -1), "the prompt", finite=True
            )
            given = int(u.shape[-1])
        check_taps(self._taps, given, wanted or 1)
        row = self._slots.free_row("release() one or build a larger pool")
        self._claim(row, wanted)
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
        self._slots.check_room(row, start + p)
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
        self._claim(new, int(self._slots.wanted[row]))
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
        """Fold pending prompts into their slots, start the next segment of the slots whose
        segment is done; journal the slots the step overwrites."""
        xp, slots = self._executor.xp, self._slots
        ends = set(slots.segment_ends(rows).tolist())
        slots.closed[rows] = True
        for row in sorted({*slots.noted(rows), *ends}):
            journal = slots.journal.get(row)
            before = None
            if row in ends and journal is not None:
                history = slots.history.get(row)
                before = SegmentRecord(
                    xp.asarray(self._state.buffer[row, ...], copy=True),
                    prompt=int(slots.prompt[row]),
                    limit=int(slots.limit[row]),
                    history=0 if history is None else int(history.lengths[0]),
                )
            pending = slots.pending.pop(row, None)
            if pending is not None:
                self._fold(row, pending)
            elif row in ends:
                self._next_segment(row)
            if journal is not None:
                journal.save_slot(xp, self._state.buffer, row, int(slots.step[row]), before)

    def _fold(self, row: int, pending: _prompt.PromptInputs) -> None:
        """Start ``row``'s first segment after its prompt ``pending``: the prompt's future
        written into the slot (kept as the slot's history when it will run more segments)."""
        slots, P = self._slots, pending.length()
        slots.admitted[row] = slots.prompt[row] = P
        steps = slots.end(row) - P
        slots.limit[row] = min(self.length, steps)
        if steps > self.length:
            slots.history[row] = pending
        self._state.buffer = _prompt.write_future(
            self._executor.xp, self._state, row, pending.inputs, P, int(slots.limit[row])
        )

    def _next_segment(self, row: int) -> None:
        """Start ``row``'s next segment: its inputs so far become the segment's prompt."""
        slots, s = self._slots, self._state
        history = slots.history.get(row)
        if history is None:  # a slot without a prompt, at its first new segment
            history = slots.history[row] = _prompt.PromptInputs.empty(
                self._executor, self.channels, self._dtype
            )
        done = int(slots.limit[row])
        history.append(self._executor, s.buffer[row, :, :done], _ALL)
        P = int(slots.prompt[row]) + done
        slots.prompt[row], slots.step[row] = P, 0
        slots.limit[row] = min(self.length, slots.end(row) - P)
        s.buffer = xpx.at(s.buffer)[row, ...].set(0)
        s.buffer = _prompt.write_future(
            self._executor.xp, s, row, history.inputs, P, int(slots.limit[row])
        )

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

        Costs a copy of what those steps wrote (no transform; a whole buffer row for a step
        that started a new segment); the slot stays marked.
        """
        row = self._slots.row(slot, whole=True)
        journal = self._slots.journal.get(row)
        if journal is None:
            raise RuntimeError(f"slot {slot} is not marked: call mark(slot) before the steps")
        k = check_int("k", k, 0, len(journal))
        s = self._state
        with self._slots.guard([row]):
            s.buffer, step, segment = journal.undo(s.buffer, row, k)
            if k:
                self._slots.step[row] = step
            if segment is not None:
                self._slots.prompt[row] = segment.prompt
                self._slots.limit[row] = segment.limit
                self._slots.history[row].lengths[:] = segment.history

    # ------------------------------------------------------------------ snapshots
    def state_dict(self, slot: int) -> dict[str, Any]:
        """``slot`` as plain data (NumPy arrays, ints, strings): its buffer, cursor, any
        pending prompt and the history of a slot longer than the pool's ``length``, to
        :meth:`load_state_dict` into a pool of the same filters and plan (here, in another
        process or on another machine). Its journal is not included."""
        row = self._slots.row(slot, whole=True)
        slots, ex = self._slots, self._executor

        def host(inputs: _prompt.PromptInputs | None) -> np.ndarray | None:
            if inputs is None:
                return None
            return ex.to_numpy(inputs.inputs[:, : int(inputs.lengths.max())]).copy()

        limit = int(slots.limit[row])
        pending = slots.pending.get(row)
        segmented = slots.end(row) - slots.admission_prompt(row) > self.length
        # a slot of several segments that has no prompt: its history is empty until one ends
        blank = None
        if segmented and slots.closed[row]:
            blank = ex.to_numpy(ex.zeros((self.channels, 0), self._dtype)).copy()
        return snapshot.slot_state(
            plan_fingerprint=self.plan.fingerprint,
            filters_digest=self._filters_digest,
            dtype=dtype_name(self._dtype),
            channels=self.channels,
            cursor={key: int(getattr(slots, key)[row]) for key in snapshot.CURSOR},
            closed=bool(slots.closed[row]),
            buffer=ex.to_numpy(self._state.buffer[row, :, :limit]).copy(),
            pending=host(pending),
            pending_lengths=None if pending is None else pending.lengths.copy(),
            history=host(slots.history.get(row)) if row in slots.history else blank,
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
        slots, ex = self._slots, self._executor

        def inputs(values: np.ndarray, lengths: np.ndarray) -> _prompt.PromptInputs:
            return _prompt.PromptInputs(ex.asarray(values, dtype=self._dtype), lengths.copy())

        cursor = checked["cursor"]
        buffer = ex.asarray(checked["buffer"], dtype=self._dtype)
        self._claim(row, cursor["wanted"])
        s = self._state
        s.buffer = xpx.at(s.buffer)[row, :, : cursor["limit"]].set(buffer)
        for key, value in cursor.items():
            getattr(slots, key)[row] = value
        slots.closed[row] = checked["closed"]
        if checked["pending"] is not None:
            slots.pending[row] = inputs(checked["pending"], checked["pending_lengths"])
        if checked["history"] is not None:
            history = checked["history"]
            lengths = np.full(self.channels, history.shape[-1], np.int64)
            slots.history[row] = inputs(history, lengths)
        return row

    # ------------------------------------------------------------------ helpers
    def _claim(self, row: int, limit: int) -> None:
        self._slots.claim(row, limit)
        self._state.buffer = xpx.at(self._state.buffer)[row, ...].set(0)
