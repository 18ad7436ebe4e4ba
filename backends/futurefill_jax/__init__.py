"""The JAX executor: functional state, jit-compiled steps, a compiled whole-generation rollout."""

from .executor import JaxExecutor

__all__ = ["JaxExecutor"]
