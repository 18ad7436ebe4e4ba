"""The NumPy executor: in-place preallocated buffers, spectra per level, tuned direct windows."""

from .executor import NumpyExecutor

__all__ = ["NumpyExecutor"]
