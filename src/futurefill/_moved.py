"""Old import paths of modules that moved in 0.3, kept for one release with a warning.

``import futurefill.bench`` (and the other paths in :data:`MOVED`) still works: a finder on
:data:`sys.meta_path` answers for exactly those names with a module that forwards every
attribute to the new home and warns once, on import, with a :class:`DeprecationWarning`. The
package's own files hold no copies of the old modules.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["MOVED", "install"]

#: Old module -> its new home(s), searched in order for each attribute.
MOVED: dict[str, tuple[str, ...]] = {
    "futurefill.backends": ("futurefill.executor",),
    "futurefill.bench": ("futurefill.measure.bench",),
    "futurefill.bench_model": ("futurefill.measure.bench_model",),
    "futurefill.bench_open": ("futurefill.measure.bench_open",),
    "futurefill.calibration": ("futurefill.measure.calibration",),
    "futurefill.latency": ("futurefill.measure.latency",),
    "futurefill.plot": ("futurefill.measure.plot",),
    "futurefill.tuning": ("futurefill.defaults", "futurefill.measure.tuning"),
}


class _Forwarder(types.ModuleType):
    """A module whose attributes are those of its new homes."""

    def __init__(self, name: str, homes: Sequence[str]) -> None:
        super().__init__(name, f"Deprecated alias of {', '.join(homes)}.")
        self._homes = tuple(homes)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        for home in self._homes:
            module = importlib.import_module(home)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")

    def __dir__(self) -> list[str]:
        names: set[str] = set()
        for home in self._homes:
            names.update(dir(importlib.import_module(home)))
        return sorted(names)


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        homes = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {' and '.join(homes)} in futurefill 0.3; the old path goes "
            "away in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return _Forwarder(spec.name, homes)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install() -> None:
    """Put the finder on :data:`sys.meta_path` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
