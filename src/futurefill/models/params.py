"""Seeded random weights and their portable ``.npz`` file format."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import ModelConfig
from .mixers import get_mixer

__all__ = ["init_params", "load_params", "save_params"]

_CONFIG_KEY = "__config__"


def init_params(cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Random weights of a model, a pure function of ``cfg`` (its seed included).

    Keys: ``embed`` ``(V, D)``, ``norm`` ``(D,)``, ``head`` ``(D, V)`` and, per layer ``i``,
    ``layers.{i}.norm1``, ``layers.{i}.norm2``, ``layers.{i}.mlp.{w1,b1,w2,b2}`` and the
    mixer's ``layers.{i}.mixer.*``. Arrays are NumPy in ``cfg.dtype``.
    """
    rng = np.random.default_rng(cfg.seed)
    D, H, V = cfg.dim, cfg.hidden, cfg.vocab_size
    mixer = get_mixer(cfg.mixer)
    params: dict[str, np.ndarray] = {"embed": rng.standard_normal((V, D))}
    for i in range(cfg.layers):
        layer = {
            "norm1": np.ones(D),
            "norm2": np.ones(D),
            "mlp.w1": rng.standard_normal((D, H)) / math.sqrt(D),
            "mlp.b1": np.zeros(H),
            "mlp.w2": rng.standard_normal((H, D)) / math.sqrt(H),
            "mlp.b2": np.zeros(D),
            **mixer.init(cfg, rng),
        }
        params.update({f"layers.{i}.{k}": v for k, v in layer.items()})
    params["norm"] = np.ones(D)
    params["head"] = rng.standard_normal((D, V)) / math.sqrt(D)
    return {k: np.ascontiguousarray(v, dtype=cfg.dtype) for k, v in params.items()}


def save_params(
    path: str | os.PathLike[str], cfg: ModelConfig, params: Mapping[str, np.ndarray]
) -> None:
    """Write the configuration (as JSON) and the weights to one uncompressed ``.npz`` file."""
    if _CONFIG_KEY in params:
        raise ValueError(f"{_CONFIG_KEY!r} is reserved for the configuration")
    arrays: dict[str, Any] = {_CONFIG_KEY: np.array(cfg.to_json()), **params}
    np.savez(path, **arrays)


def load_params(path: str | os.PathLike[str]) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """Read a file written by :func:`save_params` (no pickle: only plain arrays are accepted)."""
    with np.load(path, allow_pickle=False) as data:
        if _CONFIG_KEY not in data.files:
            raise ValueError(f"{os.fspath(path)!r} is not a futurefill model file (no config)")
        cfg = ModelConfig.from_json(str(data[_CONFIG_KEY]))
        params = {k: data[k] for k in data.files if k != _CONFIG_KEY}
    expected = init_shapes(cfg)
    if set(params) != set(expected):
        missing, extra = set(expected) - set(params), set(params) - set(expected)
        raise ValueError(
            f"model file weights mismatch: missing {sorted(missing)}, unexpected {sorted(extra)}"
        )
    for k, shape in expected.items():
        if params[k].shape != shape:
            raise ValueError(f"weight {k!r} has shape {params[k].shape}, expected {shape}")
    return cfg, params


def init_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Shape of every weight of a model with configuration ``cfg`` (nothing is computed)."""
    D, H, V = cfg.dim, cfg.hidden, cfg.vocab_size
    layer = {
        "norm1": (D,),
        "norm2": (D,),
        "mlp.w1": (D, H),
        "mlp.b1": (H,),
        "mlp.w2": (H, D),
        "mlp.b2": (D,),
        **get_mixer(cfg.mixer).shapes(cfg),
    }
    shapes: dict[str, tuple[int, ...]] = {"embed": (V, D)}
    for i in range(cfg.layers):
        shapes.update({f"layers.{i}.{k}": s for k, s in layer.items()})
    shapes.update({"norm": (D,), "head": (D, V)})
    return shapes
