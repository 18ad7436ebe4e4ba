"""The PyTorch executor: CPU and CUDA, in-place buffers, per-level spectra, optional CUDA graphs.

:class:`OnlineConvModule` is an online convolution as a ``torch.nn.Module``.
"""

from .executor import TorchExecutor
from .module import OnlineConvModule

__all__ = ["OnlineConvModule", "TorchExecutor"]
