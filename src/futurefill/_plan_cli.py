"""``futurefill plan``: print a schedule's cost table, check it and draw its tiling.

The command-line entry point hooks :func:`add_arguments` and :func:`run` into its ``plan``
subcommand; :func:`main` runs the command on its own (``python -m futurefill._plan_cli``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .plan import SCHEDULES, PlanError, make_plan

__all__ = ["add_arguments", "main", "run"]

DESCRIPTION = (
    "Print the cost table of a generation schedule (tasks per FFT size, FLOPs, state, worst "
    "step); optionally prove it exact and causal (--validate) and draw how its tasks tile the "
    "input x output triangle (--plot)."
)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``futurefill plan`` to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A parser or a subcommand parser.

    Returns
    -------
    argparse.ArgumentParser
        The same parser.
    """
    parser.add_argument(
        "--length", "-L", type=int, required=True, help="number of online steps (tokens)"
    )
    parser.add_argument(
        "--schedule",
        "-s",
        choices=SCHEDULES,
        default="continuous",
        help="generation schedule (default: %(default)s)",
    )
    parser.add_argument(
        "--prompt", "-P", type=int, default=0, help="prompt length given by prefill (default: 0)"
    )
    parser.add_argument(
        "--epoch",
        type=int,
        default=None,
        help="epoch length of the epoched schedule (default: int(sqrt(L*log2 L)))",
    )
    parser.add_argument(
        "--direct-below",
        type=int,
        default=None,
        help="continuous schedule: blocks smaller than this power of two are summed directly "
        "(default: 1)",
    )
    parser.add_argument(
        "--channels", "-C", type=int, default=1, help="channels for the cost table (default: 1)"
    )
    parser.add_argument(
        "--batch", "-B", type=int, default=1, help="batch size for the cost table (default: 1)"
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="check that every (input, output) pair is covered exactly once and causally",
    )
    parser.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help="draw the tiling to PATH (e.g. plan.png or plan.svg; needs matplotlib)",
    )
    parser.add_argument(
        "--color-by",
        choices=("size", "step"),
        default="size",
        help="colour tasks by FFT size or by the step after which they run (default: size)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``futurefill plan`` with parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by a parser set up with :func:`add_arguments`.

    Returns
    -------
    int
        Exit status: 0 on success, 1 if ``--validate`` finds the plan broken, 2 for bad
        arguments.
    """
    try:
        if args.channels < 1 or args.batch < 1:
            raise ValueError("--channels and --batch must be >= 1")
        plan = make_plan(
            args.length,
            schedule=args.schedule,
            prompt=args.prompt,
            epoch=args.epoch,
            direct_below=args.direct_below,
        )
    except (TypeError, ValueError) as exc:
        print(f"futurefill plan: error: {exc}", file=sys.stderr)
        return 2
    print(plan.cost(channels=args.channels, batch=args.batch))
    status = 0
    if args.validate:
        try:
            plan.validate()
        except PlanError as exc:
            print(f"validate: FAILED: {exc}")
            status = 1
        else:
            print(
                "validate: OK (every input/output pair covered exactly once; "
                "no task reads the future)"
            )
    if args.plot:
        try:
            from .plot import _new_axes, plot_plan, save_figure
        except ImportError as exc:  # pragma: no cover - needs matplotlib missing
            print(f"futurefill plan: error: {exc}", file=sys.stderr)
            return 2
        try:
            ax = _new_axes(_figsize(plan.total, args.color_by))
            plot_plan(plan, ax=ax, color_by=args.color_by)
            save_figure(ax, args.plot)
        except ImportError as exc:
            print(f"futurefill plan: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"futurefill plan: error: cannot write {args.plot}: {exc}", file=sys.stderr)
            return 2
        print(f"plot: wrote {args.plot}")
    return status


def _figsize(total: int, color_by: str) -> tuple[float, float]:
    side = 6.5 if total <= 32 else 7.5
    return (side + (2.5 if color_by == "step" else 1.5), side)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``futurefill plan``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after ``plan``; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit status (see :func:`run`).

    Examples
    --------
    >>> from futurefill._plan_cli import main
    >>> main(["--length", "64", "--schedule", "continuous", "--validate"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(prog="futurefill plan", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
