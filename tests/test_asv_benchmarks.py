"""The asv suite (``asv_benchmarks/``): what ``Ratios`` measures, and what its README lists.

``Ratios.track_speedup_over_naive`` must time what ``Generation.time_generate`` times for
naive and for the schedule: the same warmed-up streams, the garbage collector off as in asv's
``time_`` samples, the smallest of interleaved calls. Checked with a fake clock and a recording
``Stream.generate`` (no wall-clock time is asserted). The README's tables must name exactly
the benchmarks, parameters and values the classes define.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np
import pytest

import futurefill

SUITE = Path(__file__).resolve().parents[1] / "asv_benchmarks"
PACKAGE = "_futurefill_asv_suite"
BENCHMARK_PREFIXES = ("time_", "timeraw_", "mem_", "peakmem_", "track_")


@pytest.fixture(scope="module")
def suite() -> Iterator[SimpleNamespace]:
    """The suite's modules, imported with NumPy only, full parameters, nothing pre-imported."""
    env = {
        "FUTUREFILL_BENCH_BACKENDS": "numpy",
        "FUTUREFILL_BENCH_QUICK": "0",
        "FUTUREFILL_BENCH_PREIMPORT": "0",
    }
    spec = importlib.util.spec_from_file_location(
        PACKAGE,
        SUITE / "benchmarks" / "__init__.py",
        submodule_search_locations=[str(SUITE / "benchmarks")],
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    try:
        spec.loader.exec_module(package)
        with mock.patch.dict(os.environ, env):
            modules = {
                name: importlib.import_module(f"{PACKAGE}.{name}")
                for name in ("common", "bench_online", "bench_streams")
            }
        yield SimpleNamespace(**modules)
    finally:
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


class Recorder:
    """A fake clock, and a ``Stream`` method stand-in that records each call and advances the
    clock by the next cost listed for the stream's schedule (or ``"offline"``), counted from the
    last :meth:`reset` (calls before the first cost nothing)."""

    def __init__(self, costs: dict[str, list[float]]) -> None:
        self.now = 0.0
        self.listed = costs
        self.costs: dict[str, Iterator[float]] = {}
        self.calls: list[tuple[tuple[object, ...], bool]] = []

    def reset(self) -> None:
        """Forget the calls so far; the next calls take the listed costs from the first."""
        self.calls.clear()
        self.costs = {key: iter(values) for key, values in self.listed.items()}

    def clock(self) -> float:
        return self.now

    def method(self, kind: str | None = None) -> Callable[[object], None]:
        def call(stream: object) -> None:
            spec = stream.spec  # type: ignore[attr-defined]
            key = kind or spec[0]
            self.calls.append(((key, *spec[1:]), gc.isenabled()))
            self.now += next(self.costs.get(key, iter(())), 0.0)

        return call


@pytest.fixture
def recorder(suite: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    runs = suite.common.PAIRED_RUNS
    # Minima and medians differ, so the statistic is checked too: the smallest calls take 2
    # (naive), 4 (the other schedules) and 1 (offline); most calls take more.
    naive = [float(k) for k in range(runs + 1, 1, -1)]
    other = [5.0] * (runs - 1) + [4.0]
    costs = {"naive": naive, "offline": [1.0] + [9.0] * (runs - 1)}
    costs |= {name: other for name in futurefill.list_schedules() if name != "naive"}
    rec = Recorder(costs)
    monkeypatch.setattr(suite.common, "clock", rec.clock)
    monkeypatch.setattr(suite.common.Stream, "generate", rec.method())
    monkeypatch.setattr(suite.common.Stream, "offline", rec.method("offline"))
    return rec


def fast_schedules() -> list[str]:
    # the shipped ones: other test modules register schedules of their own when imported
    return [name for name in futurefill.SCHEDULES if name != "naive"]


def test_generation_times_one_generation_of_a_warmed_up_stream(
    suite: SimpleNamespace, recorder: Recorder
) -> None:
    bench = suite.bench_online.Generation()
    bench.setup("numpy", "continuous", 16, 3)
    assert [spec for spec, _ in recorder.calls] == [("continuous", 16, 3, 0)]  # the warm-up
    recorder.reset()
    bench.time_generate("numpy", "continuous", 16, 3)
    assert [spec for spec, _ in recorder.calls] == [("continuous", 16, 3, 0)]


@pytest.mark.parametrize("schedule", fast_schedules())
def test_speedup_over_naive_is_the_ratio_of_what_generation_times(
    suite: SimpleNamespace, recorder: Recorder, schedule: str
) -> None:
    online = suite.bench_online
    generation = {name: online.Generation() for name in ("naive", schedule)}
    for name, bench in generation.items():
        bench.setup("numpy", name, 16, 3)
    ratios = online.Ratios()
    recorder.reset()
    ratios.setup("numpy", schedule, 16, 3)
    # Both streams warmed up once in setup, as Generation's are.
    warmups = sorted(spec for spec, _ in recorder.calls if spec[0] != "offline")
    assert warmups == sorted([("naive", 16, 3, 0), (schedule, 16, 3, 0)])
    # The same streams as Generation's: same sizes, filters and inputs.
    for stream in (ratios.naive, ratios.stream):
        twin = generation[stream.spec[0]].stream
        assert stream.spec == twin.spec
        np.testing.assert_array_equal(stream.filters, twin.filters)
        for mine, theirs in zip(stream.steps, twin.steps, strict=True):
            np.testing.assert_array_equal(mine, theirs)

    recorder.reset()
    speedup = ratios.track_speedup_over_naive("numpy", schedule, 16, 3)
    runs = suite.common.PAIRED_RUNS
    expected = [("naive", 16, 3, 0), (schedule, 16, 3, 0)] * runs  # interleaved
    assert [spec for spec, _ in recorder.calls] == expected
    assert not any(gc_on for _, gc_on in recorder.calls), "timed with the collector on"
    assert speedup == 2.0 / 4.0  # the smallest calls


def test_ratio_to_offline_is_a_ratio_of_minima(suite: SimpleNamespace, recorder: Recorder) -> None:
    ratios = suite.bench_online.Ratios()
    ratios.setup("numpy", "reuse", 16, 3)
    recorder.reset()
    ratio = ratios.track_ratio_to_offline("numpy", "reuse", 16, 3)
    runs = suite.common.PAIRED_RUNS
    assert [spec[0] for spec, _ in recorder.calls] == ["reuse", "offline"] * runs
    assert ratio == 4.0 / 1.0


def test_paired_minima_restores_the_collector(suite: SimpleNamespace) -> None:
    seen: list[bool] = []
    assert gc.isenabled()
    suite.common.paired_minima(lambda: seen.append(gc.isenabled()), lambda: None, runs=3)
    assert seen == [False] * 3
    assert gc.isenabled()


def test_every_shipped_schedule_is_benchmarked(suite: SimpleNamespace) -> None:
    online = suite.bench_online
    shipped = set(futurefill.SCHEDULES)  # list_schedules() also has what other tests register
    for cls in (online.Generation, online.Prefill):
        assert set(cls.params[cls.param_names.index("schedule")]) == shipped
    ratios = online.Ratios
    assert set(ratios.params[ratios.param_names.index("schedule")]) == shipped - {"naive"}


# --- the README --------------------------------------------------------------------------


def suite_classes(suite: SimpleNamespace) -> dict[str, Any]:
    modules: list[ModuleType] = [suite.bench_online, suite.bench_streams]
    return {
        name: cls
        for module in modules
        for name, cls in vars(module).items()
        if isinstance(cls, type)
        and cls.__module__ == module.__name__
        and any(attr.startswith(BENCHMARK_PREFIXES) for attr in vars(cls))
    }


def readme_rows(header: str) -> list[list[str]]:
    """The rows (cells, backticks removed) of every README table whose header row is
    ``header``."""
    rows: list[list[str]] = []
    inside = False
    for line in (SUITE / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip().replace("`", "") for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and "|".join(cells) == header:
            inside = True
        elif inside and line.startswith("|"):
            if not set(cells[0]) <= set("-: "):
                rows.append(cells)
        else:
            inside = False
    return rows


def words(cell: str) -> set[str]:
    return {word for word in re.split(r"[,\s]+", cell) if word}


def test_readme_lists_exactly_the_benchmarks_and_their_parameters(
    suite: SimpleNamespace,
) -> None:
    listed = {row[0]: words(row[1]) for row in readme_rows("benchmark|parameters|measures")}
    defined = {
        f"{name}.{attr}": set(cls.param_names)
        for name, cls in suite_classes(suite).items()
        for attr in vars(cls)
        if attr.startswith(BENCHMARK_PREFIXES)
    }
    assert listed == defined


def test_readme_lists_the_parameter_values(suite: SimpleNamespace) -> None:
    columns = ["schedule", "length", "channels"]
    listed: dict[str, dict[str, set[str]]] = {}
    for row in readme_rows("class|" + "|".join(columns)):
        for name in words(row[0]):
            listed[name] = dict(zip(columns, map(words, row[1:]), strict=True))
    classes = suite_classes(suite)
    assert set(listed) == set(classes)
    for name, cls in classes.items():
        values = dict(zip(cls.param_names, cls.params, strict=True))
        for column in columns:
            assert listed[name][column] == {str(v) for v in values.get(column, [])}, (
                name,
                column,
            )
