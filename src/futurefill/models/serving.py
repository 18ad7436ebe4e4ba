"""Serving a reference model: requests arrive over time, share a pool of slots, and leave.

A :class:`Server` keeps the long convolutions of every layer in one
:class:`futurefill.StreamPool` whose channels stack all layers (layer ``i`` at
``model.channel_slices[i]``), as :class:`~futurefill.models.Decoder` does with one
:class:`futurefill.OnlineConv`, but with a slot per request, each at its own position. A
request is admitted when a slot is free: its prompt runs layer by layer, each layer's long
convolution the ``prefill`` of its channels of the request's slot, and the last prompt
position gives its first token; with ``prefill_chunk``, prompts run a chunk per step instead,
each chunk continuing from the mixers' states and the slot's prompt so far. Then every
:meth:`Server.step` runs one position of all admitted requests together: per layer one
``pool.emit`` of the layer's channels for the active slots, the rest of the network
(embedding, projections, MLPs, norms, head) batched over them (one row per slot), and one
``pool.advance``. A request leaves at its last token (or its
stop token) and its slot is released for the next.

Each request's tokens are those :meth:`ConvLM.generate <futurefill.models.ConvLM.generate>`
gives it alone (greedy, or sampled with the same seed), up to floating-point rounding: the
pool computes the same convolutions as generation, grouped differently.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import check_int
from .._registry import get_backend
from ..executor import Executor
from ..plan import PlanSpec
from ..pool import StreamPool
from .compiled_rows import CompiledRows
from .decode import DecodableModel
from .mixer_base import State
from .network import position_pass, sequence_pass
from .requests import ReplayClock, Request, RequestResult
from .sampling import choose_token
from .slot_states import SlotStates
from .tokens import check_token_range

__all__ = ["ReplayClock", "Request", "RequestResult", "Server", "serve"]

Array = Any


@dataclass
class _Live:
    """A request being served."""

    rid: int
    request: Request
    arrival: float
    admitted: float
    rng: np.random.Generator
    next_input: int
    prefilled: int = 0  # prompt tokens run so far
    states: list[State] | None = None  # the mixers' states after them
    tokens: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)


class Server:
    """Continuous batching of a reference model's generation over a :class:`StreamPool`.

    Parameters
    ----------
    model : DecodableModel
        The model (a :class:`~futurefill.models.ConvLM`).
    capacity : int
        Requests served at once (slots of the pool).
    max_steps : int, optional
        Positions of a slot's buffer: the pool's buffers are ``capacity x channels x
        max_steps`` values. A request running more positions one at a time (its
        ``online_steps``) runs in segments of ``max_steps`` (see
        :meth:`~futurefill.StreamPool.admit`: one FFT of its tokens so far per segment, its
        inputs kept meanwhile). The model's ``max_len`` by default.
    schedule : str or PlanSpec
        Online-convolution schedule of every slot (``"continuous"`` by default).
    backend : str or Executor, optional
        Backend; the one in force by default.
    clock : callable, optional
        Returns the time in seconds (a fresh :class:`ReplayClock` by default).
    prefill_chunk : int, optional
        Prompt tokens run per :meth:`step` (chunked prefill): the admitted prompts, first
        come first served, advance by at most this many tokens in all per step, between the
        steps of the requests already generating, so that a long prompt does not stall them.
        ``None`` (default): a prompt runs whole when its request is admitted.

    Examples
    --------
    >>> from futurefill.models import ConvLM
    >>> from futurefill.models.serving import Request, Server
    >>> model = ConvLM(mixer="hyena", dim=8, layers=1, max_len=64, vocab_size=16)
    >>> server = Server(model, capacity=2, max_steps=8)
    >>> ids = [server.submit(Request([1, 2, 3], 4)), server.submit(Request((), 5))]
    >>> while server.busy:
    ...     _ = server.step()
    >>> [len(server.results[i].tokens) for i in ids]
    [4, 5]
    """

    def __init__(
        self,
        model: DecodableModel,
        *,
        capacity: int = 16,
        max_steps: int | None = None,
        schedule: str | PlanSpec = "continuous",
        backend: str | Executor | None = None,
        clock: Callable[[], float] | None = None,
        prefill_chunk: int | None = None,
    ) -> None:
        cfg = model.config
        capacity = check_int("capacity", capacity, 1)
        if prefill_chunk is not None:
            prefill_chunk = check_int("prefill_chunk", prefill_chunk, 1)
        self.prefill_chunk = prefill_chunk
        max_steps = cfg.max_len if max_steps is None else check_int("max_steps", max_steps, 1)
        if max_steps > cfg.max_len:
            raise ValueError(f"max_steps={max_steps} exceeds the model's max_len = {cfg.max_len}")
        self.model = model
        self.executor = get_backend(backend)
        self.weights = model.backend_weights(self.executor)
        self.slices = model.channel_slices
        # One zero tap past max_len: a one-token request after a full-length prompt takes no
        # step, but its slot is admitted with one (as Decoder pads its filters).
        filters = np.concatenate(model.host_filters(), axis=0)
        filters = np.pad(filters, ((0, 0), (0, cfg.max_len + 1 - filters.shape[1])))
        self.pool = StreamPool(
            filters,
            max_steps,
            capacity=capacity,
            schedule=schedule,
            dtype=cfg.dtype,
            backend=self.executor,
        )
        self.clock: Callable[[], float] = ReplayClock() if clock is None else clock
        self.results: dict[int, RequestResult] = {}
        self._states = SlotStates(self.executor, capacity)
        self._compiled = (
            CompiledRows(self.weights, self.executor)
            if CompiledRows.available(self.executor)
            else None
        )
        self._waiting: deque[tuple[int, Request, float]] = deque()
        self._live: dict[int, _Live] = {}
        self._prefilling: deque[int] = deque()  # slots whose prompt runs, in admission order
        self._next_id = 0

    # ------------------------------------------------------------------ requests
    @property
    def busy(self) -> bool:
        """Whether requests wait or run."""
        return bool(self._waiting or self._live)

    @property
    def waiting(self) -> int:
        """Requests submitted and not admitted yet."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        """Requests holding a slot."""
        return len(self._live)

    def check(self, request: Request) -> None:
        """Raise (one line) if ``request`` cannot be served by this server and model.

        Examples
        --------
        >>> from futurefill.models import ConvLM, Request, Server
        >>> model = ConvLM(mixer="hyena", dim=8, layers=1, max_len=32, vocab_size=16)
        >>> server = Server(model, capacity=1, max_steps=4, backend="numpy")
        >>> server.check(Request([1, 2, 3], 4))  # fine: returns None
        >>> server.check(Request([99], 2))
        Traceback (most recent call last):
        ...
        ValueError: prompt must be token ids in 0..15 (vocab_size = 16), got 99
        """
        if not isinstance(request, Request):
            raise TypeError(f"expected a Request, got {type(request).__name__}")
        cfg = self.model.config
        request = request.within(cfg.max_len)
        P, steps = request.prompt_len, request.online_steps
        if P:
            check_token_range(0, int(request.prompt.max()), cfg.vocab_size, "prompt")
        for name in ("stop_token", "top_k"):
            value = getattr(request, name)
            if value is not None:
                top = cfg.vocab_size if name == "top_k" else cfg.vocab_size - 1
                if value > top:
                    raise ValueError(
                        f"{name}={value} exceeds {top} (vocab_size = {cfg.vocab_size})"
                    )
        if P + steps > cfg.max_len:
            raise ValueError(
                f"{P} prompt + {steps} online positions exceed the model's max_len = {cfg.max_len}"
            )

    def submit(self, request: Request) -> int:
        """Queue ``request`` (checked first: a bad one is refused and nothing changes); return
        its id, the key of its :attr:`results` entry. A request with ``max_new_tokens=None``
        runs until its stop token or the model's ``max_len`` (:meth:`Request.within`); its
        result's ``request`` carries that number.

        Examples
        --------
        >>> from futurefill.models import ConvLM, Request, Server
        >>> model = ConvLM(mixer="hyena", dim=8, layers=1, max_len=32, vocab_size=16)
        >>> server = Server(model, capacity=1, max_steps=4, backend="numpy")
        >>> server.submit(Request([1, 2, 3], 4)), server.submit(Request([4], 2))
        (0, 1)
        >>> server.waiting, server.running  # admitted by the next step
        (2, 0)
        """
        self.check(request)
        request = request.within(self.model.config.max_len)
        rid = self._next_id
        self._next_id += 1
        arrival = self.clock() if request.arrival is None else request.arrival
        self._waiting.append((rid, request, arrival))
        return rid

    # ------------------------------------------------------------------ serving
    def step(self) -> list[int]:
        """Admit waiting requests into free slots, run their prompts (whole, or the next
        ``prefill_chunk`` tokens of them) and give the first token of those whose prompt is
        done, then run one position of every request generating; return the ids of the
        requests that finished.

        Examples
        --------
        >>> from futurefill.models import ConvLM, Request, Server
        >>> model = ConvLM(mixer="hyena", dim=8, layers=1, max_len=32, vocab_size=16)
        >>> server = Server(model, capacity=1, max_steps=4, backend="numpy")
        >>> rid = server.submit(Request([1, 2, 3], 4))
        >>> [server.step() for _ in range(3)]  # the prefill gives token 1, each step one more
        [[], [], [0]]
        >>> len(server.results[rid].tokens), server.busy
        (4, False)
        """
        done: list[int] = []
        while self._waiting and self.pool.free_slots:
            done += self._admit(*self._waiting.popleft())
        budget = self.prefill_chunk
        while budget and self._prefilling:
            slot = self._prefilling[0]
            live = self._live[slot]
            n = min(budget, live.request.prompt_len - live.prefilled)
            done += self._prefill(slot, n)
            budget -= n
        if len(self._live) > len(self._prefilling):
            done += self._decode()
        return done

    def _admit(self, rid: int, request: Request, arrival: float) -> list[int]:
        admitted = self.clock()
        slot = self.pool.admit(length=max(request.online_steps, 1))
        live = _Live(
            rid,
            request,
            arrival,
            admitted,
            np.random.default_rng(request.seed),
            self.model.config.bos,
        )
        self._live[slot] = live
        if not request.prompt_len:
            w = self.weights
            self._states.put(
                slot, [w.mixer.initial_state(lw, 1, w.xp, w.device) for lw in w.layers]
            )
            return []
        self._prefilling.append(slot)
        return [] if self.prefill_chunk else self._prefill(slot, request.prompt_len)

    def _prefill(self, slot: int, n: int) -> list[int]:
        """Run the next ``n`` prompt tokens of the request at ``slot`` (the first of the
        prefilling ones); once its prompt is done, its first token. A failure drops the
        request whole: nothing of it stays."""
        pool, w, live = self.pool, self.weights, self._live[slot]
        xp = w.xp

        def prefill_layer(layer: int, u: Array) -> Array:
            return xp.expand_dims(
                pool.prefill(slot, u[0, ...], channels=self.slices[layer]), axis=0
            )

        start = live.prefilled
        tokens = self.executor.asarray(np.array(live.request.prompt[None, start : start + n]))
        try:
            result = sequence_pass(
                w,
                tokens,
                long_conv=prefill_layer,
                states=live.states,
                programs=None if self._compiled is None else self._compiled.sequence,
            )
        except BaseException:
            self._prefilling.remove(slot)
            self._live.pop(slot)
            pool.release(slot)
            raise
        live.prefilled, live.states = start + n, result.states
        if live.prefilled < live.request.prompt_len:
            return []
        self._prefilling.popleft()
        self._states.put(slot, result.states)
        live.states = None
        logits = self.executor.to_numpy(result.logits[0, -1, :])
        return self._emit_tokens([slot], logits[None, :])

    def _decode(self) -> list[int]:
        pool, ex = self.pool, self.executor
        prefilling = set(self._prefilling)
        slots = sorted(s for s in self._live if s not in prefilling)
        rows = np.asarray(slots, np.int64)
        tokens = np.asarray([self._live[s].next_input for s in slots], np.int64)

        def long_conv(layer: int, u: Array) -> Array:
            return pool.emit(slots, u, channels=self.slices[layer])

        if self._compiled is not None:
            logits, store = self._compiled(tokens, rows, self._states, long_conv)
            pool.advance(slots)
            store()
        else:
            logits, states = position_pass(
                self.weights, ex.asarray(tokens), self._states.take(rows), long_conv
            )
            pool.advance(slots)
            self._states.put_rows(rows, states)
        return self._emit_tokens(slots, ex.to_numpy(logits))

    def _emit_tokens(self, slots: list[int], logits: np.ndarray) -> list[int]:
        """Choose each slot's next token from its logits row; finish the requests done."""
        now = self.clock()
        done = []
        for slot, row in zip(slots, logits, strict=True):
            live = self._live[slot]
            r = live.request
            token = choose_token(row, r.temperature, r.top_k, live.rng)
            live.tokens.append(token)
            live.times.append(now)
            live.next_input = token
            if r.return_logits:
                live.logits.append(np.array(row))
            if token == r.stop_token or len(live.tokens) == r.max_new_tokens:
                self._finish(slot)
                done.append(live.rid)
        return done

    def _finish(self, slot: int) -> None:
        live = self._live.pop(slot)
        self.pool.release(slot)
        self.results[live.rid] = RequestResult(
            request=live.request,
            tokens=np.asarray(live.tokens, np.int64),
            arrival=live.arrival,
            admitted=live.admitted,
            finish=live.times[-1],
            token_times=np.asarray(live.times, np.float64),
            logits=np.stack(live.logits) if live.request.return_logits else None,
        )


def serve(
    model: DecodableModel,
    requests: Iterable[Request],
    *,
    capacity: int = 16,
    schedule: str | PlanSpec = "continuous",
    backend: str | Executor | None = None,
    max_steps: int | None = None,
    clock: ReplayClock | None = None,
    prefill_chunk: int | None = None,
) -> list[RequestResult]:
    """Replay ``requests`` at their arrival times through a :class:`Server`; return their
    results in the order given.

    Every request is checked before any work. Requests are submitted when the clock reaches
    their ``arrival`` (``None`` counts as 0); an idle server jumps to the next arrival
    (:class:`ReplayClock`), so the times are those of a real run without the idle waits.

    Parameters
    ----------
    model : DecodableModel
    requests : iterable of Request
    capacity : int
        Requests served at once.
    schedule : str or PlanSpec
        Online-convolution schedule of the pool.
    backend : str or Executor, optional
    max_steps : int, optional
        Positions of a slot's buffer (see :class:`Server`); the longest request's
        ``online_steps`` by default.
    clock : ReplayClock, optional
        The clock of the replay (restarted once the server is built); a wall-clock one by
        default.
    prefill_chunk : int, optional
        Prompt tokens per step (see :class:`Server`); whole prompts by default.

    Returns
    -------
    list of RequestResult

    Examples
    --------
    Two requests served together get the tokens each would get alone:

    >>> from futurefill.models import ConvLM, Request, serve
    >>> model = ConvLM(mixer="hyena", dim=8, layers=1, max_len=32, vocab_size=16)
    >>> requests = [Request([1, 2, 3], 4), Request([4], 3, arrival=0.5)]
    >>> results = serve(model, requests, capacity=2, backend="numpy")
    >>> [r.tokens.tolist() for r in results] == [
    ...     model.generate(r.prompt, r.max_new_tokens, backend="numpy")[0].tolist()
    ...     for r in requests]
    True
    """
    requests = list(requests)
    if not requests:
        raise ValueError("no requests to serve")
    for r in requests:
        if not isinstance(r, Request):
            raise TypeError(f"expected Request objects, got {type(r).__name__}")
    requests = [
        r if r.arrival is not None else dataclasses.replace(r, arrival=0.0) for r in requests
    ]
    requests = [r.within(model.config.max_len) for r in requests]
    if max_steps is None:
        max_steps = min(max(max(r.online_steps for r in requests), 1), model.config.max_len)
    clock = ReplayClock() if clock is None else clock
    server = Server(
        model,
        capacity=capacity,
        max_steps=max_steps,
        schedule=schedule,
        backend=backend,
        clock=clock,
        prefill_chunk=prefill_chunk,
    )
    clock.restart()  # building the server (pool, plan, weights) is not part of the replay
    for r in requests:
        server.check(r)
    arrivals = [float(r.arrival or 0.0) for r in requests]
    order = sorted(range(len(requests)), key=arrivals.__getitem__)
    ids: dict[int, int] = {}
    nxt = 0
    while nxt < len(order) or server.busy:
        if not server.busy:
            clock.skip_to(arrivals[order[nxt]])
        while nxt < len(order) and arrivals[order[nxt]] <= clock():
            i = order[nxt]
            ids[i] = server.submit(requests[i])
            nxt += 1
        server.step()
    return [server.results[ids[i]] for i in range(len(requests))]
