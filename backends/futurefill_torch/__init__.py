"""The PyTorch executor: CPU and CUDA, in-place buffers, per-level spectra, optional CUDA graphs."""

from .executor import TorchExecutor

__all__ = ["TorchExecutor"]
