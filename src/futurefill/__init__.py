"""futurefill: exact, fast autoregressive generation from convolutional sequence models."""

from . import interpreter
from ._backend import (
    BackendError,
    get_backend,
    list_backends,
    refresh_backends,
    set_backend,
    use_backend,
)
from .backends import ArrayAPIExecutor, ConvState, Executor
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
from .tuning import tune

__version__ = "0.2.0"

__all__ = [
    "SCHEDULES",
    "ArrayAPIExecutor",
    "BackendError",
    "ConvState",
    "Executor",
    "OnlineConv",
    "Plan",
    "PlanCost",
    "PlanError",
    "PlanSpec",
    "__version__",
    "causal_conv",
    "decaying_random_filters",
    "get_backend",
    "hyena_filters",
    "interpreter",
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
