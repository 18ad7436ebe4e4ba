"""Print (and draw) a schedule's tasks and cost.

Prints the cost table of a generation schedule (tasks per FFT size, FLOPs, state, worst
step); optionally proves it exact and causal (--validate) and draws how its tasks tile the
input x output triangle (--plot).
"""

from __future__ import annotations

import argparse

from ..plan import MAX_POSITIONS, SCHEDULES, PlanError, make_plan
from ._args import UsageError, add_choice, as_usage_error, count, plot_path, positions

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``futurefill plan`` to ``parser``."""
    parser.add_argument(
        "--length", "-L", type=positions, required=True, help="number of online steps (tokens)"
    )
    parser.add_argument(
        "--schedule",
        "-s",
        choices=SCHEDULES,
        default="continuous",
        help="generation schedule (default: %(default)s)",
    )
    parser.add_argument(
        "--prompt",
        "-P",
        type=count(0, MAX_POSITIONS),
        default=0,
        help="prompt length given by prefill (default: 0)",
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
        help="continuous, deadline and reuse schedules: blocks smaller than this are summed "
        "directly (default: 1; a power of two but for reuse)",
    )
    parser.add_argument(
        "--slack-from",
        type=int,
        default=None,
        help="deadline schedule: smallest tile given slack, a power of two (default: 512)",
    )
    parser.add_argument(
        "--radix",
        type=int,
        default=None,
        help="reuse schedule: growth of the block sizes from level to level (default: 8)",
    )
    parser.add_argument(
        "--channels",
        "-C",
        type=count(1),
        default=None,
        help="channels for the cost table (default: figures per channel and batch row)",
    )
    parser.add_argument(
        "--batch",
        "-B",
        type=count(1),
        default=None,
        help="batch size for the cost table (default: figures per channel and batch row)",
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="check that every (input, output) pair is covered exactly once and causally",
    )
    parser.add_argument(
        "--plot",
        type=plot_path,
        metavar="PATH",
        default=None,
        help="draw the tiling to PATH (e.g. plan.png or plan.svg; needs matplotlib)",
    )
    add_choice(
        parser,
        "--color-by",
        ("size", "step"),
        "colour tasks by FFT size or by the step after which they run",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``futurefill plan`` with parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by a parser set up with :func:`add_arguments`.

    Returns
    -------
    int
        Exit status: 0 on success, 1 if ``--validate`` finds the plan broken.

    Raises
    ------
    UsageError
        For bad arguments (the command reports it and exits with status 2).
    """
    with as_usage_error():
        plan = make_plan(
            args.length,
            schedule=args.schedule,
            prompt=args.prompt,
            epoch=args.epoch,
            direct_below=args.direct_below,
            slack_from=args.slack_from,
            radix=args.radix,
        )
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
        from ..measure.plot import _new_axes, plot_plan, save_figure

        try:
            ax = _new_axes(_figsize(plan.total, args.color_by))
            plot_plan(plan, ax=ax, color_by=args.color_by)
            save_figure(ax, args.plot)
        except OSError as exc:
            raise UsageError(f"--plot {args.plot}: {exc}") from None
        print(f"plot: wrote {args.plot}")
    return status


def _figsize(total: int, color_by: str) -> tuple[float, float]:
    side = 6.5 if total <= 32 else 7.5
    return (side + (2.5 if color_by == "step" else 1.5), side)
