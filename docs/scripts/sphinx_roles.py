"""Griffe extension: show Sphinx cross-reference roles of docstrings as inline code.

futurefill's numpydoc docstrings use roles such as ``:func:`futurefill.make_plan``` and
``:class:`~futurefill.plan.Plan```, which mkdocstrings would print verbatim. This extension,
loaded by ``mkdocs.yml``, rewrites each role to inline code (``~`` keeps the last name only).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|obj|exc|const):`(~?)([^`]+)`")


def _replace(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2).strip()
    if short:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRoles(Extension):
    """Rewrite ``:role:`target``` to ```target``` in every docstring."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_replace, obj.docstring.value)
