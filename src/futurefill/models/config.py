"""Hyper-parameters of the reference convolutional language models."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .._checks import check_int, check_real
from ..filters import HANKELS

__all__ = ["MIXERS", "STU_BRANCHES", "STU_MIXERS", "ModelConfig"]

#: Sequence mixers the reference models implement.
MIXERS = ("stu", "stu_full", "hyena")
#: The mixers built on the STU spectral filters (they read ``stu_k``, ``stu_branches`` and
#: ``stu_hankel``).
STU_MIXERS = ("stu", "stu_full")
#: Values of ``ModelConfig.stu_branches``.
STU_BRANCHES = ("both", "plus")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and seeds of a :class:`~futurefill.models.ConvLM`.

    Attributes
    ----------
    mixer : {"stu", "stu_full", "hyena"}
        ``"stu"``: STU-T (tensordot approximation) spectral mixer; ``"stu_full"``: the full
        STU layer (every spectral filter applied to every input channel, then learned
        projections); ``"hyena"``: Hyena-style gated mixer with an implicit long filter.
    vocab_size : int
        Number of token ids.
    dim : int
        Model width ``D``.
    layers : int
        Number of residual blocks ``M``.
    max_len : int
        Filter taps ``N``: the longest sequence (prompt + generated) the model can process.
    mlp_ratio : float
        Hidden width of the MLP as a multiple of ``dim`` (at least one hidden unit).
    stu_k : int
        Number of STU spectral filters ``K`` (STU mixers only).
    stu_branches : {"both", "plus"}
        STU mixers only. ``"both"``: the positive branch (the filters convolved with the
        input) plus the negative branch (the same filters convolved with the sign-alternated
        input ``(-1)^t u[t]``, the output's sign alternated back), each with its own learned
        projection; ``"plus"``: the positive branch alone.
    stu_hankel : {"standard", "L"}
        STU mixers only: the Hankel matrix whose eigenvectors are the spectral filters
        (``Z`` or ``Z_L``, see :func:`futurefill.filters.stu_filters`). The authors pair
        ``"L"`` with ``stu_branches="plus"``.
    seed : int
        Seed of the random weights (``>= 0``).
    dtype : {"float64", "float32"}
        Working dtype of weights and activations.
    norm_eps : float
        Epsilon of the RMS norms (finite, ``> 0``).
    bos : int
        Token that starts generation without a prompt.

    Every field is checked when the configuration is built: a wrong type is a ``TypeError``
    (no string or bool is converted), a bad value a ``ValueError``, each one line naming the
    field.

    Examples
    --------
    >>> from futurefill.models import ModelConfig
    >>> cfg = ModelConfig(mixer="hyena", dim=8, layers=1, max_len=32, vocab_size=16)
    >>> ModelConfig.from_json(cfg.to_json()) == cfg
    True
    >>> ModelConfig(dim=0)
    Traceback (most recent call last):
    ...
    ValueError: dim must be >= 1, got 0
    """

    mixer: str = "stu"
    vocab_size: int = 256
    dim: int = 64
    layers: int = 2
    max_len: int = 4096
    mlp_ratio: float = 4.0
    stu_k: int = 24
    stu_branches: str = "both"
    stu_hankel: str = "standard"
    seed: int = 0
    dtype: str = "float64"
    norm_eps: float = 1e-6
    bos: int = 0

    def __post_init__(self) -> None:
        # Every field is checked (one line per bad value) and normalised to a Python scalar,
        # so that a configuration read from a file is as trustworthy as one built in code.
        for name, allowed in (
            ("mixer", MIXERS),
            ("stu_branches", STU_BRANCHES),
            ("stu_hankel", HANKELS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("vocab_size", "dim", "layers", "max_len", "stu_k"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), 1))
        object.__setattr__(self, "seed", check_int("seed", self.seed, 0))
        object.__setattr__(
            self, "mlp_ratio", check_real("mlp_ratio", self.mlp_ratio, positive=True)
        )
        object.__setattr__(self, "norm_eps", check_real("norm_eps", self.norm_eps, positive=True))
        if self.mixer in STU_MIXERS and self.stu_k > self.max_len:
            raise ValueError(f"stu_k = {self.stu_k} needs max_len >= stu_k, got {self.max_len}")
        if self.hidden < 1:
            raise ValueError(
                f"mlp_ratio = {self.mlp_ratio} gives no hidden unit for dim = {self.dim}"
            )
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        object.__setattr__(self, "bos", check_int("bos", self.bos, 0, self.vocab_size - 1))

    @property
    def hidden(self) -> int:
        """Hidden width of the MLP."""
        return round(self.mlp_ratio * self.dim)

    def to_json(self) -> str:
        """The configuration as a JSON object."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Inverse of :meth:`to_json`; anything but a JSON object of known keys is an error.

        Raises
        ------
        ValueError
            Text that is not a JSON object (nested too deeply to be read included), unknown
            keys, or a bad value (see the class).
        TypeError
            A value of the wrong type.
        """
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"model configuration is not valid JSON: {exc}") from None
        except RecursionError:  # the decoder recurses once per level of nesting
            raise ValueError(
                "model configuration is not a flat JSON object: its values are nested too "
                "deeply to be read"
            ) from None
        if not isinstance(data, dict):
            raise ValueError(
                f"model configuration must be a JSON object, got {type(data).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model configuration keys {sorted(unknown)}")
        return cls(**data)
