"""Argument checks of the subcommands: bad arguments are one line on stderr and exit status 2.

Every check runs before any long work: the ``type=`` functions below when argparse parses,
:func:`resolve_backend` first thing in a command's ``run``. They raise
``argparse.ArgumentTypeError`` (argparse names the option) or :class:`UsageError`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from .._registry import get_backend
from ..executor import Executor
from ..plan import PlanSpec, list_schedules, schedule_info

__all__ = [
    "CommandParser",
    "UsageError",
    "add_choice",
    "add_options",
    "as_usage_error",
    "count",
    "lengths",
    "plot_path",
    "positive_real",
    "resolve_backend",
    "schedule_names",
]


class UsageError(ValueError):
    """A bad command-line argument found after parsing: reported like argparse's own errors."""


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``prog: error: message``, exit status 2.

    argparse prints the whole usage before the message; one line is easier to read among a
    command's output and to match in scripts. ``prog --help`` still shows the usage.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` to stderr and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_options(
    parser: argparse.ArgumentParser, options: Iterable[tuple[str, Callable[[str], Any], Any, str]]
) -> None:
    """Add options given as ``(flag, type, default, help)``; the help ends with the default."""
    for flag, kind, default, text in options:
        parser.add_argument(flag, type=kind, default=default, help=f"{text} (default: {default})")


def add_choice(
    parser: argparse.ArgumentParser, flag: str, choices: tuple[str, ...], text: str
) -> None:
    """Add an option taking one of ``choices``, the first by default."""
    parser.add_argument(
        flag, choices=choices, default=choices[0], help=f"{text} (default: {choices[0]})"
    )


@contextlib.contextmanager
def as_usage_error() -> Iterator[None]:
    """Turn a ``TypeError`` or ``ValueError`` raised inside into a :class:`UsageError`: for
    library calls that check a combination of arguments before any long work."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        raise UsageError(_one_line(exc)) from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def count(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= minimum``."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def lengths(text: str) -> list[int]:
    """An argparse ``type``: comma-separated positive integers, e.g. ``1024,4096``."""
    items = [item.strip() for item in text.split(",")]
    values = [_int(item) for item in items if item]
    if not values or len(values) != len(items) or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 1024,4096, got {text!r}"
        )
    return values


def positive_real(text: str) -> float:
    """An argparse ``type``: a finite number ``> 0``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def schedule_names(text: str) -> tuple[str | PlanSpec, ...]:
    """An argparse ``type``: comma-separated registered schedules, each a name or
    ``name:param=value[:param=value...]`` (integer parameters, e.g. ``reuse:radix=8``)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    known = list_schedules()
    unknown = [item.split(":")[0] for item in items if item.split(":")[0] not in known]
    if unknown or not items:
        raise argparse.ArgumentTypeError(
            f"unknown schedules {unknown}; choose from {', '.join(known)}"
            if unknown
            else "name at least one schedule"
        )
    return tuple(_schedule_spec(item) for item in items)


def _schedule_spec(item: str) -> str | PlanSpec:
    name, *pairs = item.split(":")
    checks = schedule_info(name).params
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in checks:
            raise argparse.ArgumentTypeError(
                f"{item!r}: parameters are written param=value, one of "
                f"{', '.join(checks) or '(none)'} for {name}"
            )
        try:
            params[key] = checks[key](key, _int(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise argparse.ArgumentTypeError(f"{item!r}: {exc}") from None
    return PlanSpec(name, **params) if params else name


def _plot_formats() -> list[str]:
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise argparse.ArgumentTypeError(
            "plots need matplotlib, which is not installed: pip install 'futurefill[plot]'"
        ) from None
    return sorted(FigureCanvasBase.get_supported_filetypes())


def plot_path(text: str) -> str:
    """An argparse ``type``: a file a plot can be written to; its suffix names the format.

    A name without a suffix gets ``.png`` (and the command reports that name). Refused: a
    directory, an unknown format, a folder that does not exist or is not writable.
    """
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is a directory; name a file, e.g. {path / 'plot.png'}"
        )
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    formats = _plot_formats()
    if path.suffix[1:].lower() not in formats:
        raise argparse.ArgumentTypeError(
            f"cannot write {path.suffix!r} files; choose one of {', '.join(formats)}"
        )
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{folder} is not an existing directory")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{path} is not writable")
    return str(path)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def resolve_backend(name: str | None, dtype: str, device: str | None = None) -> Executor:
    """The executor called ``name`` (``FUTUREFILL_BACKEND``, else numpy, for None) on
    ``device`` (only with a name), checked to load and to compute in ``dtype``; a
    :class:`UsageError` otherwise."""
    if device is not None and name is None:
        raise UsageError("--device needs --backend")
    try:
        executor = get_backend(name, device=device)
    except (ImportError, RuntimeError, TypeError, ValueError) as exc:
        where = "" if name is None else f"--backend {name}: "
        raise UsageError(where + _one_line(exc)) from None
    try:
        executor.resolve_dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--dtype {dtype} on {executor.name}: {_one_line(exc)}") from None
    return executor
