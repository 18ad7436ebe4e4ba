"""Layering of the model and command-line code: no import cycles, one array_api_compat site."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "futurefill"

#: Parts of the package whose modules must not sit on an import cycle (TYPE_CHECKING included).
LAYERED = (
    "futurefill.models",
    "futurefill.cli",
    "futurefill.measure.bench",
    "futurefill.measure.bench_model",
)


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (function bodies, TYPE_CHECKING)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in mods.items():
        package = name if is_package else name.rsplit(".", 1)[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.add(sub if sub in mods else target)
            elif isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
        graph[name] = {e for e in edges if e in mods and e != name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m.startswith(LAYERED)))
def test_no_import_cycle_through(module: str) -> None:
    graph = import_graph()
    back = [m for m in reachable(graph, module) if module in reachable(graph, m)]
    assert not back, f"{module} is on an import cycle with {sorted(back)}"


def test_decode_and_lm_do_not_import_each_other() -> None:
    graph = import_graph()
    assert "futurefill.models.lm" not in graph["futurefill.models.decode"]
    assert "futurefill.models.decode" in graph["futurefill.models.lm"]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_array_api_compat_is_imported_in_one_place() -> None:
    sites = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if any(m.split(".")[0] == "array_api_compat" for m in _imports(path))
    ]
    assert sites == ["_compat.py"]


def test_the_library_never_imports_the_measuring_tools() -> None:
    graph = import_graph()
    # The package reaches futurefill.measure only inside its lazy __getattr__ (``tune``),
    # which this static graph counts as an import; everything else must not reach it at all.
    lazy = {m for m in graph["futurefill"] if m.startswith("futurefill.measure")}
    assert lazy == {"futurefill.measure.tuning"}
    graph["futurefill"] -= lazy
    library = [m for m in graph if not m.startswith(("futurefill.measure", "futurefill.cli"))]
    for module in library:
        found = sorted(m for m in reachable(graph, module) if m.startswith("futurefill.measure"))
        assert not found, f"{module} imports the measuring tools {found}"


def test_import_futurefill_loads_no_measuring_module() -> None:
    code = (
        "import sys, futurefill, futurefill_numpy; "
        "print(sorted(m for m in sys.modules if m.startswith('futurefill')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout.strip())
    assert "futurefill.online" in loaded  # the check sees the library's modules
    assert not [m for m in loaded if m.startswith(("futurefill.measure", "futurefill.cli"))]


def test_backends_do_not_import_the_measuring_tools() -> None:
    root = Path(__file__).parents[1] / "backends"
    for path in root.rglob("*.py"):
        bad = [m for m in _imports(path) if m.startswith(("futurefill.measure", "futurefill.cli"))]
        assert not bad, f"{path.relative_to(root)} imports {bad}"
