"""Docstrings: every public name shows a runnable example, and no docstring has rotted.

What counts as public here:

* every name in ``__all__`` of :mod:`futurefill`, :mod:`futurefill.plan` and
  :mod:`futurefill.models` that is a function or a class (exception classes included: their
  example shows the error being raised);
* every public method (plain, class or static method; a name without a leading underscore)
  of the user's main classes, :data:`MAIN_CLASSES`, inherited ones included where they are
  defined in futurefill.

Each must have a docstring holding a doctest (``>>>``) that checks something: at least one
example with expected output, not every example skipped. A method may instead be called in
the examples of its class's docstring or of the docstring of the package that defines the
class (a walkthrough: one setup for all the methods). :class:`~futurefill.OnlineConv` (in
its class docstring) and :class:`~futurefill.StreamPool` (in :mod:`futurefill.pool`'s) do
that because their modules are at the project's 500-line limit; small classes whose own
example calls every method (``ModelConfig``, ``Decoder``, ...) do it too. ``nox -s tests``
runs these doctests (``pytest --doctest-modules src/futurefill``); this file checks that they
exist.

Exempt, and why:

* the constants in those ``__all__`` (``SCHEDULES``, ``MAX_POSITIONS``, ``TASK_COLUMNS``,
  ``MAX_LEN_LIMIT``, ``MIXERS``, ``__version__``): a value carries no docstring of its own.
  Instead each is used in a ``>>>`` line of the docstring of the package that exports it
  (:func:`test_constant_shown_in_package_example`);
* properties (cached ones included): attributes with a one-line docstring each; the
  examples of their class and of its methods read them.

The rot checks cover every docstring under ``src/futurefill`` and ``backends/futurefill_*``:
each dotted ``futurefill.x.y`` reference resolves (an importable module, or an attribute of
one) without going through a deprecated forwarding path, and no numpydoc section
(``Parameters``, ``Examples``, ...) is empty.
"""

from __future__ import annotations

import ast
import doctest
import functools
import importlib
import inspect
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import futurefill
import futurefill.models
import futurefill.plan
import futurefill_numpy

PACKAGES: tuple[ModuleType, ...] = (futurefill, futurefill.plan, futurefill.models)
MAIN_CLASSES: tuple[type, ...] = (
    futurefill.OnlineConv,
    futurefill.StreamPool,
    futurefill.Plan,
    futurefill.PlanSpec,
    futurefill.models.ConvLM,
    futurefill.models.Server,
    futurefill.models.Decoder,
    futurefill.models.ModelConfig,
    futurefill.models.GenerationOptions,
    futurefill.models.ReplayClock,
    futurefill.models.DecodeStateSize,
    futurefill.plan.ScheduleInfo,
)
METHOD_KINDS = ("method", "class method", "static method")
SRC = Path(futurefill.__file__).parent
#: The packages whose docstrings the rot checks read: the library and the built-in executors.
CHECKED_PACKAGES = (SRC, *sorted(Path(futurefill_numpy.__file__).parents[1].glob("futurefill_*")))
SECTIONS = (
    "Parameters",
    "Returns",
    "Yields",
    "Receives",
    "Raises",
    "Warns",
    "Other Parameters",
    "Attributes",
    "Methods",
    "See Also",
    "Notes",
    "Warnings",
    "References",
    "Examples",
)


def _exported() -> Iterator[tuple[str, Any]]:
    seen: set[int] = set()
    for package in PACKAGES:
        for name in package.__all__:
            obj = getattr(package, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) not in seen:
                seen.add(id(obj))
                yield f"{package.__name__}.{name}", obj


def _methods() -> Iterator[tuple[str, Any]]:
    for cls in MAIN_CLASSES:
        for attr in inspect.classify_class_attrs(cls):
            if attr.name.startswith("_") or attr.kind not in METHOD_KINDS:
                continue
            if isinstance(attr.object, functools.cached_property):
                continue  # a property, computed once
            if not attr.defining_class.__module__.startswith("futurefill"):
                continue
            function = getattr(attr.object, "__func__", attr.object)
            yield f"{cls.__name__}.{attr.name}", function


EXPORTED = dict(_exported())
METHODS = dict(_methods())
CONSTANTS = {
    (package, name)
    for package in PACKAGES
    for name in package.__all__
    if not (inspect.isclass(getattr(package, name)) or callable(getattr(package, name)))
}


def _examples(docstring: str) -> list[doctest.Example]:
    return doctest.DocTestParser().get_examples(docstring)


def _run(docstring: str | None) -> list[doctest.Example]:
    """The examples of ``docstring`` that run (not skipped)."""
    return [e for e in _examples(docstring or "") if not e.options.get(doctest.SKIP)]


def _checks_something(examples: list[doctest.Example]) -> bool:
    return any(e.want.strip() for e in examples)


def _walkthroughs(cls: type) -> list[doctest.Example]:
    """The examples of ``cls``'s docstring and of its defining package's, if they check."""
    package = sys.modules[cls.__module__.rpartition(".")[0]]
    found = [_run(inspect.getdoc(cls)), _run(package.__doc__)]
    return [e for examples in found if _checks_something(examples) for e in examples]


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_exported_name_has_an_example(name: str) -> None:
    run = _run(inspect.getdoc(EXPORTED[name]))
    assert run, f"{name}: no runnable '>>>' example in its docstring"
    assert _checks_something(run), f"{name}: its example checks no output"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_has_an_example(name: str) -> None:
    own = _run(inspect.getdoc(METHODS[name]))
    if own:
        assert _checks_something(own), f"{name}: its example checks no output"
        return
    cls_name, method = name.split(".")
    cls = next(c for c in MAIN_CLASSES if c.__name__ == cls_name)
    call = re.compile(rf"\.{method}\(")
    assert any(call.search(e.source) for e in _walkthroughs(cls)), (
        f"{name}: no runnable '>>>' example in its docstring, nor a call in the examples of "
        f"{cls_name}'s docstring or its package's"
    )


def test_public_set_is_what_the_docstring_says() -> None:
    # Guards the walk itself: a refactor that hid the methods (or the classes) from it would
    # make every check above pass vacuously.
    assert "OnlineConv.step" in METHODS and "StreamPool.admit" in METHODS
    assert "futurefill.make_plan" in EXPORTED and "futurefill.models.serve" in EXPORTED
    assert {name for _, name in CONSTANTS} == {
        "SCHEDULES",
        "MAX_POSITIONS",
        "TASK_COLUMNS",
        "MAX_LEN_LIMIT",
        "MIXERS",
        "__version__",
    }


@pytest.mark.parametrize(
    ("package", "name"), sorted(CONSTANTS, key=lambda c: (c[0].__name__, c[1]))
)
def test_constant_shown_in_package_example(package: ModuleType, name: str) -> None:
    sources = [e.source for e in _examples(package.__doc__ or "")]
    assert any(re.search(rf"\b{re.escape(name)}\b", s) for s in sources), (
        f"{package.__name__}.{name}: not used in a '>>>' example of {package.__name__}'s docstring"
    )


def _docstrings() -> Iterator[tuple[str, str]]:
    files = [(root, path) for root in CHECKED_PACKAGES for path in sorted(root.rglob("*.py"))]
    for root, path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(root.parent).as_posix()
        for node in ast.walk(tree):
            kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
            if isinstance(node, kinds):
                text = ast.get_docstring(node)
                if text:
                    line = getattr(node, "lineno", 1)
                    yield f"{where}:{line}", text


DOCSTRINGS = list(_docstrings())
REFERENCE = re.compile(r"(?<![\w.])futurefill(?:\.[A-Za-z_]\w*)+")
#: Dotted names that are not Python paths, and why.
NOT_PATHS = {"futurefill.executors": "the executors' entry-point group"}
#: Files whose docstrings name the deprecated forwarding paths on purpose.
OLD_PATHS_NAMED_IN = {"futurefill/_moved.py"}


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for cut in range(len(parts), 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            except DeprecationWarning:
                return False
            try:
                for attr in parts[cut:]:
                    obj = _attribute(obj, attr)
            except (AttributeError, DeprecationWarning):
                return False
            return True
    return False


def _attribute(obj: Any, name: str) -> Any:
    # A dataclass field or annotated instance attribute has no class attribute to get.
    if inspect.isclass(obj) and name in getattr(obj, "__annotations__", {}):
        return None
    return getattr(obj, name)


def test_dotted_references_resolve() -> None:
    broken = [
        f"{where}: {ref}"
        for where, text in DOCSTRINGS
        if where.partition(":")[0] not in OLD_PATHS_NAMED_IN
        for ref in sorted(set(REFERENCE.findall(text)) - set(NOT_PATHS))
        if not _resolves(ref)
    ]
    assert not broken, "docstrings name what does not exist:\n" + "\n".join(broken)


def _empty_sections(text: str) -> Iterator[str]:
    lines = text.splitlines()
    heads = [
        i
        for i in range(len(lines) - 1)
        if lines[i].strip() in SECTIONS and set(lines[i + 1].strip()) == {"-"}
    ]
    for i, start in enumerate(heads):
        end = heads[i + 1] if i + 1 < len(heads) else len(lines)
        if not any(line.strip() for line in lines[start + 2 : end]):
            yield lines[start].strip()


def test_no_empty_sections() -> None:
    empty = [
        f"{where}: {section}" for where, text in DOCSTRINGS for section in _empty_sections(text)
    ]
    assert not empty, "empty numpydoc sections:\n" + "\n".join(empty)


def test_checks_catch_rot() -> None:
    # The checks above, on known-bad text: they can fail.
    assert not _resolves("futurefill.no_such_module")
    assert not _resolves("futurefill.bench")  # moved to futurefill.measure.bench (forwarded)
    assert _resolves("futurefill.measure.bench") and _resolves("futurefill.Plan.tasks")
    assert list(_empty_sections("Summary.\n\nReturns\n-------\n\nNotes\n-----\nText.")) == [
        "Returns"
    ]
    assert _examples(">>> f()  # doctest: +SKIP")[0].options.get(doctest.SKIP)
