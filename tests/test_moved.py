"""Old import paths of modules and names that moved in 0.3 still work, with a warning."""

from __future__ import annotations

import importlib
import sys

import pytest

import futurefill
from futurefill import _moved


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_an_old_module_path_warns_and_forwards(old: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="moved to"):
        module = importlib.import_module(old)
    sys.modules.pop(old, None)
    names = [n for home in _moved.MOVED[old] for n in importlib.import_module(home).__all__]
    assert names
    for name in names:
        assert getattr(module, name) is getattr(
            next(
                importlib.import_module(h)
                for h in _moved.MOVED[old]
                if hasattr(importlib.import_module(h), name)
            ),
            name,
        )
    with pytest.raises(AttributeError, match="no attribute"):
        module.no_such_name  # noqa: B018


def test_the_tuning_module_forwards_both_halves() -> None:
    sys.modules.pop("futurefill.tuning", None)
    with pytest.warns(DeprecationWarning):
        from futurefill.tuning import ShippedTable, tune
    sys.modules.pop("futurefill.tuning", None)
    from futurefill.defaults import ShippedTable as Shipped
    from futurefill.measure.tuning import tune as measured

    assert (ShippedTable, tune) == (Shipped, measured)


@pytest.mark.parametrize("name", ["ArrayAPIExecutor", "ConvState", "Executor"])
def test_authors_names_at_the_top_level_warn(name: str) -> None:
    from futurefill import executor

    with pytest.warns(DeprecationWarning, match=f"futurefill.executor.{name}"):
        assert getattr(futurefill, name) is getattr(executor, name)
    assert name not in futurefill.__all__


def test_tune_is_loaded_on_first_use() -> None:
    from futurefill.measure.tuning import tune

    assert futurefill.tune is tune
    assert "tune" in dir(futurefill)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        futurefill.nope  # noqa: B018
