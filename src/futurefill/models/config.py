"""Hyper-parameters of the reference convolutional language models."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["MIXERS", "ModelConfig"]

#: Sequence mixers the reference models implement.
MIXERS = ("stu", "hyena")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and seeds of a :class:`~futurefill.models.ConvLM`.

    Attributes
    ----------
    mixer : {"stu", "hyena"}
        ``"stu"``: STU-T (tensordot approximation) spectral mixer; ``"hyena"``: Hyena-style
        gated mixer with an implicit long filter.
    vocab_size : int
        Number of token ids.
    dim : int
        Model width ``D``.
    layers : int
        Number of residual blocks ``M``.
    max_len : int
        Filter taps ``N``: the longest sequence (prompt + generated) the model can process.
    mlp_ratio : float
        Hidden width of the MLP as a multiple of ``dim``.
    stu_k : int
        Number of STU spectral filters ``K`` (``"stu"`` only).
    seed : int
        Seed of the random weights.
    dtype : {"float64", "float32"}
        Working dtype of weights and activations.
    norm_eps : float
        Epsilon of the RMS norms.
    bos : int
        Token that starts generation without a prompt.
    """

    mixer: str = "stu"
    vocab_size: int = 256
    dim: int = 64
    layers: int = 2
    max_len: int = 4096
    mlp_ratio: float = 4.0
    stu_k: int = 24
    seed: int = 0
    dtype: str = "float64"
    norm_eps: float = 1e-6
    bos: int = 0

    def __post_init__(self) -> None:
        if self.mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {self.mixer!r}")
        for name in ("vocab_size", "dim", "layers", "max_len", "stu_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.mixer == "stu" and self.stu_k > self.max_len:
            raise ValueError(f"stu_k = {self.stu_k} needs max_len >= stu_k")
        if not self.mlp_ratio > 0 or self.hidden < 1:
            raise ValueError(f"mlp_ratio must give a positive hidden width, got {self.mlp_ratio}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not 0 <= self.bos < self.vocab_size:
            raise ValueError(f"bos must be a token id below vocab_size, got {self.bos}")

    @property
    def hidden(self) -> int:
        """Hidden width of the MLP."""
        return round(self.mlp_ratio * self.dim)

    def to_json(self) -> str:
        """The configuration as a JSON object."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Inverse of :meth:`to_json`; unknown keys are an error."""
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model configuration keys {sorted(unknown)}")
        return cls(**data)
