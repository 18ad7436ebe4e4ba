"""The one table renderer of the command line (rich), and the console it prints to."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["console", "print_or_json", "print_table"]

#: Narrowest console: tables are not squeezed in pipes and CI logs.
MIN_WIDTH = 120


def console(*, stderr: bool = False, width: int = 0) -> Console:
    """A console at least :data:`MIN_WIDTH` (and ``width``) columns wide (on stdout, or
    stderr)."""
    columns = max(shutil.get_terminal_size().columns, MIN_WIDTH, width)
    return Console(width=columns, stderr=stderr)


def print_table(
    title: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    caption: str | None = None,
    left: Collection[str] = (),
) -> None:
    """Print a table of text cells on stdout.

    Parameters
    ----------
    title : str
        Title above the table.
    headers : sequence of str
        Column names.
    rows : iterable of sequences of str
        Cells, already formatted, one sequence per row.
    caption : str, optional
        Text under the table (what the columns mean).
    left : collection of str
        Columns aligned left (text); the others are aligned right (numbers).
    """
    table = Table(title=title, caption=caption)
    for name in headers:
        table.add_column(name, justify="left" if name in left else "right")
    rows = [list(row) for row in rows]
    for row in rows:
        table.add_row(*row)
    # Wide enough that no cell is cut: the widest cell of every column plus the borders.
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    console(width=sum(widths) + 3 * len(widths) + 1).print(table)


def print_or_json(
    results: Sequence[Any], as_json: bool, print_rows: Callable[[Sequence[Any]], None]
) -> None:
    """With ``--json``, the results' ``as_dict()`` as a JSON list on stdout; else the table
    ``print_rows(results)`` prints."""
    if as_json:
        json.dump([r.as_dict() for r in results], sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_rows(results)
