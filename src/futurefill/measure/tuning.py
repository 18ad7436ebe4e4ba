"""Measured autotuning (like FFTW's ``FFTW_MEASURE``): time the candidates here, keep the best.

:func:`tune` times the continuous schedule for every candidate ``direct_below`` (and, if asked,
the epoched schedule for candidate epochs, the reuse schedule's radix) on one backend, device,
dtype and width (``batch * channels``), and stores the fastest where executors read it
(:mod:`futurefill.defaults`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._checks import check_int
from .._labels import device_name, dtype_name
from .._registry import get_backend
from ..defaults import (
    DIRECT_BELOW_CANDIDATES,
    _write_entry,
    cache_key,
    cache_path,
    library_versions,
)
from ..executor import Executor
from ..plan import PlanSpec, default_epoch
from ._timing import Target
from .bench import OFFLINE, bench_configuration

__all__ = ["TuningResult", "default_epochs", "tune"]


# ---------------------------------------------------------------------- measuring
@dataclass(frozen=True)
class TuningResult(Target):
    """What :func:`tune` measured and chose.

    Attributes
    ----------
    backend, device, dtype, batch, channels
        What was tuned (see :class:`futurefill.measure._timing.Target`); the stored values are keyed
        by the width ``batch * channels``.
    length : int
        Steps of each timed generation.
    direct_below : int
        The fastest candidate of the continuous schedule.
    direct_below_us : mapping of int to float
        Best µs per token of every candidate.
    epoch : int or None
        The fastest epoch of the epoched schedule (``None`` when no epoch was timed).
    epoch_us : mapping of int to float
        Best µs per token of every epoch timed.
    radix : int or None
        The fastest radix of the reuse schedule, with ``direct_below`` as chosen (``None``
        when no radix was timed).
    radix_us : mapping of int to float
        Best µs per token of every radix timed.
    path : Path or None
        The tuning file it was stored in (``None``: not stored).
    key : str
        Its entry in that file (:func:`cache_key`).
    """

    length: int
    direct_below: int
    direct_below_us: Mapping[int, float]
    epoch: int | None
    epoch_us: Mapping[int, float]
    path: Path | None
    key: str
    radix: int | None = None
    radix_us: Mapping[int, float] = field(default_factory=dict)

    @property
    def width(self) -> int:
        """``batch * channels``: what the stored values are keyed by."""
        return self.batch * self.channels

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for ``futurefill tune --json``)."""
        return {
            **self.head(),
            "length": self.length,
            "direct_below": self.direct_below,
            "direct_below_us": {str(k): v for k, v in self.direct_below_us.items()},
            "epoch": self.epoch,
            "epoch_us": {str(k): v for k, v in self.epoch_us.items()},
            "radix": self.radix,
            "radix_us": {str(k): v for k, v in self.radix_us.items()},
            "path": None if self.path is None else str(self.path),
            "key": self.key,
        }


def default_epochs(length: int) -> tuple[int, ...]:
    """Epoch candidates: the authors' default ``int(sqrt(L log2 L))`` times 1/4 .. 4."""
    base = default_epoch(length)
    return tuple(sorted({max(1, min(length, round(base * f))) for f in (0.25, 0.5, 1, 2, 4)}))


def _best_of(specs: list[tuple[int, PlanSpec]], **bench: Any) -> dict[int, float]:
    """µs per token of every candidate, all timed round-robin in one process."""
    labels = {str(spec): value for value, spec in specs}
    results = bench_configuration(schedules=[spec for _, spec in specs], **bench)
    return {labels[r.schedule]: r.us_per_token for r in results if r.schedule != OFFLINE}


def tune(
    backend: str | Executor | None = None,
    *,
    device: Any = None,
    dtype: str = "float64",
    batch: int = 1,
    channels: int = 1,
    length: int = 16384,
    candidates: Iterable[int] = DIRECT_BELOW_CANDIDATES,
    epochs: Iterable[int] | None = (),
    radices: Iterable[int] = (),
    repeats: int = 3,
    store: bool = True,
) -> TuningResult:
    """Time the candidates on this machine and store the fastest (``FFTW_MEASURE``-like).

    Parameters
    ----------
    backend : str or Executor, optional
        Backend; the one in force by default.
    device : optional
        Device for a backend given by name.
    dtype : {"float64", "float32"}
        Working precision.
    batch, channels : int
        The width to tune; executors look the stored values up by ``batch * channels``.
    length : int
        Steps of each timed generation (one depthwise layer with feedback, as in
        :func:`futurefill.measure.bench.bench_configuration`).
    candidates : iterable of int
        ``direct_below`` values to time (powers of two).
    epochs : iterable of int or None
        Epoch lengths of the epoched schedule to time; ``None`` for a few around the default
        (:func:`default_epochs`), empty (the default) for none. The fastest is stored per
        width and length (see :func:`stored_value`), for callers to pass as ``epoch=``.
    radices : iterable of int
        Radices of the ``reuse`` schedule to time (each ``>= 2``, with the ``direct_below``
        found fastest); the fastest is stored per width and becomes the schedule's default
        on this backend (:meth:`TunedCrossover.default_radix`). Empty (the default): none.
    repeats : int
        Timed rounds after a warm-up; every candidate keeps its best round.
    store : bool
        Write the result to the tuning file (:func:`cache_path`).

    Returns
    -------
    TuningResult

    Examples
    --------
    Two candidates on a short run, not stored (the times depend on the machine; which one
    wins does too):

    >>> import futurefill
    >>> result = futurefill.tune("numpy", length=8, candidates=[1, 2], repeats=1, store=False)
    >>> sorted(result.direct_below_us), result.direct_below in (1, 2)
    ([1, 2], True)
    """
    ex = get_backend(backend, device=device)
    length = check_int("length", length, 1)
    ks = sorted({check_int("a direct_below candidate", k, 1) for k in candidates})
    if not ks or any(k & (k - 1) for k in ks):
        raise ValueError(f"direct_below candidates must be powers of two, got {ks}")
    es = default_epochs(length) if epochs is None else sorted(set(epochs))
    for e in es:
        check_int("an epoch", e, 1, length)
    rs = sorted({check_int("a radix", r, 2) for r in radices})
    ex.resolve_dtype(dtype)
    bench = {
        "length": length,
        "channels": check_int("channels", channels, 1),
        "batch": check_int("batch", batch, 1),
        "backend": ex,
        "dtype": dtype_name(dtype),
        "repeats": check_int("repeats", repeats, 1),
    }
    k_us = _best_of([(k, PlanSpec("continuous", direct_below=k)) for k in ks], **bench)
    e_us = _best_of([(e, PlanSpec("epoched", epoch=e)) for e in es], **bench) if es else {}
    k_best = min(k_us, key=k_us.__getitem__)
    r_specs = [(r, PlanSpec("reuse", radix=r, direct_below=k_best)) for r in rs]
    r_us = _best_of(r_specs, **bench) if rs else {}
    result = TuningResult(
        **Target(ex.name, device_name(ex), dtype_name(dtype), batch, channels).head(),
        length=length,
        direct_below=k_best,
        direct_below_us=k_us,
        epoch=min(e_us, key=e_us.__getitem__) if e_us else None,
        epoch_us=e_us,
        path=cache_path() if store else None,
        key=cache_key(ex, dtype),
        radix=min(r_us, key=r_us.__getitem__) if r_us else None,
        radix_us=r_us,
    )
    if result.path is not None:
        _write_entry(result.key, _entry(result, library_versions(ex), repeats), result.path)
    return result


def _entry(result: TuningResult, versions: Mapping[str, str], repeats: int) -> dict[str, Any]:
    """The update of a tuning-file entry for one width (and length, for the epoch)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    measured = {"length": result.length, "repeats": repeats, "measured_at": when}
    timings = {
        name: {str(k): _round(v) for k, v in us.items()}
        for name, us in (
            ("direct_below", result.direct_below_us),
            ("epoch", result.epoch_us),
            ("radix", result.radix_us),
        )
    }
    width = str(result.width)
    entry: dict[str, Any] = {
        **result.head(),
        "versions": dict(versions),
        "direct_below": {
            width: {
                "value": result.direct_below,
                "us_per_token": timings["direct_below"],
                **measured,
            }
        },
    }
    if result.radix is not None:
        entry["radix"] = {
            width: {"value": result.radix, "us_per_token": timings["radix"], **measured}
        }
    if result.epoch is not None:
        where = f"{width}/{result.length}"
        entry["epoch"] = {
            where: {"value": result.epoch, "us_per_token": timings["epoch"], **measured}
        }
    return entry


def _round(us: float) -> float:
    """µs per token to four significant digits (what the file keeps)."""
    return float(f"{us:.4g}") if math.isfinite(us) else us
