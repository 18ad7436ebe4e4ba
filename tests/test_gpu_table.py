"""The GPU table (``scripts/gpu_table.py``, :mod:`futurefill.measure.gpu_table`) at tiny sizes.

No GPU here: the table's code runs on the CPU backends of the ``backend`` fixture with a
stand-in memory probe, and the script end to end on NumPy. What is checked is the table's
shape and that every ratio is computed from the measured times of the same run (never a
wall-clock threshold): ``x naive`` is naive's seconds over the row's, ``/ floor`` the row's
over the floor's, the Amdahl ceiling naive's total over the row's rest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from futurefill.executor import Executor
from futurefill.measure.gpu_table import Budget, ModelSpec, layer_rows, model_rows, with_ratios
from futurefill.measure.gpu_table_render import LAYER_HEADERS, MODEL_HEADERS, markdown

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["naive", "continuous", "reuse", "offline"]


class CountingProbe:
    """A memory probe whose every peak is a new number: rows must carry the one read for them."""

    def __init__(self) -> None:
        self.resets = 0
        self.peaks: list[int] = []

    def reset(self) -> None:
        self.resets += 1

    def peak(self) -> int | None:
        self.peaks.append(1000 + len(self.peaks))
        return self.peaks[-1]


def _cpu(backend: Executor) -> None:
    if backend.name == "jax":
        pytest.skip("the table times JAX's compiled rollouts: too slow for a unit test")


@pytest.mark.parametrize(("window", "warmup_steps"), [(None, None), (8, 5)])
def test_layer_rows_ratios_come_from_the_measured_times(backend, window, warmup_steps) -> None:
    _cpu(backend)
    probe = CountingProbe()
    rows = layer_rows(
        backend, 3, 48, window=window, warmup_steps=warmup_steps, dtype="float64", memory=probe
    )
    assert [r.method for r in rows] == METHODS
    by = {r.method: r for r in rows}
    for r in rows:
        assert r.seconds is not None and r.seconds > 0
        assert r.us_per_token == pytest.approx(r.seconds / 48 * 1e6, rel=1e-12)
        assert r.vs_naive == pytest.approx(by["naive"].seconds / r.seconds, rel=1e-12)
        assert r.vs_floor == pytest.approx(r.seconds / by["offline"].seconds, rel=1e-12)
    assert [r.peak_bytes for r in rows] == probe.peaks  # each row its own reading, in order
    naive = by["naive"]
    if window is None:
        assert naive.timed_steps is None and naive.end_us_per_token is None and not naive.note
    else:
        assert naive.timed_steps == window and naive.end_us_per_token > 0
        assert "estimated" in naive.note
        assert probe.resets >= 2 * 2  # each timed window round (warm-up and best) resets it


def test_a_window_at_least_half_the_length_runs_naive_whole(backend) -> None:
    _cpu(backend)
    (naive, *_) = layer_rows(backend, 2, 16, window=8, dtype="float64")
    assert naive.timed_steps is None and naive.end_us_per_token is None


def test_what_starts_after_the_budget_is_spent_is_listed_as_not_run() -> None:
    ticks = iter([0.0, 0.0, 1.0, 10.0, 10.0])  # construction, then one reading per method
    rows = layer_rows(
        "numpy", 2, 32, dtype="float64", budget=Budget(5.0, clock=lambda: next(ticks))
    )
    assert [r.seconds is not None for r in rows] == [True, True, False, False]
    for r in rows[2:]:
        assert r.note == "not run: out of time"
        assert r.us_per_token is r.vs_naive is r.vs_floor is r.peak_bytes is None
    assert rows[1].vs_naive == pytest.approx(rows[0].seconds / rows[1].seconds, rel=1e-12)
    assert rows[0].vs_floor is None  # no floor was timed


def test_with_ratios_leaves_missing_references_empty() -> None:
    (row,) = layer_rows("numpy", 2, 32, schedules=(), dtype="float64")[:1]
    assert with_ratios([row])[0].vs_floor is None
    assert with_ratios([row])[0].vs_naive == 1.0


def test_model_rows_speedup_ceiling_and_identity(backend) -> None:
    _cpu(backend)
    probe = CountingProbe()
    spec = ModelSpec("hyena", 2, 8)
    rows = model_rows(backend, spec, 12, dtype="float64", memory=probe, untimed=True)
    naive, cont = rows
    assert (naive.schedule, cont.schedule, cont.model) == ("naive", "continuous", "hyena 2x8")
    for r in rows:
        assert r.seconds > 0 and r.long_conv > 0
        assert r.rest == pytest.approx(r.seconds - r.long_conv, rel=1e-9)
        assert r.speedup == pytest.approx(naive.seconds / r.seconds, rel=1e-12)
        assert r.ceiling == pytest.approx(naive.seconds / r.rest, rel=1e-12)
        assert r.identical is True  # float64 greedy tokens: the schedules are exact
        assert r.untimed > 0
        assert r.untimed_speedup == pytest.approx(naive.untimed / r.untimed, rel=1e-12)
    assert [r.peak_bytes for r in rows] == probe.peaks and probe.resets == 2


def test_a_run_whose_untimed_tokens_differ_is_not_identical(monkeypatch) -> None:
    from futurefill.measure import gpu_table

    real = gpu_table._untimed

    def continuous_disagrees(model, new_tokens, schedule, ex):
        seconds, tokens = real(model, new_tokens, schedule, ex)
        return seconds, tokens if schedule == "naive" else tokens + 1

    monkeypatch.setattr(gpu_table, "_untimed", continuous_disagrees)
    rows = model_rows("numpy", ModelSpec("hyena", 1, 4), 6, dtype="float64", untimed=True)
    assert [r.identical for r in rows] == [True, False]


def test_markdown_has_a_row_per_result_under_the_headers() -> None:
    layers = layer_rows("numpy", 2, 32, window=4, dtype="float64")
    models = model_rows("numpy", ModelSpec("hyena", 1, 4), 6, dtype="float64")
    text = markdown(layers, models)
    lines = [line for line in text.splitlines() if line.startswith("| numpy")]
    assert len(lines) == len(layers) + len(models)
    assert "| " + " | ".join(LAYER_HEADERS) + " |" in text
    assert "| " + " | ".join(MODEL_HEADERS) + " |" in text
    assert all(line.count("|") == len(LAYER_HEADERS) + 1 for line in lines[: len(layers)])
    assert all(line.count("|") == len(MODEL_HEADERS) + 1 for line in lines[len(layers) :])


def test_the_script_writes_the_table_and_its_json(tmp_path) -> None:
    out = tmp_path / "table"
    cmd = [
        sys.executable, str(ROOT / "scripts" / "gpu_table.py"), "--backend", "numpy",
        "--channels", "2,3", "--lengths", "8,40", "--tokens", "6", "--models", "hyena:1x4",
        "--naive-window", "4", "--warmup-steps", "5", "--dtype", "float64", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "table.json").read_text())
    layers = data["layer"]
    assert [(r["channels"], r["length"]) for r in layers[::4]] == [
        (2, 8),
        (3, 8),
        (2, 40),
        (3, 40),
    ]
    assert [r["method"] for r in layers] == METHODS * 4
    windowed = [r["length"] for r in layers if r["timed_steps"] is not None]
    assert windowed == [40, 40]  # 2 * 4 < 40, not < 8
    assert [r["schedule"] for r in data["model"]] == ["naive", "continuous"]
    assert data["run"]["memory_probe"] == "NoProbe" and data["run"]["warmup_steps"] == 5
    assert all(r["peak_bytes"] is None for r in layers + data["model"])
    assert (out / "table.md").read_text() in done.stdout


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--models", "hyena:4"], "a model is MIXER:LAYERSxDIM"),
        (["--lengths", "0"], "expected positive integers"),
        (["--channels", "a"], "expected comma-separated integers"),
        (["--warmup-steps", "-1"], "expected an integer >= 0"),
    ],
)
def test_the_script_refuses_bad_options(tmp_path, option, message) -> None:
    cmd = [sys.executable, str(ROOT / "scripts" / "gpu_table.py"), "--backend", "numpy", *option]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr


def test_a_short_warm_up_generates_only_its_steps(monkeypatch) -> None:
    from futurefill.online import OnlineConv

    seen: list[int | None] = []
    real = OnlineConv.rollout

    def recorded(self, u0, feedback, steps=None):
        seen.append(steps)
        return real(self, u0, feedback, steps)

    monkeypatch.setattr(OnlineConv, "rollout", recorded)
    layer_rows("numpy", 2, 32, schedules=("continuous",), warmup_steps=5, repeats=2)
    # naive (no window: run whole) then continuous: a warm-up of 5 steps, two whole rounds
    assert seen == [5, None, None, 5, None, None]
