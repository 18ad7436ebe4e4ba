"""Backend selection: executors discovered as entry-point plug-ins, chosen per process or context.

Resolution order of the backend used by a call: an explicit ``backend=`` argument, then the
innermost :func:`use_backend` context, then :func:`set_backend`'s process default, then the
``FUTUREFILL_BACKEND`` environment variable, then ``"numpy"``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .executor import Executor

__all__ = [
    "BACKEND_LIBRARIES",
    "ENTRY_POINT_GROUP",
    "BackendError",
    "get_backend",
    "list_backends",
    "refresh_backends",
    "set_backend",
    "use_backend",
]

ENTRY_POINT_GROUP = "futurefill.executors"
ENV_VAR = "FUTUREFILL_BACKEND"
DEFAULT_BACKEND = "numpy"
#: The array libraries of the built-in backends besides NumPy: a built-in backend is listed
#: when they can be found (without importing them).
BACKEND_LIBRARIES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "jax": ("jax", "jaxlib"),
    "cupy": ("cupy",),
    "array_api_strict": ("array_api_strict",),
}

BackendSpec = tuple[str, Any]  # (name, device)

_context: contextvars.ContextVar[BackendSpec | None] = contextvars.ContextVar(
    "futurefill_backend", default=None
)
_process_default: BackendSpec | None = None
_lock = threading.Lock()
_executors: dict[tuple[str, str], Executor] = {}


class BackendError(ValueError):
    """An unknown backend name or an unusable device.

    Examples
    --------
    >>> import futurefill
    >>> futurefill.get_backend("no-such-backend")
    Traceback (most recent call last):
    ...
    futurefill._registry.BackendError: unknown futurefill backend 'no-such-backend'; installed: ...
    """


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def refresh_backends() -> None:
    """Forget discovered plug-ins and cached executors (after installing a new backend).

    Examples
    --------
    >>> import futurefill
    >>> futurefill.refresh_backends()
    >>> "numpy" in futurefill.list_backends()  # found again
    True
    """
    _entry_points.cache_clear()
    _loadable.cache_clear()
    with _lock:
        _executors.clear()


def list_backends() -> list[str]:
    """Names of the backends that load here.

    A built-in backend is listed when its module and its array library can be found (they
    are not imported: listing imports neither torch nor JAX); a third-party plug-in is
    imported to see whether it loads. Registered backends that do not load (their library
    missing) are left out; naming one still says what to install.

    Returns
    -------
    list of str
        Sorted names registered under the ``futurefill.executors`` entry-point group.

    Examples
    --------
    >>> import futurefill
    >>> "numpy" in futurefill.list_backends()  # NumPy's is always there
    True
    """
    return sorted(name for name, ep in _entry_points().items() if _loadable(name, ep.value))


def _found(module: str) -> bool:
    """Whether ``module`` is imported or can be (it is not imported here)."""
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def _loadable(name: str, target: str) -> bool:
    """Whether the plug-in ``target`` (``module:attribute``) of backend ``name`` loads."""
    module = target.split(":")[0].strip()
    if name in (DEFAULT_BACKEND, *BACKEND_LIBRARIES) and module == f"futurefill_{name}":
        return all(map(_found, (module, *BACKEND_LIBRARIES.get(name, ()))))  # built in
    try:
        _entry_points()[name].load()
    except Exception:  # whatever a plug-in raises on import: it does not load
        return False
    return True


def _load_factory(name: str) -> Callable[..., Executor]:
    eps = _entry_points()
    if name not in eps:
        raise BackendError(
            f"unknown futurefill backend {name!r}; installed: {', '.join(list_backends())}"
        )
    try:
        return eps[name].load()  # type: ignore[no-any-return]
    except ModuleNotFoundError as exc:
        raise _missing_library(name, exc) from exc


def _missing_library(name: str, exc: ModuleNotFoundError) -> ImportError:
    missing = exc.name or "its array library"
    return ImportError(
        f"the futurefill backend {name!r} needs {missing!r}, which is not installed: "
        f"pip install 'futurefill[{name}]'"
    )


def _executor(name: str, device: Any) -> Executor:
    key = (name, repr(device))
    with _lock:
        found = _executors.get(key)
    if found is not None:
        return found
    factory = _load_factory(name)
    try:
        executor = factory(device=device)
    except ModuleNotFoundError as exc:
        raise _missing_library(name, exc) from exc
    with _lock:
        return _executors.setdefault(key, executor)


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a backend is named by a string, got {type(name).__name__}")
    return name


def get_backend(name: str | Executor | None = None, *, device: Any = None) -> Executor:
    """The executor a call would use.

    Parameters
    ----------
    name : str or Executor, optional
        Explicit choice; wins over contexts, the process default and ``FUTUREFILL_BACKEND``.
        An executor instance is returned as is.
    device : optional
        Device for an explicitly named backend (e.g. ``"cuda"`` for torch).

    Returns
    -------
    Executor

    Examples
    --------
    >>> import futurefill
    >>> executor = futurefill.get_backend("numpy")
    >>> executor.name
    'numpy'
    >>> futurefill.get_backend(executor) is executor  # an instance is returned as is
    True
    """
    if name is not None and not isinstance(name, str):
        if isinstance(name, Executor):
            return name
        raise TypeError(f"backend must be a name or an Executor, got {type(name).__name__}")
    if name is not None:
        return _executor(name, device)
    spec = _context.get() or _process_default
    if spec is None:
        env = os.environ.get(ENV_VAR)
        if env:
            if env not in _entry_points():
                raise BackendError(
                    f"{ENV_VAR}={env!r} names no installed backend; installed: "
                    f"{', '.join(list_backends())}"
                )
            spec = (env, None)
        else:
            spec = (DEFAULT_BACKEND, None)
    return _executor(*spec)


def set_backend(name: str, *, device: Any = None) -> None:
    """Set the process-wide default backend.

    The backend is loaded at once, so a missing library or a bad device fails here, with a
    message saying what to install, and the previous default stays in force.

    Parameters
    ----------
    name : str
        One of :func:`list_backends`.
    device : optional
        Device for its arrays (e.g. ``"cuda"`` for torch).

    Examples
    --------
    >>> import futurefill
    >>> futurefill.set_backend("numpy")
    >>> futurefill.get_backend().name
    'numpy'
    """
    global _process_default
    _executor(_check_name(name), device)
    _process_default = (name, device)


@contextlib.contextmanager
def use_backend(name: str, *, device: Any = None) -> Iterator[Executor]:
    """Use a backend inside a ``with`` block (context-local: safe across threads and tasks).

    Parameters
    ----------
    name : str
        One of :func:`list_backends`.
    device : optional
        Device for its arrays.

    Yields
    ------
    Executor
        The executor in force inside the block.

    Examples
    --------
    >>> import futurefill
    >>> with futurefill.use_backend("numpy") as executor:
    ...     futurefill.get_backend() is executor
    True
    """
    executor = _executor(_check_name(name), device)
    token = _context.set((name, device))
    try:
        yield executor
    finally:
        _context.reset(token)


def _reset_process_default() -> None:
    """Forget :func:`set_backend`'s choice (for tests)."""
    global _process_default
    _process_default = None
