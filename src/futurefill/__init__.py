"""futurefill: exact, fast autoregressive generation from convolutional sequence models."""

from ._backend import BackendError, get_backend, list_backends, set_backend, use_backend
from .executor import ArrayAPIExecutor, ConvState, Executor
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
    "get_backend",
    "list_backends",
    "make_plan",
    "set_backend",
    "use_backend",
]
