"""The ``futurefill`` command: dispatch, each subcommand on small sizes, and its errors."""

from __future__ import annotations

import json
import sys

import pytest

import futurefill
from futurefill.cli import main

matplotlib = pytest.importorskip("matplotlib")


def cli(argv: list[str]) -> int:
    """Exit status of ``futurefill argv`` (argparse exits by SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


# ---------------------------------------------------------------------- dispatch
def test_version(capsys):
    assert cli(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"futurefill {futurefill.__version__}"


def test_top_level_help_is_plain_text(capsys):
    assert cli(["--help"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out
    for name in ("demo", "bench", "plan", "bench-model"):
        assert name in out


def test_a_command_is_required(capsys):
    assert cli([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("futurefill: error:") and err.count("\n") == 1


def test_entry_point_is_the_package_main():
    from pathlib import Path

    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["futurefill"] == "futurefill.cli:main"


# ---------------------------------------------------------------------- plan
def test_plan_prints_the_cost_table_and_validates(capsys):
    status = cli(["plan", "--length", "64", "--schedule", "continuous", "--validate"])
    out = capsys.readouterr().out
    assert status == 0
    plan = futurefill.make_plan(64, schedule="continuous")
    assert out.startswith(str(plan.cost()))
    assert "FutureFill tasks          : 63" in out
    assert "validate: OK" in out


def test_plan_options_reach_the_plan(capsys):
    argv = ["-L", "100", "-s", "epoched", "--prompt", "9", "--epoch", "7", "-C", "4", "-B", "2"]
    assert cli(["plan", *argv]) == 0
    out = capsys.readouterr().out
    plan = futurefill.make_plan(100, schedule="epoched", prompt=9, epoch=7)
    assert out.strip() == str(plan.cost(channels=4, batch=2))
    assert "epoch=7" in out and "4 x 2" in out


def test_plan_draws_the_plot(tmp_path, capsys):
    path = tmp_path / "plan.png"
    argv = ["--length", "16", "--direct-below", "2", "--plot", str(path), "--color-by", "step"]
    assert cli(["plan", *argv]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot: wrote {path}" in capsys.readouterr().out


def test_plan_reports_bad_arguments(capsys):
    assert cli(["plan", "--length", "16", "--schedule", "naive", "--epoch", "4"]) == 2
    err = capsys.readouterr().err
    assert err == "futurefill plan: error: schedule 'naive' takes no parameters, not epoch\n"
    assert cli(["plan", "--length", "0"]) == 2
    assert cli(["plan", "--schedule", "continuous"]) == 2  # --length is required


def test_plan_validate_reports_a_broken_plan(monkeypatch, capsys):
    def broken(self):
        raise futurefill.PlanError("output 3: inputs counted twice or skipped")

    monkeypatch.setattr(futurefill.Plan, "validate", broken)
    assert cli(["plan", "--length", "8", "--validate"]) == 1
    assert "validate: FAILED: output 3" in capsys.readouterr().out


# ---------------------------------------------------------------------- bench, demo, bench-model
def test_bench_prints_a_table(capsys):
    assert cli(["bench", "--length", "64", "--channels", "2"]) == 0
    out = capsys.readouterr().out
    for method in ("naive", "epoched", "continuous", "offline"):
        assert method in out


def test_bench_json(capsys):
    assert cli(["bench", "--length", "32", "--channels", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["schedule"] for r in rows} == {"naive", "epoched", "continuous", "offline"}


def test_demo_runs_small(capsys):
    argv = ["demo", "--length", "64", "--channels", "2", "--model-prompt", "8"]
    assert cli([*argv, "--model-tokens", "16"]) == 0
    out = capsys.readouterr().out
    assert "stu" in out and "hyena" in out and "NO" not in out


def test_bench_model_runs_small(capsys):
    argv = ["--layers", "1", "--dim", "8", "--vocab", "16", "--tokens", "24", "--prompt", "0", "9"]
    assert cli(["bench-model", *argv]) == 0
    out = capsys.readouterr().out
    assert "continuous" in out and "naive" in out


def test_module_runs_as_a_script():
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "futurefill.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"futurefill {futurefill.__version__}"
