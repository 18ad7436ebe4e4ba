"""pytest configuration of the examples in the docstrings (``pytest --doctest-modules
src/futurefill``, run by ``nox -s tests``).

Every example runs on the NumPy backend, whatever ``FUTUREFILL_BACKEND`` says (the examples
show NumPy arrays), and the examples of a module that needs an optional library are skipped,
saying which, where that library is not installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

import futurefill

SRC = Path(__file__).parent
#: Modules whose examples need an optional library, and which.
NEEDS = {"futurefill/measure/plot_plan.py": "matplotlib"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(SRC):
            continue
        library = NEEDS.get(item.path.relative_to(SRC).as_posix())
        if library is not None and importlib.util.find_spec(library) is None:
            item.add_marker(pytest.mark.skip(reason=f"its example needs {library}"))


@pytest.fixture(autouse=True)
def _numpy_backend() -> Iterator[None]:
    with futurefill.use_backend("numpy"):
        yield
