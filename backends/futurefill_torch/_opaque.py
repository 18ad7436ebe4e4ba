"""The boundary between ``torch.compile`` and the stateful online convolution.

An online convolution keeps its cursor on the Python side (the step index, per-channel masks,
the plan's NumPy tables) and updates its buffer in place. TorchDynamo traces such code badly:
it turns the plan's NumPy tables into graph inputs and the step index into a symbolic integer,
and the compiled steps read the wrong slots (outputs wrong from the fourth step on, with the
``aot_eager`` and ``inductor`` backends and C >= 2). :func:`opaque` makes a function a graph
break: traced by ``torch.compile``, it runs eagerly (``torch.compiler.disable``), so compiled
code around it stays compiled and the step itself is the exact eager one. Called eagerly it
costs one :func:`torch.compiler.is_compiling` check (a fraction of a microsecond), not the
frame switch of a disabled function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

__all__ = ["opaque"]

P = ParamSpec("P")
R = TypeVar("R")


def opaque(function: Callable[P, R]) -> Callable[P, R]:
    """``function``, run eagerly (a graph break) wherever ``torch.compile`` traces a call of it.

    With ``torch.compile(..., fullgraph=True)`` the graph break is an error naming the
    disabled function: a stateful step cannot be one graph.
    """
    eager = torch.compiler.disable(function)

    @functools.wraps(function)
    def gated(*args: P.args, **kwargs: P.kwargs) -> R:
        if torch.compiler.is_compiling():
            return eager(*args, **kwargs)
        return function(*args, **kwargs)

    return gated
