"""futurefill: exact, fast autoregressive generation from convolutional sequence models.

The names here are the user's API: streams (:class:`OnlineConv`), plans (:func:`make_plan`),
filters, backend selection and :func:`tune`. Backend authors find the executor protocol, its
base class and the state in :mod:`futurefill.executor`; the measuring tools (benchmarks,
calibration, plots, the tuner) live in :mod:`futurefill.measure` and are loaded only when
used.

Examples
--------
>>> import numpy as np, futurefill
>>> futurefill.SCHEDULES  # the built-in schedules
('naive', 'epoched', 'continuous', 'deadline', 'reuse')
>>> phi = futurefill.decaying_random_filters(2, 16, seed=0)
>>> u = np.random.default_rng(0).standard_normal((1, 2, 16))
>>> y = futurefill.OnlineConv(phi, 16, schedule="epoched", backend="numpy").run(u)
>>> bool(np.allclose(y, futurefill.causal_conv(u, phi)))  # exact: the offline result
True
>>> futurefill.__version__.count(".")  # major.minor.micro
2
"""

from __future__ import annotations

import warnings
from typing import Any

from . import _moved
from ._registry import (
    BackendError,
    get_backend,
    list_backends,
    refresh_backends,
    set_backend,
    use_backend,
)
from .filters import decaying_random_filters, hyena_filters, stu_filters
from .online import OnlineConv
from .ops import causal_conv
from .plan import (
    SCHEDULES,
    Plan,
    PlanCost,
    PlanError,
    PlanSpec,
    list_schedules,
    make_plan,
    predicted_seconds,
    register_schedule,
)
from .pool import StreamPool

__version__ = "0.3.0"

_moved.install()

__all__ = [
    "SCHEDULES",
    "BackendError",
    "OnlineConv",
    "Plan",
    "PlanCost",
    "PlanError",
    "PlanSpec",
    "StreamPool",
    "__version__",
    "causal_conv",
    "decaying_random_filters",
    "get_backend",
    "hyena_filters",
    "list_backends",
    "list_schedules",
    "make_plan",
    "predicted_seconds",
    "refresh_backends",
    "register_schedule",
    "set_backend",
    "stu_filters",
    "tune",
    "use_backend",
]

#: Backend authors' names that moved to :mod:`futurefill.executor` (0.3): still reachable
#: here for one release, with a :class:`DeprecationWarning`.
_MOVED_TO_EXECUTOR = ("ArrayAPIExecutor", "ConvState", "Executor")


def __getattr__(name: str) -> Any:
    # PEP 562: ``tune`` loads the measuring tools on first use, so that ``import futurefill``
    # does not.
    if name == "tune":
        from .measure.tuning import tune

        return tune
    if name in _MOVED_TO_EXECUTOR:
        warnings.warn(
            f"futurefill.{name} moved to futurefill.executor.{name} (backend authors' API); "
            "the old name goes away in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        from . import executor

        return getattr(executor, name)
    raise AttributeError(f"module 'futurefill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
