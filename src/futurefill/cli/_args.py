"""Argument checks of the subcommands: bad arguments are one line on stderr and exit status 2.

Every check runs before any long work: the ``type=`` functions below when argparse parses,
:func:`resolve_backend` first thing in a command's ``run``. They raise
``argparse.ArgumentTypeError`` (argparse names the option) or :class:`UsageError`.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .._registry import get_backend
from ..executor import Executor
from ..memory import available_memory, format_bytes
from ..plan import MAX_POSITIONS, PlanSpec, list_schedules, schedule_info

__all__ = [
    "CommandParser",
    "UsageError",
    "add_choice",
    "add_clock",
    "add_options",
    "as_usage_error",
    "check_positions",
    "check_streams",
    "clock_timer",
    "count",
    "lengths",
    "plot_path",
    "positions",
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
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")

    def unrecognized(self, extras: Sequence[str]) -> NoReturn:
        """Report arguments this parser does not take, suggesting the closest option."""
        options = [o for action in self._actions for o in action.option_strings]
        hints = []
        for arg in extras:
            if arg.startswith("-"):
                close = difflib.get_close_matches(arg.split("=", 1)[0], options, n=1, cutoff=0.6)
                if close:
                    hints.append(f"{arg}: did you mean {close[0]}?")
        hint = f" ({'; '.join(hints)})" if hints else ""
        self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


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


def add_clock(parser: argparse.ArgumentParser) -> None:
    """Add ``--clock {wall,cpu}``: the seconds a benchmark measures (see :func:`clock_timer`)."""
    add_choice(
        parser,
        "--clock",
        ("wall", "cpu"),
        "seconds measured: wall clock, or this process's CPU time (on a shared CPU: the work "
        "without the waits for a core; single-threaded CPU runs only, OPENBLAS_NUM_THREADS=1)",
    )


def clock_timer(args: argparse.Namespace) -> Callable[[], float]:
    """The timer of ``--clock``: ``time.process_time`` for ``cpu``, else ``time.perf_counter``."""
    return time.process_time if args.clock == "cpu" else time.perf_counter


@contextlib.contextmanager
def as_usage_error() -> Iterator[None]:
    """Turn a ``TypeError``, ``ValueError`` or ``MemoryError`` raised inside into a
    :class:`UsageError`: for library calls that check a combination of arguments (or the
    memory it would take) before any long work."""
    try:
        yield
    except (TypeError, ValueError, MemoryError) as exc:
        raise UsageError(_one_line(exc)) from None


def check_positions(**sizes: int) -> None:
    """Refuse options whose positions add up beyond what a plan holds (2**30); the keywords
    are option names without their dashes (``model_prompt`` is ``--model-prompt``)."""
    if sum(sizes.values()) > MAX_POSITIONS:
        given = " + ".join(f"--{name.replace('_', '-')} {n}" for name, n in sizes.items())
        raise UsageError(f"{given} is above the {MAX_POSITIONS} (2**30) positions a plan holds")


def check_streams(length: int, channels: int, *, streams: int, batch: int = 1) -> None:
    """Refuse a run whose filters and states would not fit, before any work.

    A lower bound: the host filters (float64), their copy on the backend and, per stream
    (``OnlineConv``), its own copy and a buffer of as many values; the library checks the
    rest when it allocates.
    """
    need = 8 * channels * length * (2 + streams * (1 + batch))
    available = available_memory()
    if available is not None and need > available:
        raise UsageError(
            f"--channels {channels} x --length {length}"
            + (f" x --batch {batch}" if batch > 1 else "")
            + f": the filters and {streams} states need at least {format_bytes(need)}, but only "
            f"{format_bytes(available)} is available"
        )


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= minimum`` (and ``<= maximum``)."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


#: An argparse ``type`` for numbers of positions (steps, prompts, tokens): ``1 .. 2**30``.
positions = count(1, MAX_POSITIONS)


def lengths(text: str) -> list[int]:
    """An argparse ``type``: comma-separated integers in ``1 .. 2**30``, e.g. ``1024,4096``."""
    items = [item.strip() for item in text.split(",")]
    values = [_int(item) for item in items if item]
    if not values or len(values) != len(items) or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 1024,4096, got {text!r}"
        )
    if max(values) > MAX_POSITIONS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_POSITIONS}, got {max(values)}")
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


def _one_line(exc: Exception | str) -> str:
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
