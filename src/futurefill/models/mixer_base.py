"""The interface of a sequence mixer, split around its long convolution.

A mixer is a position-wise *input* map (producing the long-convolution inputs ``u``), the
depthwise long convolution itself (run by the caller: offline by FFT for a whole sequence,
online by :class:`futurefill.OnlineConv` during generation) and a position-wise *output* map.
Keeping the convolution outside lets one ``OnlineConv`` serve the channels of every layer.

Weights are dicts keyed ``"mixer.<name>"``; activations have features last.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .config import ModelConfig

__all__ = ["Array", "Mixer", "State", "Weights"]

Array = Any
Weights = dict[str, Array]
#: Per-position state a mixer keeps outside the long convolution (``()`` for none).
State = tuple[Array, ...]


class Mixer:
    """Interface of a mixer (all methods are static in spirit; instances hold no data)."""

    name: ClassVar[str]

    def init(self, cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Seeded random weights (float64, NumPy)."""
        raise NotImplementedError

    def shapes(self, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
        """Shape of every weight :meth:`init` returns."""
        raise NotImplementedError

    def long_channels(self, cfg: ModelConfig) -> int:
        """Number of long-convolution channels of one layer."""
        raise NotImplementedError

    def long_filters(self, cfg: ModelConfig, w: dict[str, np.ndarray]) -> np.ndarray:
        """The layer's long filters ``(C, max_len)`` on the host."""
        raise NotImplementedError

    def sequence_inputs(
        self, w: Weights, h: Array, xp: Any, state: State | None = None
    ) -> tuple[Array, Array, State]:
        """``h`` ``(B, T, D)`` -> (conv inputs ``(B, T, C)``, aux for :meth:`outputs`, state
        after the last position); ``state`` is the state before the first position (``None``:
        the sequence starts there), so that a sequence may run in chunks."""
        raise NotImplementedError

    def position_inputs(
        self, w: Weights, h: Array, state: State, xp: Any
    ) -> tuple[Array, Array, State]:
        """``h`` ``(B, D)`` at one position -> (conv inputs ``(B, C)``, aux, new state)."""
        raise NotImplementedError

    def initial_state(self, w: Weights, batch: int, xp: Any, device: Any) -> State:
        """State before the first position."""
        return ()

    def state_values(self, cfg: ModelConfig, batch: int) -> int:
        """Number of values in the state of one layer."""
        return 0

    def outputs(self, w: Weights, y: Array, u: Array, aux: Array, xp: Any) -> Array:
        """Conv outputs ``y`` and inputs ``u`` (``(..., C)``) -> mixer output ``(..., D)``."""
        raise NotImplementedError
