"""Seeded random weights, their checks and their portable ``.npz`` file format.

A model file is data from elsewhere: :func:`load_params` reads no pickle, checks the
configuration before any weight is read (``max_len`` included, against a limit the caller
sets: the file alone must not decide how much work the model will take), checks the names,
dtypes, shapes and declared sizes of the weights before reading any of them (an extra entry of
gigabytes is refused unread), and checks every weight (real and finite) with one clear error
per problem.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._checks import check_int
from ..filters import DENSE_MAX_LENGTH
from .config import STU_MIXERS, ModelConfig
from .mixers import get_mixer
from .npz import NpzArchive

__all__ = [
    "MAX_LEN_LIMIT",
    "ModelFileError",
    "check_params",
    "init_params",
    "load_params",
    "model_bytes",
    "save_params",
]

_CONFIG_KEY = "__config__"
#: Largest configuration entry read (its JSON is a few hundred bytes).
_CONFIG_BYTES = 1 << 16

#: Largest ``max_len`` :func:`load_params` accepts unless told otherwise. Building a model's
#: long filters costs time and memory in proportion to ``max_len`` (the STU basis of
#: ``2**17`` taps takes a few seconds; of ``2**20``, half a minute and gigabytes), and an STU
#: file is a few kilobytes whatever its ``max_len``.
MAX_LEN_LIMIT = 2**17


class ModelFileError(ValueError):
    """A file that is not a valid futurefill model file; the message names the file.

    Examples
    --------
    >>> import os, tempfile
    >>> from futurefill.models import ConvLM
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "model.npz")
    ...     with open(path, "wb") as file:
    ...         _ = file.write(b"not a model")
    ...     ConvLM.load(path)
    Traceback (most recent call last):
    ...
    futurefill.models.params.ModelFileError: '...model.npz' is not a futurefill model file ...
    """


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


def check_params(cfg: ModelConfig, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Weights checked against ``cfg`` and converted to read-only contiguous ``cfg.dtype``.

    Parameters
    ----------
    cfg : ModelConfig
    params : mapping of str to array-like
        One array per name of :func:`init_shapes`.

    Returns
    -------
    dict of str to ndarray

    Raises
    ------
    ValueError
        Missing or unexpected names, a wrong shape, a dtype that is not a real number (complex
        values are not silently dropped), or a value that is not finite in ``cfg.dtype``
        (NaN, infinity, or too large for float32).
    """
    expected = init_shapes(cfg)
    if set(params) != set(expected):
        missing, extra = set(expected) - set(params), set(params) - set(expected)
        raise ValueError(
            f"weights do not match the configuration: missing {sorted(missing)}, "
            f"unexpected {sorted(extra)}"
        )
    checked = {}
    for name, shape in expected.items():
        host = np.asarray(params[name])
        if host.dtype.kind not in "fiu":
            raise ValueError(f"weight {name!r} must hold real numbers, got dtype {host.dtype}")
        if host.shape != shape:
            raise ValueError(f"weight {name!r} has shape {host.shape}, expected {shape}")
        with np.errstate(over="ignore"):
            array = np.ascontiguousarray(host, dtype=cfg.dtype)
        if not np.isfinite(array).all():
            raise ValueError(f"weight {name!r} has values that are not finite in {cfg.dtype}")
        array.setflags(write=False)
        checked[name] = array
    return checked


def save_params(
    path: str | os.PathLike[str], cfg: ModelConfig, params: Mapping[str, np.ndarray]
) -> None:
    """Write the configuration (as JSON) and the weights to one uncompressed ``.npz`` file.

    The file is written at exactly ``path``: no suffix is added (``.npz`` is the usual one),
    so :func:`load_params` reads back the same path.
    """
    if _CONFIG_KEY in params:
        raise ValueError(f"{_CONFIG_KEY!r} is reserved for the configuration")
    arrays: dict[str, Any] = {_CONFIG_KEY: np.array(cfg.to_json()), **params}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _read_config(path: str, archive: NpzArchive) -> ModelConfig:
    if _CONFIG_KEY not in archive.entries:
        raise ModelFileError(f"{path!r} is not a futurefill model file (no {_CONFIG_KEY!r} entry)")
    if archive.declared_size(_CONFIG_KEY) > _CONFIG_BYTES:
        raise ModelFileError(
            f"{path!r}: {_CONFIG_KEY!r} declares {archive.declared_size(_CONFIG_KEY)} bytes; "
            f"a configuration takes at most {_CONFIG_BYTES}"
        )
    entry = archive.read(_CONFIG_KEY)
    if entry.dtype.kind != "U" or entry.ndim != 0:
        raise ModelFileError(
            f"{path!r}: {_CONFIG_KEY!r} must be the configuration as JSON text, got an array "
            f"of dtype {entry.dtype} and shape {entry.shape}"
        )
    try:
        return ModelConfig.from_json(str(entry))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path!r}: bad model configuration: {exc}") from None


def _check_entries(archive: NpzArchive, cfg: ModelConfig) -> None:
    """Names, dtypes, shapes and declared sizes of the weights, before any is read."""
    expected = init_shapes(cfg)
    names = set(archive.entries) - {_CONFIG_KEY}
    if names != set(expected):
        missing, extra = set(expected) - names, names - set(expected)
        raise ValueError(
            f"weights do not match the configuration: missing {sorted(missing)}, "
            f"unexpected {sorted(extra)}"
        )
    for name, shape in expected.items():
        header = archive.header(name)
        if header.dtype.kind not in "fiu":
            raise ValueError(f"weight {name!r} must hold real numbers, got dtype {header.dtype}")
        if header.shape != shape:
            raise ValueError(f"weight {name!r} has shape {header.shape}, expected {shape}")


def load_params(
    path: str | os.PathLike[str], *, max_len_limit: int | None = MAX_LEN_LIMIT
) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """Read a file written by :func:`save_params`, checking everything in it.

    The configuration is read first; then the names of the entries, and the dtype, shape and
    declared size of each weight, are checked against it before any weight is read: the
    file reads at most what its configuration's weights take (see
    :mod:`futurefill.models.npz`).

    Parameters
    ----------
    path : str or path-like
        The file, at exactly this path (no suffix is added).
    max_len_limit : int or None
        Largest ``max_len`` accepted (default :data:`MAX_LEN_LIMIT`); None for no limit. The
        configuration is checked before any weight is read.

    Returns
    -------
    cfg : ModelConfig
    params : dict of str to ndarray
        Checked by :func:`check_params`.

    Raises
    ------
    ModelFileError
        (a ``ValueError``) Whatever is wrong with the file, in one line that names it.
    """
    if max_len_limit is not None:
        max_len_limit = check_int("max_len_limit", max_len_limit, 1)
    name = os.fspath(path)
    if not zipfile.is_zipfile(name):
        raise ModelFileError(f"{name!r} is not a futurefill model file (not an .npz archive)")
    try:
        with NpzArchive(name) as archive:
            cfg = _read_config(name, archive)
            if max_len_limit is not None and cfg.max_len > max_len_limit:
                raise ModelFileError(
                    f"{name!r} asks for max_len = {cfg.max_len}, above the limit of "
                    f"{max_len_limit} (building its filters takes time and memory in "
                    f"proportion); if you trust the file, pass max_len_limit={cfg.max_len}"
                )
            _check_entries(archive, cfg)
            raw = {k: archive.read(k) for k in archive.entries if k != _CONFIG_KEY}
        return cfg, check_params(cfg, raw)
    except ModelFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{name!r}: {' '.join(str(exc).split())}") from None


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


def model_bytes(cfg: ModelConfig) -> int:
    """Estimated peak bytes of building a model of configuration ``cfg`` (nothing computed).

    The weights (drawn in float64, then converted to ``cfg.dtype``), the long filters of
    every layer (float64, ``long_channels x max_len`` each), for STU mixers the spectral
    basis and what computes it (a dense ``max_len x max_len`` eigenproblem up to
    :data:`~futurefill.filters.DENSE_MAX_LENGTH` taps, else a subspace iteration of ``stu_k``
    plus oversampling columns of spectra), and the temporaries of one layer's filters (four
    filter-sized arrays and the positional features). Measured peaks (``tracemalloc``) stay
    within it.
    """
    mixer = get_mixer(cfg.mixer)
    N = cfg.max_len
    weights = sum(math.prod(shape) for shape in init_shapes(cfg).values())
    filters = mixer.long_channels(cfg) * N
    basis = 0
    if cfg.mixer in STU_MIXERS:
        basis = 4 * N * N if N <= DENSE_MAX_LENGTH else 8 * (cfg.stu_k + 24) * N
    temporaries = 4 * filters + 100 * N
    return 8 * (2 * weights + cfg.layers * filters + basis + temporaries)
