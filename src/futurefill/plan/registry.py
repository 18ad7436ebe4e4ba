"""The schedule registry: one decorated builder per schedule, and :func:`make_plan`.

A schedule is a function ``build(length, prompt, **params) -> Tiling`` registered with
:func:`register_schedule`; :func:`make_plan` checks the parameters, fills the defaults, builds
the tables once (plans are cached) and wraps them in a :class:`~futurefill.plan.Plan`. One file
adds a schedule::

    @register_schedule("uniform", params={"block": positive_int})
    def uniform(length, prompt, *, block):
        ...
        return Tiling(window_start=..., tasks={...})
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .._checks import check_int
from ._plan import MAX_POSITIONS, Plan, PlanError, Tiling
from .spec import PlanSpec

__all__ = [
    "ScheduleInfo",
    "executor_direct_below",
    "list_schedules",
    "make_plan",
    "positive_int",
    "power_of_two",
    "register_schedule",
    "resolve_spec",
    "schedule_info",
]

ParamCheck = Callable[[str, Any], Any]
Builder = Callable[..., Tiling]


def positive_int(name: str, value: Any) -> int:
    """Parameter check: an int ``>= 1``.

    Examples
    --------
    >>> from futurefill.plan import positive_int
    >>> positive_int("epoch", 4)
    4
    >>> positive_int("epoch", 0)
    Traceback (most recent call last):
    ...
    ValueError: epoch must be ...
    """
    return check_int(name, value, 1)


def executor_direct_below(executor: Any, batch: int, channels: int, dtype: Any) -> int:
    """Tuned-default rule (see :class:`ScheduleInfo`): the executor's measured
    ``direct_below`` crossover for this width and dtype.

    Examples
    --------
    >>> import numpy as np, futurefill
    >>> from futurefill.plan import executor_direct_below
    >>> k0 = executor_direct_below(futurefill.get_backend("numpy"), 1, 2, np.float64)
    >>> k0 >= 1 and k0 & (k0 - 1) == 0  # a power of two
    True
    """
    return int(executor.default_direct_below(batch, channels, dtype))


def power_of_two(name: str, value: Any) -> int:
    """Parameter check: a power of two ``>= 1``.

    Examples
    --------
    >>> from futurefill.plan import power_of_two
    >>> power_of_two("direct_below", 16)
    16
    >>> power_of_two("direct_below", 12)
    Traceback (most recent call last):
    ...
    ValueError: direct_below must be a power of two, got 12
    """
    value = check_int(name, value, 1)
    if value & (value - 1):
        raise ValueError(f"{name} must be a power of two, got {value}")
    return value


@dataclass(frozen=True)
class ScheduleInfo:
    """A registered schedule.

    Attributes
    ----------
    name : str
        What ``make_plan(..., schedule=name)`` takes.
    build : callable
        ``build(length, prompt, **params) -> Tiling``.
    params : mapping
        Parameter name -> check ``(name, value) -> value`` (raises on bad values).
    defaults : mapping
        Parameter name -> ``(length, prompt) -> value`` for parameters left out.
    tuned : mapping
        Parameter name -> ``(executor, batch, channels, dtype) -> value``: defaults an
        executor measures for itself (applied by :func:`resolve_spec` before ``defaults``).
    max_tasks : callable
        ``(length, prompt, **params) -> int``: an upper bound of the number of tasks, used to
        estimate a plan's memory before building it.
    description : str
        One line for listings.
    validate : bool
        Prove every plan it builds with :meth:`~futurefill.plan.Plan.validate` (on unless the
        schedule is proven by its own tests, like the built-in ones).

    Examples
    --------
    >>> from futurefill.plan import schedule_info
    >>> info = schedule_info("epoched")
    >>> list(info.params), info.max_tasks(16, 0, epoch=4)
    (['epoch'], 4)
    """

    name: str
    build: Builder
    params: Mapping[str, ParamCheck] = field(default_factory=dict)
    defaults: Mapping[str, Callable[[int, int], Any]] = field(default_factory=dict)
    tuned: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    max_tasks: Callable[..., int] = field(default=lambda length, prompt, **_: length)
    description: str = ""
    validate: bool = True


_REGISTRY: dict[str, ScheduleInfo] = {}


def register_schedule(
    name: str,
    *,
    params: Mapping[str, ParamCheck] | None = None,
    defaults: Mapping[str, Callable[[int, int], Any]] | None = None,
    tuned: Mapping[str, Callable[..., Any]] | None = None,
    max_tasks: Callable[..., int] | None = None,
    description: str = "",
    validate: bool = True,
    replace: bool = False,
) -> Callable[[Builder], Builder]:
    """Register a schedule builder under ``name`` (a decorator).

    Parameters
    ----------
    name : str
        The schedule's name.
    params, defaults, tuned, max_tasks, description, validate
        See :class:`ScheduleInfo`.
    replace : bool
        Allow replacing a schedule registered under the same name.

    Returns
    -------
    callable
        The decorator; it returns the builder unchanged.

    Examples
    --------
    A schedule that sums every past input directly (the ``naive`` one again), proven exact
    when each plan is built:

    >>> import numpy as np
    >>> from futurefill.plan import Tiling, make_plan, register_schedule
    >>> @register_schedule("all_direct", replace=True)
    ... def all_direct(length, prompt):
    ...     # every step sums all past inputs: no tasks
    ...     return Tiling(window_start=np.zeros(length, np.int64), keep_prompt=True)
    >>> make_plan(8, "all_direct")
    Plan('all_direct', length=8, prompt=0, tasks=0)
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a schedule name must be an identifier, got {name!r}")

    def decorate(build: Builder) -> Builder:
        if name in _REGISTRY and not replace:
            raise ValueError(f"schedule {name!r} is already registered (pass replace=True)")
        info = ScheduleInfo(
            name=name,
            build=build,
            params=MappingProxyType(dict(params or {})),
            defaults=MappingProxyType(dict(defaults or {})),
            tuned=MappingProxyType(dict(tuned or {})),
            description=description or (build.__doc__ or "").strip().split("\n")[0],
            validate=validate,
            **({"max_tasks": max_tasks} if max_tasks is not None else {}),
        )
        unknown = (set(info.defaults) | set(info.tuned)) - set(info.params)
        if unknown:
            raise ValueError(f"defaults given for undeclared parameters {sorted(unknown)}")
        _REGISTRY[name] = info
        _build.cache_clear()
        return build

    return decorate


def list_schedules() -> tuple[str, ...]:
    """Names of the registered schedules, in registration order.

    Examples
    --------
    >>> from futurefill import SCHEDULES, list_schedules
    >>> set(SCHEDULES) <= set(list_schedules())
    True
    """
    return tuple(_REGISTRY)


def schedule_info(name: str) -> ScheduleInfo:
    """The :class:`ScheduleInfo` registered under ``name``.

    Examples
    --------
    >>> from futurefill.plan import schedule_info
    >>> schedule_info("continuous").name
    'continuous'
    >>> schedule_info("nope")
    Traceback (most recent call last):
    ...
    ValueError: unknown schedule 'nope'; choose one of ...
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown schedule {name!r}; choose one of {', '.join(_REGISTRY)}"
        ) from None


def _checked_params(spec: PlanSpec) -> dict[str, Any]:
    info = schedule_info(spec.schedule)
    given = spec.params
    unknown = set(given) - set(info.params)
    if unknown:
        takes = ", ".join(info.params) or "no parameters"
        raise ValueError(
            f"schedule {spec.schedule!r} takes {takes}, not {', '.join(sorted(unknown))}"
        )
    return {name: info.params[name](name, value) for name, value in given.items()}


def resolve_spec(
    schedule: str | PlanSpec | None, executor: Any, *, batch: int, channels: int, dtype: Any
) -> PlanSpec:
    """The spec with the parameters an executor tunes for itself filled in.

    This is the one place where backend-measured defaults (such as the continuous schedule's
    ``direct_below`` crossover) enter a plan.

    Examples
    --------
    >>> import numpy as np, futurefill
    >>> from futurefill.plan import resolve_spec
    >>> numpy = futurefill.get_backend("numpy")
    >>> spec = resolve_spec("continuous", numpy, batch=1, channels=2, dtype=np.float64)
    >>> spec.get("direct_below") == numpy.default_direct_below(1, 2, np.float64)
    True
    >>> given = futurefill.PlanSpec("continuous", direct_below=4)  # a given value stays
    >>> resolve_spec(given, numpy, batch=1, channels=2, dtype=np.float64).get("direct_below")
    4
    """
    spec = PlanSpec.coerce(schedule)
    info = schedule_info(spec.schedule)
    _checked_params(spec)
    tuned = {
        name: rule(executor, batch, channels, dtype)
        for name, rule in info.tuned.items()
        if spec.get(name) is None
    }
    return spec.with_params(**tuned)


def make_plan(
    length: int, schedule: str | PlanSpec = "continuous", *, prompt: int = 0, **params: Any
) -> Plan:
    """Build (or fetch from the cache) the plan of a registered schedule.

    Parameters
    ----------
    length : int
        Number of online steps, ``>= 1``.
    schedule : str or PlanSpec
        A registered schedule (:func:`list_schedules`): ``naive`` sums every past input at
        each step (O(L^2)); ``epoched`` fills the next ``epoch`` outputs from all past inputs
        at each epoch start (O(L^1.5 sqrt(log L))); ``continuous`` fills dyadic blocks
        (O(L log^2 L)).
    prompt : int
        Number of prompt inputs given at once by ``prefill`` (``>= 0``).
    **params
        Schedule parameters (``None`` means the default), e.g. ``epoch`` for ``epoched``
        (default ``int(sqrt(L log2 L))``) or ``direct_below`` for ``continuous`` (a power of
        two ``k0``: pairs of positions in the same aligned block of ``k0`` steps are summed
        directly; default 1). They may also come inside a :class:`PlanSpec`.

    Returns
    -------
    Plan
        Equal arguments return the same (cached) object.

    Examples
    --------
    >>> import futurefill
    >>> plan = futurefill.make_plan(16, "epoched", epoch=4, prompt=2)
    >>> plan
    Plan('epoched(epoch=4)', length=16, prompt=2, tasks=3)
    >>> futurefill.make_plan(16, futurefill.PlanSpec("epoched", epoch=4), prompt=2) is plan
    True
    """
    length = check_int("length", length, 1)
    prompt = check_int("prompt", prompt, 0)
    if prompt + length > MAX_POSITIONS:
        raise ValueError(f"prompt + length must be at most 2**30, got {prompt + length}")
    spec = PlanSpec.coerce(schedule).with_params(**params)
    info = schedule_info(spec.schedule)
    values = _checked_params(spec)
    defaulted = frozenset(name for name in info.defaults if name not in values)
    for name in defaulted:
        values[name] = info.params[name](name, info.defaults[name](length, prompt))
    resolved = PlanSpec(spec.schedule, **values)
    from ..memory import check_plan_memory

    check_plan_memory(length, info.max_tasks(length, prompt, **values))
    return _build(resolved, length, prompt, defaulted)


@functools.lru_cache(maxsize=32)
def _build(spec: PlanSpec, length: int, prompt: int, defaulted: frozenset[str]) -> Plan:
    info = schedule_info(spec.schedule)
    tiling = info.build(length, prompt, **spec.params)
    if not isinstance(tiling, Tiling):
        raise PlanError(
            f"the builder of schedule {spec.schedule!r} returned "
            f"{type(tiling).__name__}, not a futurefill.plan.Tiling"
        )
    plan = Plan.from_tasks(
        length,
        prompt=prompt,
        window_start=tiling.window_start,
        tasks=tiling.tasks,
        keep_prompt=tiling.keep_prompt,
        spec=spec,
        defaulted=defaulted,
        validate=False,
    )
    del tiling  # the builder's columns: the proof needs only the plan's own
    if info.validate:
        plan.validate()
    return plan
