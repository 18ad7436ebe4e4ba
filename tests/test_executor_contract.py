"""The executor contract: one documented list of capabilities, defaults for each, no probing.

A third-party executor written from ``docs/backends.md`` alone (a subclass of
``ArrayAPIExecutor`` over NumPy, installed under the ``futurefill.executors`` entry-point group)
runs every kind of plan exactly; the :class:`~futurefill.executor.Executor` protocol's members
are the ones the module docstring and the backend guide list; every built-in backend's
methods take the protocol's arguments; and no module of the library asks an executor whether
it has a method (``getattr``/``hasattr``): what an executor can do is a method of the protocol.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import futurefill
from futurefill import _registry, executor
from futurefill.executor import ArrayAPIExecutor, Executor, compat_namespace

from .test_registry import _install_fake_distribution

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "futurefill"
GUIDE = ROOT / "docs" / "backends.md"

# The plug-in, as docs/backends.md tells an author to write one: subclass ArrayAPIExecutor,
# pass an array-API namespace, override what the library does its own way. It counts its
# kernel calls so that the test sees its kernels ran, refuses Python lists with its own reason
# and stores a radix for the reuse schedule.
PLUGIN = """
import numpy
from futurefill.executor import ArrayAPIExecutor, compat_namespace


class MyExecutor(ArrayAPIExecutor):
    name = "mylib"
    direct_below = 4
    calls = {"emit": 0, "prefill": 0}

    def __init__(self, device=None):
        super().__init__(compat_namespace("numpy"), device)

    def refusal(self, x):
        if isinstance(x, list):
            return "mylib takes arrays, not lists: numpy.asarray(x) first"
        return None

    def default_radix(self, batch, channels, dtype):
        return 4

    def emit(self, state, u, channels, slot, start):
        type(self).calls["emit"] += 1
        return super().emit(state, u, channels, slot, start)

    def prefill(self, state, u, channels):
        type(self).calls["prefill"] += 1
        return super().prefill(state, u, channels)
"""


@pytest.fixture
def mylib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The plug-in installed (a distribution with the entry point) and discovered."""
    _install_fake_distribution(
        tmp_path, "futurefill_mylib", "mylib = futurefill_mylib:MyExecutor", module=PLUGIN
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    futurefill.refresh_backends()
    yield futurefill.get_backend("mylib")
    monkeypatch.undo()
    _registry.refresh_backends()


def _oracle(phi: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``numpy.convolve`` of every row of ``u`` (B, C, T) with its channel's taps."""
    B, C, T = u.shape
    out = np.empty_like(u)
    for b in range(B):
        for c in range(C):
            out[b, c] = np.convolve(phi[c], u[b, c])[:T]
    return out


@pytest.mark.parametrize("schedule", ["naive", "continuous", "reuse", "deadline"])
def test_plugin_executor_written_from_the_docs_is_exact(mylib, schedule: str) -> None:
    assert "mylib" in futurefill.list_backends()
    assert isinstance(mylib, Executor)
    rng = np.random.default_rng(7)
    P, L, B, C = 5, 37, 2, 3
    phi = rng.uniform(-1.0, 1.0, size=(C, P + L))
    u = rng.uniform(-1.0, 1.0, size=(B, C, P + L))
    before = dict(type(mylib).calls)
    conv = futurefill.OnlineConv(phi, L, schedule=schedule, prompt=P, batch=B, backend="mylib")
    assert conv.backend is mylib
    ys = [conv.prefill(u[..., :P])] + [conv.step(u[..., t])[..., None] for t in range(P, P + L)]
    # Every output is a sum of at most 42 products of numbers in [-1, 1] (|y| <= 42): float64
    # rounding of the direct sums and the FFTs stays below 1e-13 at this size.
    np.testing.assert_allclose(np.concatenate(ys, axis=-1), _oracle(phi, u), rtol=0, atol=1e-12)
    after = type(mylib).calls
    assert (after["emit"] - before["emit"], after["prefill"] - before["prefill"]) == (L, 1)
    if schedule == "reuse":  # the radix the executor stores for itself
        assert conv.plan.spec.get("radix") == 4


def test_plugin_refusal_is_the_error_message_else_inputs_are_converted(mylib) -> None:
    conv = futurefill.OnlineConv(np.ones((1, 4)), 4, backend="mylib")
    with pytest.raises(TypeError, match=r"^u_t: mylib takes arrays, not lists: numpy.asarray"):
        conv.step([[1.0]])
    assert conv.position == 0
    y = conv.step(((1.0,),))  # no reason of its own: converted as NumPy reads it
    assert conv.backend.is_native(y) and y.tolist() == [[1.0]] and conv.position == 1


# ---------------------------------------------------------------------- the documented list
def _protocol_members() -> set[str]:
    methods = {n for n, v in vars(Executor).items() if callable(v) and not n.startswith("_")}
    return methods | set(Executor.__annotations__)


def _docstring_members() -> set[str]:
    doc = executor.__doc__ or ""
    return set(re.findall(r":(?:meth|attr):`~Executor\.(\w+)`", doc))


def _guide_members() -> set[str]:
    """The names in the first column of the table in the guide's 'Writing your own backend'."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Writing your own backend", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2 and "`" in cells[1]:
            names.update(re.findall(r"`(\w+)", cells[1]))
    return names


def test_protocol_is_the_documented_list() -> None:
    members = _protocol_members()
    assert {"emit", "fill", "refusal", "default_radix", "generate_greedy", "settle"} <= members
    assert _docstring_members() == members
    assert _guide_members() == members


def test_reference_executor_has_a_default_for_every_capability() -> None:
    ex = ArrayAPIExecutor(compat_namespace("numpy"))
    assert isinstance(ex, Executor)
    methods = {n for n in _protocol_members() if callable(getattr(Executor, n, None))}
    bases = ArrayAPIExecutor.__mro__[:-1]  # its own and its mixins' (not object's)
    missing = {n for n in methods if not any(n in vars(base) for base in bases)}
    assert not missing, f"no default in ArrayAPIExecutor for {sorted(missing)}"
    # The optional capabilities say "not here" by default.
    assert ex.refusal([1.0]) is None
    assert ex.default_radix(1, 2, "float64") is None
    assert ex.generate_greedy(None, None, 1) is None
    assert ex.half_dtype("float64") is None


def _compatible(impl: inspect.Signature, proto: inspect.Signature) -> str | None:
    """Why ``impl`` cannot be called as ``proto`` is, or None."""
    params = list(impl.parameters.values())
    expected = list(proto.parameters.values())
    for i, want in enumerate(expected):
        if i >= len(params):
            return f"no parameter {want.name!r}"
        if (params[i].name, params[i].kind) != (want.name, want.kind):
            return f"parameter {i} is {params[i]}, the protocol's is {want}"
    for extra in params[len(expected) :]:
        if extra.kind not in (extra.VAR_KEYWORD, extra.VAR_POSITIONAL) and (
            extra.default is extra.empty
        ):
            return f"extra parameter {extra.name!r} without a default"
    return None


def test_backend_methods_take_the_protocol_arguments(backend: Executor) -> None:
    assert isinstance(backend, Executor)
    for name in _protocol_members():
        proto = vars(Executor).get(name)
        if not callable(proto):
            continue
        impl = getattr(type(backend), name)
        why = _compatible(inspect.signature(impl), inspect.signature(proto))
        assert why is None, f"{type(backend).__name__}.{name}: {why}"


# ---------------------------------------------------------------------- no probing
_EXECUTOR_NAME = re.compile(r"(^|_)(ex|exe|executor|backend)$")


def _probes(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls ``getattr(x, ...)``/``hasattr(x, ...)`` whose ``x`` names an executor (a name
    that an import binds is a module: ``from . import executor``)."""
    modules = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    found = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and node.args
        ):
            continue
        target = node.args[0]
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if _EXECUTOR_NAME.search(name) and name not in modules:
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_scan_finds_a_probe() -> None:
    code = (
        "from . import executor\n"
        "a = getattr(ex, 'x', None)\n"
        "b = hasattr(self._executor, 'y')\n"
        "c = getattr(xp, 'fft')\n"
        "d = getattr(executor, 'Executor')\n"
    )
    assert [line for line, _ in _probes(ast.parse(code))] == [2, 3]


def test_no_module_probes_an_executor() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {call}"
        for path in sorted(SOURCE.rglob("*.py"))
        for line, call in _probes(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not found, "executor capabilities are protocol methods:\n" + "\n".join(found)
