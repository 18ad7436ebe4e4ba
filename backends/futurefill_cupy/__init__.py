"""The CuPy executor: CUDA arrays, in place, cuFFT plans reused across tasks of one size."""

from .executor import CupyExecutor

__all__ = ["CupyExecutor"]
