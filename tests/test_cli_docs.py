"""docs/cli.md documents every option and choice of every ``futurefill`` subcommand.

Each subcommand has a section headed ``## `futurefill NAME` ``; every long option its argparse
parser defines must appear in that section as `` `--option`` ``-style text, and so must every
value an option offers as a choice (``--schedule`` of ``futurefill plan``: all the schedules).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from futurefill.cli import build_parser

CLI_DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def section(name: str) -> str:
    """The text of docs/cli.md from ``## `futurefill NAME` `` to the next ``## `` heading."""
    text = CLI_DOCS.read_text(encoding="utf-8")
    match = re.search(rf"^## `futurefill {re.escape(name)}`\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"docs/cli.md has no section '## `futurefill {name}`'"
    return match.group(1)


def mentions(text: str, word: str) -> bool:
    """Whether ``word`` occurs in ``text`` as a whole option or value."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


@pytest.mark.parametrize("name", sorted(subparsers()))
def test_every_option_and_choice_is_documented(name: str) -> None:
    text = section(name)
    actions = [a for a in subparsers()[name]._actions if not isinstance(a, argparse._HelpAction)]
    options = [o for a in actions for o in a.option_strings if o.startswith("--")]
    assert options, name
    missing = [o for o in options if not mentions(text, o)]
    choices = [str(c) for a in actions if a.option_strings for c in (a.choices or ())]
    missing += [c for c in choices if not mentions(text, c)]
    assert not missing, f"docs/cli.md's section on futurefill {name} lacks {missing}"


def test_mentions_matches_whole_options_only() -> None:
    assert mentions("| `--slack-from S` |", "--slack-from")
    assert not mentions("| `--slack-from-x` |", "--slack-from")
    assert not mentions("--prompt-length", "--prompt")
