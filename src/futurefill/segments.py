"""The live state of one stream: one plan for a known length, a plan per segment open-ended.

:class:`Segments` holds what an :class:`~futurefill.OnlineConv` runs: its
:class:`~futurefill.state.ConvState` and, for a stream built with ``length=None``, the
bookkeeping of its segments (:mod:`futurefill.open_length` plans and fills them): the prompt
length, the inputs before the current segment (the *history*) and the move to the next segment
when a segment's steps are done. Arguments reach it validated (by ``OnlineConv``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import interpreter
from ._checks import check_int
from .executor import Executor
from .open_length import history_after, next_segment, segment_length, store_prompt
from .plan import Plan, PlanSpec, make_plan, resolve_spec
from .state import ConvState
from .undo import check_usable, record, settle

__all__ = ["Segments", "first_plan"]

Array = Any


def first_plan(
    executor: Executor,
    schedule: str | PlanSpec | Plan,
    params: dict[str, Any],
    length: int | None,
    *,
    prompt: int,
    taps: int,
    batch: int,
    channels: int,
    dtype: Any,
) -> tuple[Plan, PlanSpec]:
    """The plan a stream starts with and the schedule of its later segments.

    ``length=None`` (open-ended) plans the first segment; a :class:`~futurefill.Plan` given as
    ``schedule`` is run as it is (its length and prompt must be these, with no ``params``).
    Sizes are checked before any plan is built.
    """
    if length is None:
        if isinstance(schedule, Plan):
            raise ValueError("an open-ended OnlineConv (length=None) plans its own segments")
        length = segment_length(prompt, taps)
        if length == 0:
            raise ValueError(
                f"filters have {taps} taps: no step is left after a prompt of {prompt}"
            )
    length = check_int("length", length, 1)
    if taps < prompt + length:  # before any plan is built: the cheap check comes first
        raise ValueError(
            f"filters have {taps} taps but prompt + length = {prompt + length} positions "
            f"need at least {prompt + length}"
        )
    if isinstance(schedule, Plan):
        plan = schedule
        if params or (plan.length, plan.prompt) != (length, prompt):
            raise ValueError(
                f"a Plan fixes length, prompt and parameters: this one has length "
                f"{plan.length} and prompt {plan.prompt} (use OnlineConv.from_plan)"
            )
        return plan, plan.spec or PlanSpec()  # later segments: defaults resolved per segment
    spec = PlanSpec.coerce(schedule).with_params(**params)
    spec = resolve_spec(spec, executor, batch=batch, channels=channels, dtype=dtype)
    return make_plan(length, spec, prompt=prompt), spec


class Segments:
    """The state of one stream and, open-ended, its segments.

    Parameters
    ----------
    executor : Executor
        The executor running the stream.
    state : ConvState
        The state of the first plan.
    spec : PlanSpec
        The schedule of open-ended segments (their defaults resolved per segment).
    taps : int
        Filter taps ``N``: an open-ended stream ends when they are used up.
    prompt : int
        The prompt length planned at construction.
    open_ended : bool
        Whether the stream was built with ``length=None``.
    """

    def __init__(
        self,
        executor: Executor,
        state: ConvState,
        *,
        spec: PlanSpec,
        taps: int,
        prompt: int,
        open_ended: bool,
    ) -> None:
        self.executor = executor
        self.state = state
        self.spec = spec
        self.taps = taps
        self.open = open_ended
        self.prompt = self.planned_prompt = prompt
        self.history: Array | None = None  # open-ended: the inputs before this segment

    # ------------------------------------------------------------------ cursor
    @property
    def plan(self) -> Plan:
        """The plan being run (open-ended: the current segment's)."""
        return self.state.plan

    @property
    def position(self) -> int:
        """Index of the next online step, counted from the end of the prompt."""
        return self.plan.prompt + self.state.step - self.prompt

    @property
    def remaining(self) -> int:
        """Online steps left (open-ended: as many as the filters' taps allow)."""
        if self.open:
            return self.taps - self.prompt - self.position
        return self.plan.length - self.state.step

    def replace(self, plan: Plan) -> None:
        """Run ``plan`` from now on: a new, empty state sharing the filters and spectra' source."""
        s = self.state
        self.state = interpreter.new_state(
            self.executor, plan, s.filters, batch=s.batch, dtype=s.filters.dtype, copy=False
        )

    def room(self) -> ConvState:
        """The state, open-ended: extended by the next segment when its steps are done.

        A poisoned state is refused here, before it could be left behind.
        """
        s = self.state
        check_usable(s)
        if self.open and s.step == s.plan.length and not s.num_emitted:
            if not self.remaining:
                raise RuntimeError(
                    f"the filters' {self.taps} taps are used up (prompt {self.prompt} + "
                    f"{self.position} steps); call reset() or give longer filters"
                )
            settle(self.executor, s, "the move to the next segment")  # poisons on a loss
            history = history_after(self.executor, s, self.history)
            self.state = next_segment(self.executor, self.spec, s, history, taps=self.taps)
            self.history = history
        return self.state

    # ------------------------------------------------------------------ prompt
    def start(self, prompt: int) -> None:
        """Open-ended: plan the first segment for a prompt of ``prompt`` inputs."""
        plan = make_plan(segment_length(prompt, self.taps), self.spec, prompt=prompt)
        if plan is not self.plan:
            self.replace(plan)
        else:
            interpreter.reset(self.executor, self.state)
        self.prompt = prompt
        self.history = None

    def reset(self) -> None:
        """Forget all inputs; open-ended, back to the first segment and the planned prompt."""
        if self.open:
            self.start(self.planned_prompt)
        else:
            interpreter.reset(self.executor, self.state)

    def prompt_length(self, shape: tuple[int, ...]) -> int:
        """Open-ended: the length a prompt of ``shape`` gives (the first prefill decides it);
        raise unless a prefill may run now."""
        p, s = self.plan, self.state
        if self.position or s.num_emitted or p.prompt != self.prompt:
            raise RuntimeError("the prompt comes before the first step; call reset() first")
        if s.prefilled.any():
            return p.prompt
        if len(shape) != 3:
            raise ValueError(f"the prompt must have shape (B, c, P), got {shape}")
        prompt = shape[-1]
        if prompt < 1 or segment_length(prompt, self.taps) == 0:
            raise ValueError(
                f"a prompt of {prompt} inputs leaves no step of the filters' {self.taps} taps"
            )
        return prompt

    def prefill(self, u: Array, channels: slice) -> Array:
        """Open-ended: give the prompt ``u`` ``(B, c, P)`` of ``channels``, ``P`` as checked by
        :meth:`prompt_length`; return its outputs."""
        prompt = int(u.shape[-1])
        if prompt != self.plan.prompt:
            self.start(prompt)
        s = self.state
        shape = (s.batch, s.channels, prompt)
        history = store_prompt(self.executor, self.history, u, channels, shape)
        y = interpreter.prefill(self.executor, s, u, channels)
        self.history = history
        return y

    # ------------------------------------------------------------------ calls over segments
    def run(self, u: Array, steps: int) -> Array:
        """:func:`futurefill.interpreter.run` over the ``steps`` inputs ``u``, segment by
        segment (see :meth:`by_segment` for errors)."""
        s = self.room()
        if steps <= s.plan.length - s.step:  # the usual case, kept short
            return interpreter.run(self.executor, s, u)
        done = 0

        def segment(u: Array, steps: int) -> Array:
            nonlocal done
            ys = interpreter.run(self.executor, self.state, u[..., done : done + steps])
            done += steps
            return ys

        return self.by_segment(u, steps, segment, lambda _: u, "run()")

    def rollout(self, u0: Array, feedback: Callable[[Array], Array], steps: int) -> Array:
        """:func:`futurefill.interpreter.rollout` of ``steps`` steps, segment by segment; the
        stream put back as it was on any error (or poisoned if that fails)."""

        def segment(u: Array, steps: int) -> Array:
            return interpreter.rollout(self.executor, self.state, u, feedback, steps)

        def next_input(ys: Array) -> Array:
            u = feedback(ys[..., -1])
            interpreter.check_feedback(u, ys[..., -1])
            return u

        return self.by_segment(u0, steps, segment, next_input, "rollout()")

    def by_segment(
        self,
        u: Array,
        steps: int,
        segment: Callable[[Array, int], Array],
        next_input: Callable[[Array], Array],
        call: str,
    ) -> Array:
        """``steps`` steps, one ``segment(u, n)`` call per plan segment (one unless open-ended),
        ``u = next_input(ys)`` between them.

        Within one segment, ``segment`` answers for errors itself (the interpreter undoes or
        poisons). A call crossing segments keeps an undo record of its first one (the move to
        the next segment copies the history anyway) and puts everything back on any error.
        """
        s = self.room()
        n = min(steps, s.plan.length - s.step)
        if n == steps:
            return segment(u, n)
        saved = self.state, self.history
        undo = record(self.executor, s, n, call)
        try:
            parts = [segment(u, n)]
            steps -= n
            while steps:
                u = next_input(parts[-1])
                s = self.room()
                n = min(steps, s.plan.length - s.step)
                parts.append(segment(u, n))
                steps -= n
            return self.executor.xp.concat(parts, axis=-1)
        except BaseException as exc:
            self.state, self.history = saved
            undo.restore(self.executor, call, exc)
            raise
