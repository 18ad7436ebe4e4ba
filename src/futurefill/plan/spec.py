"""Schedule parameters as one value: :class:`PlanSpec`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PlanSpec"]


class PlanSpec:
    """A schedule name and its parameters, as one hashable value.

    ``None`` values mean "use the default" and are dropped, so ``PlanSpec("continuous",
    direct_below=None) == PlanSpec("continuous")``. Parameters are checked against the schedule
    when a plan is made (:func:`futurefill.make_plan`), not here.

    Parameters
    ----------
    schedule : str
        A registered schedule (:func:`futurefill.plan.list_schedules`).
    **params
        The schedule's parameters, e.g. ``epoch=64`` or ``direct_below=16``.

    Examples
    --------
    >>> from futurefill import PlanSpec
    >>> spec = PlanSpec("epoched", epoch=64)
    >>> spec
    PlanSpec('epoched', epoch=64)
    >>> spec.get("epoch"), spec.get("direct_below")
    (64, None)
    >>> PlanSpec.coerce("continuous") == PlanSpec("continuous")
    True
    """

    __slots__ = ("_params", "schedule")

    schedule: str
    _params: tuple[tuple[str, Any], ...]

    def __init__(self, schedule: str = "continuous", **params: Any) -> None:
        if not isinstance(schedule, str) or not schedule:
            raise TypeError(f"a schedule is named by a non-empty string, got {schedule!r}")
        object.__setattr__(self, "schedule", schedule)
        items = tuple(sorted((k, v) for k, v in params.items() if v is not None))
        object.__setattr__(self, "_params", items)

    @classmethod
    def coerce(cls, spec: str | PlanSpec | None) -> PlanSpec:
        """A :class:`PlanSpec` from a schedule name, a spec, or ``None`` (the default).

        Examples
        --------
        >>> from futurefill import PlanSpec
        >>> PlanSpec.coerce("naive"), PlanSpec.coerce(None)
        (PlanSpec('naive'), PlanSpec('continuous'))
        """
        if spec is None:
            return cls()
        if isinstance(spec, PlanSpec):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        raise TypeError(f"a schedule is a name or a PlanSpec, got {type(spec).__name__}")

    @property
    def params(self) -> Mapping[str, Any]:
        """The parameters that were given (a read-only mapping)."""
        return dict(self._params)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of parameter ``name``, or ``default`` when it was not given.

        Examples
        --------
        >>> from futurefill import PlanSpec
        >>> spec = PlanSpec("epoched", epoch=4)
        >>> spec.get("epoch"), spec.get("radix", 2)
        (4, 2)
        """
        for key, value in self._params:
            if key == name:
                return value
        return default

    def with_params(self, **params: Any) -> PlanSpec:
        """A copy with ``params`` set (``None`` leaves a parameter as it is).

        Examples
        --------
        >>> from futurefill import PlanSpec
        >>> spec = PlanSpec("continuous", direct_below=8)
        >>> spec.with_params(direct_below=16), spec.with_params(direct_below=None)
        (PlanSpec('continuous', direct_below=16), PlanSpec('continuous', direct_below=8))
        """
        merged = dict(self._params)
        merged.update({k: v for k, v in params.items() if v is not None})
        return PlanSpec(self.schedule, **merged)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PlanSpec is immutable; use with_params()")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.schedule, self._params))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PlanSpec)
            and self.schedule == other.schedule
            and self._params == other._params
        )

    def __hash__(self) -> int:
        return hash((self.schedule, self._params))

    def __repr__(self) -> str:
        args = [repr(self.schedule), *(f"{k}={v!r}" for k, v in self._params)]
        return f"PlanSpec({', '.join(args)})"

    def __str__(self) -> str:
        if not self._params:
            return self.schedule
        return f"{self.schedule}({', '.join(f'{k}={v}' for k, v in self._params)})"


def _rebuild(schedule: str, params: tuple[tuple[str, Any], ...]) -> PlanSpec:
    """Unpickle a :class:`PlanSpec`."""
    return PlanSpec(schedule, **dict(params))
