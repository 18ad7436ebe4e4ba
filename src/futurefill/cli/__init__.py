"""The ``futurefill`` command: one module per subcommand, dispatched by :func:`main`.

Every subcommand module (``demo``, ``bench``, ``plan``, ``bench_model`` for ``bench-model``,
``bench_pool`` for ``bench-pool``, ``bench_serve`` for ``bench-serve``, ``tune``) has
``add_arguments(parser)`` and ``run(args) -> int``; its docstring is its help: the first line in
``futurefill --help``, the rest as the description of ``futurefill COMMAND --help`` (plain text,
no markup). A bad argument, whether argparse or ``run`` finds it (:class:`UsageError`), is one
line on stderr, ``futurefill COMMAND: error: ...``, and exit status 2; so is an unrecognized
option (with the closest one the command takes) and a size the library refuses
(``MemoryError``: the estimates of :mod:`futurefill.memory` come before any allocation).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import ModuleType

from .. import __version__
from . import bench, bench_model, bench_pool, bench_serve, demo, plan, tune
from ._args import CommandParser, UsageError

__all__ = ["COMMANDS", "UsageError", "build_parser", "main"]

#: The subcommands, in the order of ``futurefill --help``.
COMMANDS = (demo, bench, plan, bench_model, bench_pool, bench_serve, tune)

DESCRIPTION = (
    "Exact, fast autoregressive generation from long-convolution sequence models (FutureFill): "
    "demos, benchmarks, plans and tuning. 'futurefill COMMAND --help' lists a command's "
    "options."
)


def build_parser() -> CommandParser:
    """The ``futurefill`` argument parser, one subparser per command."""
    parser = CommandParser(prog="futurefill", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"futurefill {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        name, (summary, _, details) = _name(command), (command.__doc__ or "").partition("\n")
        description = f"{summary}\n\n{details.strip()}" if details.strip() else summary
        sub_parser = sub.add_parser(
            name,
            help=summary.rstrip("."),
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=command.run, _parser=sub_parser)
    return parser


def _name(command: ModuleType) -> str:
    """``bench_model`` -> ``bench-model``."""
    return command.__name__.rsplit(".", 1)[-1].replace("_", "-")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``futurefill`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after ``futurefill``; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit status: 0 on success, 1 when a check the command makes fails (``plan
        --validate``, ``bench-model`` or ``bench-serve`` tokens that differ), 2 for bad
        arguments.
    """
    parser = build_parser()
    args, extras = parser.parse_known_args(None if argv is None else list(argv))
    command: CommandParser = args._parser
    if extras:  # reported by the subcommand's parser, which names the closest option
        command.unrecognized(extras)
    try:
        return int(args._run(args))
    except UsageError as exc:
        command.error(str(exc))
    except MemoryError as exc:  # a size the library refused before allocating it
        command.error(str(exc) or "out of memory")
