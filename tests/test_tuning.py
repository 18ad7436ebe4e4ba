"""Measured autotuning: the cache file, what executors read from it, and that any choice is exact.

Every test works in a temporary cache folder and on tiny sizes; none checks a timing.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import futurefill
from futurefill import OnlineConv, defaults
from futurefill.measure import tuning as measure_tuning
from futurefill.measure.tuning import default_epochs
from futurefill_numpy import NumpyExecutor
from futurefill_numpy.executor import SHIPPED

from .conftest import decaying_filters, oracle

TINY = {"channels": 2, "length": 48, "candidates": (1, 4, 16), "repeats": 1}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, tuning on."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(defaults.ENV_NO_TUNING, raising=False)
    return tmp_path / "futurefill" / defaults.CACHE_FILE


def _store(value: object, width: int, executor=None, dtype="float64") -> None:
    """Store ``direct_below = value`` for ``width`` as ``tune`` would."""
    ex = executor or futurefill.get_backend("numpy")
    entry = {"direct_below": {str(width): {"value": value}}}
    defaults._write_entry(defaults.cache_key(ex, dtype), entry, defaults.cache_path())


# ---------------------------------------------------------------------- the file
def test_cache_path_follows_xdg_else_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert defaults.cache_path() == tmp_path / "xdg" / "futurefill" / "tuning.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert defaults.cache_path() == tmp_path / "home" / ".cache" / "futurefill" / "tuning.json"


def test_tune_stores_the_fastest_candidate(cache):
    result = futurefill.tune("numpy", **TINY)
    assert result.path == cache and cache.exists()
    assert set(result.direct_below_us) == {1, 4, 16}
    assert result.direct_below == min(result.direct_below_us, key=result.direct_below_us.get)
    data = json.loads(cache.read_text())
    entry = data["entries"][result.key]
    assert entry["backend"] == "numpy" and entry["dtype"] == "float64"
    assert entry["versions"]["numpy"] == np.__version__
    assert entry["direct_below"]["2"]["value"] == result.direct_below
    assert NumpyExecutor().default_direct_below(1, 2, np.float64) == result.direct_below


def test_tune_times_epochs_and_keeps_other_widths(cache):
    first = futurefill.tune("numpy", epochs=(4, 8), **TINY)
    assert first.epoch in (4, 8) and set(first.epoch_us) == {4, 8}
    ex = futurefill.get_backend("numpy")
    assert defaults.stored_value(ex, "epoch", "float64", 2, length=48) == first.epoch
    futurefill.tune("numpy", **{**TINY, "channels": 3})
    stored = defaults.read_cache()[first.key]["direct_below"]
    assert set(stored) == {"2", "3"}
    assert defaults.stored_value(ex, "epoch", "float64", 2, length=48) == first.epoch


def test_tune_stores_the_fastest_radix_and_reuse_plans_use_it(cache, monkeypatch):
    result = futurefill.tune("numpy", radices=(2, 4), **TINY)
    assert set(result.radix_us) == {2, 4}
    assert result.radix == min(result.radix_us, key=result.radix_us.get)
    assert NumpyExecutor().default_radix(1, 2, np.float64) == result.radix
    assert NumpyExecutor().default_radix(1, 3, np.float64) is None  # another width
    phi = np.ones((2, 48))
    conv = futurefill.OnlineConv(phi, 48, schedule="reuse", backend="numpy")
    assert conv.plan.spec.get("radix") == result.radix
    explicit = futurefill.OnlineConv(phi, 48, schedule="reuse", radix=16, backend="numpy")
    assert explicit.plan.spec.get("radix") == 16  # a given radix wins
    monkeypatch.setenv(defaults.ENV_NO_TUNING, "1")
    untuned = futurefill.OnlineConv(phi, 48, schedule="reuse", backend="numpy")
    assert untuned.plan.spec.get("radix") == 8  # the schedule's own default


def test_default_epochs_surround_the_authors_epoch():
    epochs = default_epochs(4096)
    assert futurefill.plan.default_epoch(4096) in epochs
    assert min(epochs) >= 1 and max(epochs) <= 4096 and len(epochs) == 5


def test_dry_run_stores_nothing(cache):
    result = futurefill.tune("numpy", store=False, **TINY)
    assert result.path is None and not cache.exists()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"candidates": (1, 3)}, ValueError),
        ({"candidates": ()}, ValueError),
        ({"epochs": (0,)}, ValueError),
        ({"epochs": (49,)}, ValueError),
        ({"length": 0}, ValueError),
        ({"dtype": "float16"}, TypeError),
    ],
)
def test_tune_checks_its_arguments_first(cache, monkeypatch, kwargs, error):
    monkeypatch.setattr(measure_tuning, "bench_configuration", None)  # would fail if reached
    with pytest.raises(error):
        futurefill.tune("numpy", **{**TINY, **kwargs})


# ---------------------------------------------------------------------- what executors read
def test_executors_use_the_stored_value_first(cache):
    _store(2, width=6)
    ex = NumpyExecutor()
    assert ex.default_direct_below(2, 3, np.float64) == 2  # width 2 x 3
    assert ex.default_direct_below(1, 7, np.float64) == SHIPPED.lookup("cpu", "float64", 7)
    conv = OnlineConv(np.ones((3, 16)), 16, batch=2, backend=ex)
    assert conv.plan.spec.get("direct_below") == 2


def test_tuning_can_be_turned_off(cache, monkeypatch):
    _store(2, width=6)
    shipped = SHIPPED.lookup("cpu", "float64", 6)
    assert shipped != 2
    assert NumpyExecutor().default_direct_below(1, 6, np.float64, tuned=False) == shipped
    assert NumpyExecutor(tuned=False).default_direct_below(1, 6, np.float64) == shipped
    monkeypatch.setenv(defaults.ENV_NO_TUNING, "1")
    assert NumpyExecutor().default_direct_below(1, 6, np.float64) == shipped
    monkeypatch.setenv(defaults.ENV_NO_TUNING, "0")
    assert NumpyExecutor().default_direct_below(1, 6, np.float64) == 2


def test_other_versions_dtypes_and_backends_are_not_trusted(cache, monkeypatch):
    _store(2, width=6)
    ex = NumpyExecutor()
    assert ex.default_direct_below(1, 6, np.float32) == SHIPPED.lookup("cpu", "float32", 6)
    monkeypatch.setattr(np, "__version__", "0.0-other")
    assert ex.default_direct_below(1, 6, np.float64) == SHIPPED.lookup("cpu", "float64", 6)


def test_torch_reads_its_own_entry(cache):
    torch = pytest.importorskip("torch")
    from futurefill_torch import TorchExecutor

    ex = TorchExecutor()
    _store(8, width=64, executor=ex, dtype=torch.float64)
    assert ex.default_direct_below(1, 64, torch.float64) == 8
    assert ex.default_direct_below(1, 64, torch.float32) == 64  # shipped cpu/float32 row
    assert ex.default_direct_below(1, 64, torch.float64, tuned=False) == 64


@pytest.mark.parametrize("content", ["{not json", '{"format": 99, "entries": {}}', "[1, 2]"])
def test_a_broken_file_falls_back_to_the_shipped_table(cache, content):
    cache.parent.mkdir(parents=True)
    cache.write_text(content)
    ex = NumpyExecutor()
    expected = SHIPPED.lookup("cpu", "float64", 64)
    if content.startswith("{not"):
        with pytest.warns(RuntimeWarning, match="unreadable tuning file"):
            assert ex.default_direct_below(1, 64, np.float64) == expected
    else:
        assert ex.default_direct_below(1, 64, np.float64) == expected
    _store(4, width=64)  # a new tune replaces the broken file
    assert ex.default_direct_below(1, 64, np.float64) == 4


@pytest.mark.parametrize("value", [0, -4, "16", 2.0, True, None, 3, 48])
def test_odd_stored_values_are_ignored_with_a_warning(cache, value):
    """A value direct_below cannot take (3 is no power of two) would break every stream:
    it is ignored, and the warning names the file and the entry."""
    _store(value, width=64)
    with pytest.warns(RuntimeWarning, match=r"ignoring direct_below = .* for width 64") as info:
        found = NumpyExecutor().default_direct_below(1, 64, np.float64)
    assert found == SHIPPED.lookup("cpu", "float64", 64)
    key = defaults.cache_key(NumpyExecutor(), "float64")
    assert str(cache) in str(info[0].message) and repr(key) in str(info[0].message)
    with pytest.warns(RuntimeWarning, match="power of two"):
        conv = futurefill.OnlineConv(np.ones((64, 32)), 32)  # the shipped value: it runs
    assert conv.plan.spec.get("direct_below") == found


def test_a_stored_radix_below_2_is_ignored_with_a_warning(cache):
    ex = NumpyExecutor()
    entry = {"radix": {"8": {"value": 1}}}
    defaults._write_entry(defaults.cache_key(ex, "float64"), entry, defaults.cache_path())
    with pytest.warns(RuntimeWarning, match=r"ignoring radix = 1 .* must be an int >= 2"):
        conv = futurefill.OnlineConv(np.ones((8, 64)), 64, schedule="reuse", backend=ex)
    assert conv.plan.spec.get("radix") >= 2


def test_tuned_and_untuned_give_the_same_outputs(cache, rng):
    """Tuning only moves pairs between the direct window and the FFT tasks: exact either way."""
    C, L = 3, 96
    phi = decaying_filters(rng, C, L)
    u = rng.standard_normal((2, C, L))
    shipped = SHIPPED.lookup("cpu", "float64", 2 * C)
    _store(2 if shipped != 2 else 8, width=2 * C)
    tuned = OnlineConv(phi, L, batch=2, backend=NumpyExecutor())
    untuned = OnlineConv(phi, L, batch=2, backend=NumpyExecutor(tuned=False))
    assert tuned.plan != untuned.plan
    outs = [np.stack([c.step(np.ascontiguousarray(u[..., t])) for t in range(L)], -1)
            for c in (tuned, untuned)]  # fmt: skip
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(outs[0], oracle(u, phi), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------- shipped tables
def test_shipped_tables_are_package_data():
    table = defaults.ShippedTable.load("futurefill_numpy")
    assert table.backend == "numpy" and table == SHIPPED
    widths = [1, 4, 5, 128, 129, 1024, 1025, 1 << 40]
    assert [table.lookup("cpu", "float64", w) for w in widths] == [128, 128, 64, 64, 32, 32, 16, 16]
    rows = table.measured["rows"]
    assert all(len(r["us_per_token"]) == len(table.measured["direct_below"]) for r in rows)


def test_shipped_table_needs_a_matching_row():
    table = defaults.ShippedTable(backend="x", direct_below={"cuda/*": ((None, 64),)})
    assert table.lookup("cuda", "float32", 3) == 64
    with pytest.raises(KeyError, match="cpu/float64"):
        table.lookup("cpu", "float64", 3)


def test_the_wheel_ships_the_tables():
    from pathlib import Path

    import tomllib

    root = Path(__file__).parents[1]
    wheel = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert "backends/*/crossover.json" in wheel["targets"]["wheel"]["artifacts"]
    for backend in ("numpy", "torch"):
        assert (root / "backends" / f"futurefill_{backend}" / "crossover.json").is_file()


# ---------------------------------------------------------------------- command line
def test_cli_tune_stores_and_shows(cache, capsys):
    from futurefill.cli import main

    argv = ["tune", "--channels", "2", "--length", "32", "--candidates", "1,4", "--repeats", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "direct_below" in out and f"stored in {cache}" in out
    assert main(["tune", "--show"]) == 0
    shown = capsys.readouterr().out
    assert "numpy" in shown and "direct_below" in shown
    assert main(["tune", "--show", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["path"] == str(cache) and len(data["entries"]) == 1


def test_cli_tune_json_dry_run_with_epochs(cache, capsys):
    from futurefill.cli import main

    argv = ["tune", "--channels", "1", "--length", "32", "--candidates", "2", "--repeats", "1"]
    assert main([*argv, "--epochs", "4,8", "--dry-run", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["direct_below"] == 2 and result["epoch"] in (4, 8)
    assert result["path"] is None and not cache.exists()
    assert main([*argv, "--epochs", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "epoch" in out and "not stored" in out


def test_cli_tune_radices(cache, capsys):
    from futurefill.cli import main

    argv = ["tune", "--channels", "1", "--length", "32", "--candidates", "2", "--repeats", "1"]
    assert main([*argv, "--radices", "2,3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["radix"] in (2, 3) and set(result["radix_us"]) == {"2", "3"}
    assert main(["tune", "--show"]) == 0
    assert "radix" in capsys.readouterr().out


def test_library_versions_name_the_array_library():
    torch = pytest.importorskip("torch")
    from futurefill_torch import TorchExecutor

    versions = defaults.library_versions(TorchExecutor())
    assert versions["torch"] == torch.__version__
    assert versions["futurefill"] == futurefill.__version__
    assert versions["python"].startswith(f"{sys.version_info.major}.")
