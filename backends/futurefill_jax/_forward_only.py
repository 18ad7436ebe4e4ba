"""A mark on the functional API's results: forward-mode derivatives pass, reverse mode stops.

The tasks run in ``lax.fori_loop``\\ s whose trip counts are read from the plan's tables
(traced bounds), which JAX differentiates in forward mode but cannot transpose. Its own error
("Reverse-mode differentiation does not work for lax.while_loop ...") names no futurefill
function; :func:`forward_only` is the identity (no operation in the compiled program) whose
transpose raises :data:`REVERSE_MODE_MESSAGE` instead. Reverse mode transposes the last
operations first, so a mark on a function's result is met before the loops that made it.
"""

from __future__ import annotations

from typing import Any

from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

__all__ = ["REVERSE_MODE_MESSAGE", "forward_only"]

Array = Any

REVERSE_MODE_MESSAGE = (
    "futurefill_jax.functional supports forward-mode differentiation only (jax.jvp, "
    "jax.jacfwd, jax.linearize); reverse mode (jax.grad, jax.vjp, jax.jacrev) is not "
    "supported: the plan's tasks run in loops with traced trip counts, which JAX cannot "
    "transpose"
)


def _refuse(cotangent: Array, x: Any) -> Array:
    raise NotImplementedError(REVERSE_MODE_MESSAGE)


_forward_only_p = Primitive("futurefill_forward_only")
_forward_only_p.def_impl(lambda x: x)
_forward_only_p.def_abstract_eval(lambda aval: aval)
ad.deflinear2(_forward_only_p, _refuse)  # the tangent passes through unchanged
batching.defvectorized(_forward_only_p)
mlir.register_lowering(_forward_only_p, lambda ctx, x: [x])


def forward_only(x: Array) -> Array:
    """``x`` itself, marked so that reverse-mode differentiation through it raises
    ``NotImplementedError`` with :data:`REVERSE_MODE_MESSAGE`."""
    return _forward_only_p.bind(x)
