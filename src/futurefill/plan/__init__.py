"""Generation schedules as plans: pure data saying which FutureFill task runs after which step.

* :class:`Plan` — the tables every executor reads (:mod:`futurefill.plan._plan`);
* :func:`make_plan`, :func:`register_schedule` — the schedule registry
  (:mod:`futurefill.plan.registry`); the built-in schedules live in
  :mod:`futurefill.plan.schedules`, one file each;
* :class:`PlanSpec` — a schedule and its parameters as one value;
* :func:`~futurefill.plan.checks.validate_plan` — the exactness proof;
* :class:`PlanCost` — the cost model; :func:`predicted_seconds` — its calibrated time
  (:mod:`futurefill.plan.cost`).

Examples
--------
>>> from futurefill.plan import MAX_POSITIONS, SCHEDULES, TASK_COLUMNS, list_schedules, make_plan
>>> set(SCHEDULES) <= set(list_schedules())  # the built-in ones are always registered
True
>>> plan = make_plan(16, "epoched", epoch=4)
>>> plan.tasks().shape == (plan.num_tasks, len(TASK_COLUMNS))
True
>>> MAX_POSITIONS == 2**30  # the most prompt + length a plan can have
True
"""

from . import registry
from ._plan import (
    MAX_POSITIONS,
    TASK_COLUMNS,
    Plan,
    PlanError,
    StepPatterns,
    TaskOffsets,
    TaskShape,
    Tiling,
)
from .cost import PlanCost, PredictedTime, TimeModel, predict_time, predicted_seconds
from .registry import *  # noqa: F403 - make_plan, register_schedule, ... (see registry.__all__)
from .schedules.epoched import default_epoch
from .spec import PlanSpec

#: The built-in schedules (more may be registered: :func:`list_schedules`).
SCHEDULES: tuple[str, ...] = ("naive", "epoched", "continuous", "deadline", "reuse")

__all__ = [
    "MAX_POSITIONS",
    "SCHEDULES",
    "TASK_COLUMNS",
    "Plan",
    "PlanCost",
    "PlanError",
    "PlanSpec",
    "PredictedTime",
    "StepPatterns",
    "TaskOffsets",
    "TaskShape",
    "Tiling",
    "TimeModel",
    "default_epoch",
    "predict_time",
    "predicted_seconds",
    *registry.__all__,
]
