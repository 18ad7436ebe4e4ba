"""futurefill: exact, fast autoregressive generation from convolutional sequence models."""

from ._backend import BackendError, get_backend, list_backends, set_backend, use_backend
from .executor import ArrayAPIExecutor, ConvState, Executor
from .filters import decaying_random_filters, hyena_filters, stu_filters
from .online import OnlineConv
from .ops import causal_conv
from .plan import SCHEDULES, Plan, PlanCost, PlanError, make_plan

__version__ = "0.1.0"

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
    "causal_conv",
    "decaying_random_filters",
    "get_backend",
    "hyena_filters",
    "list_backends",
    "make_plan",
    "set_backend",
    "stu_filters",
    "use_backend",
]
