"""The parser of every subcommand: bad arguments are one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["CommandParser", "UsageError"]


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
