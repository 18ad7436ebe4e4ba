"""Shipped and stored defaults that executors read: the ``direct_below`` crossover and the
``reuse`` radix.

Executors consult a value stored by :func:`futurefill.tune` first (:func:`stored_value`, in the
user's cache directory: ``$XDG_CACHE_HOME/futurefill/tuning.json``, else
``~/.cache/futurefill/tuning.json``) and fall back to the measured table they ship
(:class:`ShippedTable`, one JSON file per backend package). The file holds one entry per
backend, device, dtype and set of library versions, so that an upgrade of NumPy or of
futurefill is measured afresh rather than trusted. ``FUTUREFILL_NO_TUNING=1``, or
``tuned=False`` where a call takes it, turns the stored values off. Every choice is exact: it
only changes which pairs are summed directly and which by FFT.

The measuring half (:func:`futurefill.tune`) lives in :mod:`futurefill.measure.tuning`; this
module imports nothing from it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import sys
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ._labels import device_name, dtype_name
from ._registry import BACKEND_LIBRARIES
from .executor import Executor

__all__ = [
    "CACHE_FILE",
    "ENV_NO_TUNING",
    "ShippedTable",
    "TunedCrossover",
    "cache_key",
    "cache_path",
    "default_direct_below",
    "library_versions",
    "read_cache",
    "stored_value",
    "tuning_enabled",
]

#: Environment variable that turns the stored tuning off (``1``, ``true`` or ``yes``).
ENV_NO_TUNING = "FUTUREFILL_NO_TUNING"
#: Name of the cache file in the cache directory.
CACHE_FILE = "tuning.json"
#: Version of the cache file's layout; files of another version are ignored.
FORMAT = 1
#: Candidates of :func:`tune` for ``direct_below``.
DIRECT_BELOW_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Radices of the ``reuse`` schedule that ``futurefill tune --radices`` times by default.
DEFAULT_RADICES = (2, 4, 8, 16)


#: What a stored value must be, per parameter (others are ignored with a warning).
_STORED: dict[str, tuple[str, Any]] = {
    "direct_below": ("a power of two >= 1", lambda v: v & (v - 1) == 0),
    "radix": ("an int >= 2", lambda v: v >= 2),
    "epoch": ("an int >= 1", lambda v: True),
}


# ---------------------------------------------------------------------- where and what
def tuning_enabled(tuned: bool = True) -> bool:
    """Whether stored tuning is used: ``tuned`` and ``FUTUREFILL_NO_TUNING`` not set."""
    flag = os.environ.get(ENV_NO_TUNING, "").strip().lower()
    return bool(tuned) and flag not in ("1", "true", "yes", "on")


def cache_path() -> Path:
    """The tuning file: ``$XDG_CACHE_HOME/futurefill/tuning.json``, else under ``~/.cache``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "futurefill" / CACHE_FILE


def library_versions(executor: Executor) -> dict[str, str]:
    """Versions that key a backend's tuning: Python, futurefill, NumPy and its array library."""
    import numpy

    from . import __version__

    versions = {
        "python": platform.python_version(),
        "futurefill": __version__,
        "numpy": numpy.__version__,
    }
    for name in BACKEND_LIBRARIES.get(executor.name, ()):  # the backend's array library
        module = sys.modules.get(name)
        versions[name] = str(getattr(module, "__version__", "unknown"))
    return versions


def cache_key(executor: Executor, dtype: Any) -> str:
    """The key of one entry of the tuning file: backend, device, dtype and library versions."""
    versions = ",".join(f"{k}={v}" for k, v in sorted(library_versions(executor).items()))
    return f"{executor.name}|{device_name(executor)}|{dtype_name(dtype)}|{versions}"


# ---------------------------------------------------------------------- reading and writing
@functools.lru_cache(maxsize=8)
def _parse(path: str, stamp: tuple[int, int]) -> dict[str, Any]:
    """The entries of the tuning file at ``path`` as of ``stamp`` (mtime and size)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        warnings.warn(
            f"futurefill: ignoring the unreadable tuning file {path} ({exc}); "
            "delete it or run 'futurefill tune' again",
            RuntimeWarning,
            stacklevel=4,
        )
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def read_cache(path: Path | None = None) -> dict[str, Any]:
    """The entries of the tuning file (empty when there is none or it cannot be read)."""
    path = cache_path() if path is None else path
    try:
        info = path.stat()
    except OSError:
        return {}
    return _parse(str(path), (info.st_mtime_ns, info.st_size))


def _write_entry(key: str, update: Mapping[str, Any], path: Path) -> None:
    """Merge ``update`` into entry ``key`` of the file at ``path``, replaced atomically."""
    entries = dict(read_cache(path))
    entry = dict(entries.get(key, {}))
    for name, value in update.items():
        if isinstance(value, Mapping) and isinstance(entry.get(name), Mapping):
            entry[name] = {**entry[name], **value}
        else:
            entry[name] = value
    entries[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": FORMAT, "entries": entries}, indent=1, sort_keys=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tuning-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def stored_value(
    executor: Executor,
    name: str,
    dtype: Any,
    width: int,
    *,
    length: int | None = None,
    tuned: bool = True,
) -> int | None:
    """The tuned parameter ``name`` stored for this executor, dtype and width.

    Parameters
    ----------
    executor : Executor
        The backend (and device) it was tuned on.
    name : {"direct_below", "radix", "epoch"}
        The parameter.
    dtype : str or dtype
        The working precision.
    width : int
        ``batch * channels``.
    length : int, optional
        For ``"epoch"``: the number of steps it was tuned for (epochs are stored per length).
    tuned : bool
        ``False`` returns ``None`` at once.

    Returns
    -------
    int or None
        ``None`` when tuning is off (``tuned=False`` or ``FUTUREFILL_NO_TUNING``) or nothing was
        stored for exactly this backend, device, dtype, library versions, width (and length).
        A stored value the parameter cannot take (``direct_below: 3``, ``radix: 1``, ``0``,
        text) is ignored too, with a ``RuntimeWarning`` that names the file and the entry.
    """
    if not tuning_enabled(tuned):
        return None
    key = cache_key(executor, dtype)
    entry = read_cache().get(key, {})
    table = entry.get(name, {}) if isinstance(entry, dict) else {}
    where = str(width) if length is None else f"{width}/{length}"
    found = table.get(where) if isinstance(table, dict) else None
    if not isinstance(found, dict) or "value" not in found:
        return None
    value = found["value"]
    rule, check = _STORED.get(name, ("a positive int", lambda v: True))
    if isinstance(value, int) and not isinstance(value, bool) and value > 0 and check(value):
        return value
    warnings.warn(
        f"futurefill: ignoring {name} = {value!r} stored for width {where} under "
        f"{key!r} in the tuning file {cache_path()}: it must be {rule}; run 'futurefill "
        "tune' again or delete the file",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


# ---------------------------------------------------------------------- shipped tables
@dataclass(frozen=True)
class ShippedTable:
    """A backend's measured ``direct_below`` table, shipped as ``crossover.json`` in its package.

    ``direct_below`` maps ``"device/dtype"`` (either may be ``"*"``) to rows ``[max width,
    direct_below]`` in increasing width, the last with ``null``: no limit. ``measured`` records
    how the table was measured (command, conditions, the timings).
    """

    backend: str
    direct_below: Mapping[str, tuple[tuple[int | None, int], ...]]
    measured: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, package: str, resource: str = "crossover.json") -> ShippedTable:
        """Read ``resource`` of ``package`` (with :mod:`importlib.resources`)."""
        data = json.loads(resources.files(package).joinpath(resource).read_text("utf-8"))
        rows = {
            key: tuple((None if lim is None else int(lim), int(k0)) for lim, k0 in table)
            for key, table in data["direct_below"].items()
        }
        return cls(backend=data["backend"], direct_below=rows, measured=data.get("measured", {}))

    def lookup(self, device: str, dtype: Any, width: int) -> int:
        """``direct_below`` for ``width = batch * channels`` on a ``device`` kind (``"cpu"``,
        ``"cuda"``) and ``dtype``."""
        name = dtype_name(dtype)
        for key in (f"{device}/{name}", f"{device}/*", f"*/{name}", "*/*"):
            if key in self.direct_below:
                table = self.direct_below[key]
                return next(k0 for limit, k0 in table if limit is None or width <= limit)
        raise KeyError(f"the {self.backend} table has no row for {device}/{name}")


def default_direct_below(
    executor: Executor,
    shipped: ShippedTable,
    *,
    batch: int,
    channels: int,
    dtype: Any,
    device: str = "cpu",
    tuned: bool = True,
) -> int:
    """What an executor's ``default_direct_below`` returns: the stored tuning for this width,
    else the shipped table's value for the ``device`` kind."""
    width = batch * channels
    stored = stored_value(executor, "direct_below", dtype, width, tuned=tuned)
    return stored if stored is not None else shipped.lookup(device, dtype, width)


class TunedCrossover:
    """Mixin of executors whose ``direct_below`` default is tuned (put it before the executor
    base class): the stored tuning for the width, else the class's :attr:`shipped` table.

    ``tuned`` (an instance attribute, ``True`` unless the constructor sets it) and
    ``FUTUREFILL_NO_TUNING=1`` turn the stored tuning off.
    """

    #: The measured table shipped with the backend (:meth:`ShippedTable.load`).
    shipped: ShippedTable
    tuned: bool = True

    def device_kind(self) -> str:
        """The row of :attr:`shipped` to read: ``"cpu"`` unless the executor says otherwise."""
        return "cpu"

    def default_direct_below(
        self, batch: int, channels: int, dtype: Any, *, tuned: bool | None = None
    ) -> int:
        """The stored tuning for ``batch * channels``, else the shipped measured table.

        ``tuned=False`` skips the stored tuning; ``None`` follows the executor's ``tuned``.
        """
        return default_direct_below(
            self,  # type: ignore[arg-type]  # mixed into an Executor
            self.shipped,
            batch=batch,
            channels=channels,
            dtype=dtype,
            device=self.device_kind(),
            tuned=self.tuned if tuned is None else tuned,
        )

    def default_radix(self, batch: int, channels: int, dtype: Any) -> int | None:
        """The ``reuse`` schedule's radix stored by ``futurefill tune --radices`` for
        ``batch * channels``, or ``None`` (the schedule's own default then applies)."""
        return stored_value(
            self,  # type: ignore[arg-type]  # mixed into an Executor
            "radix",
            dtype,
            batch * channels,
            tuned=self.tuned,
        )
