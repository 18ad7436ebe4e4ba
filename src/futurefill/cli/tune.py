"""Measure the best direct_below (and epoch, radix) on this machine and store it for later runs.

Times the continuous schedule for every candidate direct_below (with --epochs, the epoched
schedule for candidate epochs; with --radices, the reuse schedule for candidate radices) on
one backend, device, dtype and width (batch x channels), each a generation of --length steps
with feedback, round-robin, best of --repeats rounds after a warm-up. The fastest direct_below
(and radix) is stored in the user's cache directory ($XDG_CACHE_HOME/futurefill/tuning.json,
else ~/.cache/futurefill/tuning.json), under the backend, device, dtype and library versions,
and executors use it by default from then on for that width; FUTUREFILL_NO_TUNING=1 turns the
stored values off. --show prints what is stored.

The defaults (numpy, D=64, L=16384, nine candidates, 3 repeats) take about 20 seconds on a
two-core machine; --epochs adds about half a minute, --radices about as much.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..defaults import DEFAULT_RADICES, DIRECT_BELOW_CANDIDATES, cache_path, read_cache
from ..measure.tuning import TuningResult, tune
from ..plan import MAX_POSITIONS
from ._args import (
    UsageError,
    add_choice,
    add_options,
    check_streams,
    count,
    lengths,
    resolve_backend,
)
from ._table import print_table

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``futurefill tune`` to ``parser``."""
    parser.add_argument(
        "--backend", help="backend (default: $FUTUREFILL_BACKEND, else numpy)", default=None
    )
    parser.add_argument(
        "--device", default=None, help="device of the backend, e.g. cuda:0 (default: its own)"
    )
    add_options(
        parser,
        [
            ("--channels", count(1), 64, "depthwise channels D"),
            ("--batch", count(1), 1, "batch size B (the width tuned is B x D)"),
            ("--length", count(2, MAX_POSITIONS), 16384, "steps of each timed generation, L"),
            ("--repeats", count(1), 3, "timed rounds after the warm-up; each keeps its best"),
        ],
    )
    add_choice(parser, "--dtype", ("float64", "float32"), "working precision")
    parser.add_argument(
        "--candidates",
        type=lengths,
        default=list(DIRECT_BELOW_CANDIDATES),
        metavar="K1,K2,...",
        help="direct_below values to time, powers of two (default: 1,2,4,...,256)",
    )
    parser.add_argument(
        "--epochs",
        type=lengths,
        nargs="?",
        const=[],
        default=None,
        metavar="E1,E2,...",
        help="also time the epoched schedule for these epochs (without a list: the default "
        "int(sqrt(L log2 L)) times 1/4, 1/2, 1, 2 and 4)",
    )
    parser.add_argument(
        "--radices",
        type=lengths,
        nargs="?",
        const=[],
        default=None,
        metavar="R1,R2,...",
        help="also time the reuse schedule for these radices, with the direct_below found "
        "fastest, and store the fastest as its default (without a list: 2,4,8,16)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="measure and print, but store nothing"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument(
        "--show", action="store_true", help="instead: print what is stored, measure nothing"
    )


def _check(args: argparse.Namespace) -> None:
    bad = [k for k in args.candidates if k & (k - 1)]
    if bad:
        raise UsageError(f"--candidates must be powers of two, got {bad}")
    if args.radices and min(args.radices) < 2:
        raise UsageError(f"--radices must be at least 2, got {args.radices}")
    if args.epochs and max(args.epochs) > args.length:
        raise UsageError(f"--epochs must be at most --length {args.length}, got {args.epochs}")
    check_streams(args.length, args.channels, streams=len(args.candidates), batch=args.batch)


def _show(as_json: bool) -> int:
    path = cache_path()
    entries = read_cache(path)
    if as_json:
        json.dump({"path": str(path), "entries": entries}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    rows = []
    for entry in entries.values():
        head = (entry.get("backend", "?"), entry.get("device", "?"), entry.get("dtype", "?"))
        for width, found in sorted(entry.get("direct_below", {}).items(), key=_width_order):
            rows.append((*head, "direct_below", width, str(found.get("value"))))
        for width, found in sorted(entry.get("radix", {}).items(), key=_width_order):
            rows.append((*head, "radix", width, str(found.get("value"))))
        for where, found in sorted(entry.get("epoch", {}).items()):
            rows.append((*head, "epoch", where, str(found.get("value"))))
    print_table(
        f"stored tuning: {path}",
        ("backend", "device", "dtype", "parameter", "width (/L)", "value"),
        rows,
        caption="used when the backend, device, dtype and library versions match",
        left=("backend", "device", "dtype", "parameter"),
    )
    return 0


def _width_order(item: tuple[str, object]) -> int:
    return int(item[0]) if item[0].isdigit() else 0


def _print(result: TuningResult) -> None:
    print(
        f"{result.backend} ({result.device}, {result.dtype}), B x D = {result.batch} x "
        f"{result.channels}, L = {result.length}; * marks the fastest"
    )
    for name, timings, best in (
        ("direct_below", result.direct_below_us, result.direct_below),
        ("epoch", result.epoch_us, result.epoch),
        ("radix", result.radix_us, result.radix),
    ):
        if timings:
            rows = [
                (str(k) + (" *" if k == best else ""), f"{us:.2f}") for k, us in timings.items()
            ]
            print_table(f"{name}: µs per token", (name, "µs/token"), rows)
    if result.path is None:
        print("not stored (--dry-run)")
    else:
        print(f"stored in {result.path} for width {result.width}")


def run(args: argparse.Namespace) -> int:
    """Run ``futurefill tune`` with parsed arguments; return the exit status."""
    if args.show:
        return _show(args.json)
    _check(args)
    executor = resolve_backend(args.backend, args.dtype, device=args.device)
    result = tune(
        executor,
        dtype=args.dtype,
        batch=args.batch,
        channels=args.channels,
        length=args.length,
        candidates=args.candidates,
        epochs=None if args.epochs == [] else (args.epochs or ()),
        radices=DEFAULT_RADICES if args.radices == [] else (args.radices or ()),
        repeats=args.repeats,
        store=not args.dry_run,
    )
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        _print(result)
    return 0
