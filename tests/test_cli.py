"""The ``futurefill`` command: dispatch, each subcommand on small sizes, and its errors."""

from __future__ import annotations

import argparse
import json
import os
import sys

import pytest

import futurefill
import futurefill.memory
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
    for name in ("demo", "bench", "plan", "bench-model", "tune"):
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
    assert {r["schedule"] for r in rows} == {*futurefill.SCHEDULES, "offline"}


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


# ---------------------------------------------------------------------- bad arguments
def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith(f"futurefill {command}: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def no_long_work(monkeypatch):
    """Fail the test if a command starts benchmarking or building models."""

    def refuse(*args, **kwargs):
        raise AssertionError("long work started before the arguments were checked")

    for target in (
        "futurefill.cli.bench.bench_configuration",
        "futurefill.cli.bench.measure_crossover",
        "futurefill.cli._latency.measure_latency",
        "futurefill.cli.tune.tune",
        "futurefill.cli.demo.bench_configuration",
        "futurefill.cli.demo.demo_models",
        "futurefill.cli.bench_model.compare_schedules",
        "futurefill.cli.bench_model.ConvLM",
        "futurefill.cli.plan.make_plan",
    ):
        monkeypatch.setattr(target, refuse)


BAD_ARGUMENTS = [
    (["bench", "--length", "-4"], "--length"),
    (["bench", "--length", "0"], "--length"),
    (["bench", "--channels", "0"], "--channels"),
    (["bench", "--lengths", "32,abc"], "--lengths"),
    (["bench", "--lengths", "32,-8"], "--lengths"),
    (["bench", "--lengths", ""], "--lengths"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--backend", "nope"], "nope"),
    (["bench", "--schedules", "naive,fast"], "fast"),
    (["bench", "--schedules", "reuse:radix"], "param=value"),
    (["bench", "--schedules", "reuse:epoch=4"], "radix, direct_below"),
    (["bench", "--schedules", "reuse:radix=1"], "radix must be >= 2"),
    (["bench", "--schedules", "reuse:radix=two"], "'two' is not an integer"),
    (["bench", "--schedules", "continuous:direct_below=3"], "power of two"),
    (["bench", "--plot", "scaling.unknownext"], "unknownext"),
    (["bench", "--plot", "/nonexistent-dir/scaling.png"], "/nonexistent-dir"),
    (["bench", "--crossover", "--plot", "x.png"], "--crossover"),
    (["bench", "--crossover", "--lengths", "32,64"], "--crossover"),
    (["bench", "--latency", "--lengths", "32,64"], "--latency"),
    (["bench", "--latency", "--crossover"], "--latency"),
    (["bench", "--latency", "--repeats", "3"], "--latency"),
    (["bench", "--warmup-steps", "4"], "--warmup-steps"),
    (["bench", "--latency", "--length", "32", "--warmup-steps", "33"], "--warmup-steps"),
    (["bench", "--latency", "--warmup-steps", "-1"], "--warmup-steps"),
    (["tune", "--candidates", "1,3"], "powers of two"),
    (["tune", "--candidates", "0"], "--candidates"),
    (["tune", "--radices", "1,4"], "--radices must be at least 2"),
    (["tune", "--length", "64", "--epochs", "8,65"], "--epochs"),
    (["tune", "--channels", "0"], "--channels"),
    (["tune", "--device", "cpu"], "--device needs --backend"),
    (["tune", "--backend", "nope"], "nope"),
    (["demo", "--length", "-1"], "--length"),
    (["demo", "--model-tokens", "0"], "--model-tokens"),
    (["demo", "--model-prompt", "-3"], "--model-prompt"),
    (["plan", "--length", "8", "--plot", "plan.unknownext"], "unknownext"),
    (["plan", "--length", "8", "--channels", "0"], "--channels"),
    (["bench-model", "--layers", "0"], "--layers"),
    (["bench-model", "--dim", "-1"], "--dim"),
    (["bench-model", "--tokens", "0"], "--tokens"),
    (["bench-model", "--prompt", "-1"], "--prompt"),
    (["bench-model", "--mlp-ratio", "-2"], "--mlp-ratio"),
    (["bench-model", "--mlp-ratio", "nan"], "--mlp-ratio"),
    (["bench-model", "--batch", "0"], "--batch"),
    (["bench-model", "--seed", "-1"], "--seed"),
    (["bench-model", "--backend", "nope"], "nope"),
    (["bench-model", "--schedules", "naive,fast"], "fast"),
    (["bench-model", "--schedules", ","], "--schedules"),
    (["bench-model", "--stu-k", "0"], "--stu-k"),
    (["bench-model", "--vocab", "0"], "--vocab"),
    # sizes: beyond the 2**30 positions a plan holds, below what the calibration times
    (["demo", "--length", "99999999999999999999"], "--length: must be <= 1073741824"),
    (["bench", "--length", "1073741825"], "--length: must be <= 1073741824"),
    (["bench", "--lengths", "8,1073741825"], "--lengths: must be <= 1073741824"),
    (["plan", "--length", "1073741825"], "--length/-L: must be <= 1073741824"),
    (["plan", "--length", "8", "--prompt", "100000000000"], "--prompt/-P: must be <="),
    (["tune", "--length", "1073741825"], "--length: must be <= 1073741824"),
    (["bench-model", "--prompt", "100000000000"], "--prompt: must be <= 1073741824"),
    (["bench-model", "--tokens", "1073741825"], "--tokens: must be <= 1073741824"),
    (["bench-model", "--prompt", "1073741000", "--tokens", "1000"], "--prompt 1073741000 +"),
    (["demo", "--model-prompt", "1073741000", "--model-tokens", "1000"], "(2**30) positions"),
    (["bench", "--length", "1"], "--length must be >= 3 for the cost model's calibration"),
    (["bench", "--length", "2"], "(or pass --no-predict)"),
    (["bench", "--lengths", "1,2"], "--lengths must be >= 3"),
    # options the command does not take: named by the command, the closest one suggested
    (["bench", "--lenght", "5"], "unrecognized arguments: --lenght 5 (--lenght: did you mean"),
    (["plan", "--length", "8", "--chanels=2"], "--chanels=2: did you mean --channels?"),
    (["tune", "--zzz"], "unrecognized arguments: --zzz"),
]

#: Sizes that do not fit in 1 GiB: refused before any work (see ``one_gib``).
TOO_LARGE = [
    (["bench", "--channels", "100000000000"], "the filters and 5 states need at least"),
    (["bench", "--channels", "4096", "--length", "65536"], "--channels 4096 x --length 65536"),
    (["demo", "--channels", "100000000000"], "the filters and 5 states"),
    (["tune", "--channels", "100000", "--batch", "8"], "x --batch 8: the filters and 9 states"),
    (["bench-model", "--tokens", "200000000"], "over 200004096 positions (--prompt + --tokens)"),
]


@pytest.mark.parametrize(("argv", "fragment"), BAD_ARGUMENTS)
def test_bad_arguments_are_one_line_and_status_2(argv, fragment, capsys, no_long_work):
    assert cli(argv) == 2
    assert fragment in _one_line_error(capsys, argv[0])


@pytest.fixture
def one_gib():
    """A memory limit of 1 GiB, whatever the machine has."""
    futurefill.memory.set_memory_limit(1 << 30)
    yield
    futurefill.memory.set_memory_limit(None)


@pytest.mark.parametrize(("argv", "fragment"), TOO_LARGE)
def test_sizes_that_do_not_fit_are_refused_first(argv, fragment, capsys, one_gib, no_long_work):
    assert cli(argv) == 2
    err = _one_line_error(capsys, argv[0])
    assert fragment in err and "1.0 GiB is available" in err


def test_a_plan_that_does_not_fit_is_one_line(capsys, one_gib):
    assert cli(["plan", "--length", "1073741824"]) == 2
    assert "a plan of 1073741824 steps" in _one_line_error(capsys, "plan")


def test_a_size_the_library_refuses_while_running_is_one_line(monkeypatch, capsys):
    def refuse(**kwargs):
        raise MemoryError("the state of 1x64 channels needs about 9.0 GiB but only 1.0 GiB is")

    monkeypatch.setattr("futurefill.cli.demo.bench_configuration", refuse)
    assert cli(["demo", "--length", "8"]) == 2
    assert "needs about 9.0 GiB" in _one_line_error(capsys, "demo")


def test_plot_to_a_directory_is_refused_before_the_work(tmp_path, capsys, no_long_work):
    assert cli(["plan", "--length", "8", "--plot", str(tmp_path)]) == 2
    assert "directory" in _one_line_error(capsys, "plan")
    assert cli(["bench", "--plot", str(tmp_path)]) == 2
    assert "directory" in _one_line_error(capsys, "bench")


def test_plot_under_a_file_is_refused_before_the_work(tmp_path, capsys, no_long_work):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("")
    assert cli(["bench", "--plot", str(not_a_folder / "x.png")]) == 2
    assert "not an existing directory" in _one_line_error(capsys, "bench")


def test_bench_scaling_plot(tmp_path, capsys):
    path = tmp_path / "scaling.svg"
    argv = ["bench", "--lengths", "16,32", "--channels", "1", "--plot", str(path)]
    assert cli(argv) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    assert path.read_text().lstrip().startswith("<?xml")


def test_plot_without_a_suffix_reports_the_file_written(tmp_path, capsys):
    path = tmp_path / "tiling"
    assert cli(["plan", "--length", "8", "--plot", str(path)]) == 0
    written = tmp_path / "tiling.png"
    assert written.read_bytes()[:4] == b"\x89PNG"
    assert f"plot: wrote {written}" in capsys.readouterr().out


def test_bench_schedules_with_parameters(capsys):
    argv = ["bench", "--length", "64", "--channels", "2", "--no-predict", "--json"]
    assert cli([*argv, "--schedules", "continuous,reuse:radix=4:direct_below=2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    labels = [r["schedule"] for r in rows]
    assert labels == ["continuous", "reuse(direct_below=2, radix=4)", "offline"]
    assert all(r["max_deviation"] < 1e-12 for r in rows if r["max_deviation"] is not None)


def test_plan_refuses_a_parameter_of_another_schedule(capsys):
    assert cli(["plan", "--length", "8", "--schedule", "continuous", "--radix", "4"]) == 2
    assert "takes direct_below, not radix" in _one_line_error(capsys, "plan")


def test_plan_prints_the_shared_transforms(capsys):
    argv = ["plan", "--length", "64", "--schedule", "reuse", "--radix", "4", "--validate"]
    assert cli(argv) == 0
    out = capsys.readouterr().out
    # levels of 1, 4 and 16 steps: 16, 4 and 1 groups of 4 blocks, each 3 forward, 6
    # products and 3 inverse transforms
    assert "shared transforms         : 63 forward, 126 products, 63 inverse" in out
    assert "validate: OK" in out


def test_bench_backend_from_the_environment(monkeypatch, capsys):
    pytest.importorskip("array_api_strict")
    monkeypatch.setenv("FUTUREFILL_BACKEND", "array_api_strict")
    argv = ["bench", "--length", "16", "--channels", "1", "--schedules", "naive", "--json"]
    assert cli(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["backend"] for r in rows} == {"array_api_strict"}


def test_bench_bad_backend_in_the_environment(monkeypatch, capsys, no_long_work):
    monkeypatch.setenv("FUTUREFILL_BACKEND", "nope")
    assert cli(["bench"]) == 2
    assert "FUTUREFILL_BACKEND" in _one_line_error(capsys, "bench")


def test_jax_float64_without_x64_is_a_usage_error(capsys, no_long_work):
    jax = pytest.importorskip("jax")
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        status = cli(["bench", "--backend", "jax", "--length", "16"])
    finally:
        jax.config.update("jax_enable_x64", previous)
    assert status == 2
    assert "JAX_ENABLE_X64" in _one_line_error(capsys, "bench")


def test_bench_plot_to_an_unwritable_place_fails_first(tmp_path, capsys, no_long_work):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        assert cli(["bench", "--plot", str(locked / "x.png")]) == 2
    finally:
        locked.chmod(0o700)
    assert "not writable" in _one_line_error(capsys, "bench")


# ---------------------------------------------------------------------- newcomers
def test_bench_help_shows_defaults_and_duration(capsys):
    assert cli(["bench", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "default: 32768" in out and "default: 64" in out
    assert "FUTUREFILL_BACKEND" in out
    assert "about a minute" in out


def test_every_option_has_help():
    from futurefill.cli import build_parser

    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, f"futurefill {name} {action.option_strings} has no help"


def test_bench_reports_warmup_apart(capsys):
    argv = ["bench", "--length", "32", "--channels", "2", "--schedules", "continuous"]
    assert cli(argv) == 0
    assert "warm-up s" in capsys.readouterr().out
    assert cli([*argv, "--json"]) == 0
    row, offline = json.loads(capsys.readouterr().out)
    assert offline["schedule"] == "offline"
    expected = max(row["first_run_seconds"] - row["seconds"], 0.0)
    assert row["warmup_seconds"] == pytest.approx(expected)


def test_demo_prints_the_time_it_took(capsys, monkeypatch):
    """The time the demo reports is its own measurement, wall and processor time, from
    after the argument checks to the end (fake clocks: no wall-clock time asserted)."""
    clocks = {"perf_counter": iter([100.0, 142.5]), "process_time": iter([7.0, 46.5])}
    for name, values in clocks.items():
        monkeypatch.setattr(f"futurefill.cli.demo.{name}", lambda values=values: next(values))
    argv = ["demo", "--length", "16", "--channels", "1", "--model-prompt", "0"]
    assert cli([*argv, "--model-tokens", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "futurefill demo took 42.5 s (39.5 s of processor time)"
    assert all(next(values, None) is None for values in clocks.values())  # read twice each


def test_demo_without_a_model_prompt(capsys):
    argv = ["demo", "--length", "16", "--channels", "1", "--model-prompt", "0"]
    assert cli([*argv, "--model-tokens", "4"]) == 0
    assert "identical" in capsys.readouterr().out


def test_bench_model_short_stu_run(capsys):
    argv = ["bench-model", "--mixer", "stu", "--layers", "1", "--dim", "4", "--vocab", "8"]
    assert cli([*argv, "--tokens", "4", "--prompt", "0"]) == 0
    assert "identical" in capsys.readouterr().out


def test_crossover_json(capsys):
    argv = ["bench", "--crossover", "--length", "32", "--channels", "1", "--json"]
    assert cli(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["direct_below"] for r in rows} >= {1, 2, 4}
    assert all(r["us_per_token"] > 0 for r in rows)


def test_bench_configuration_checks_repeats():
    from futurefill.measure.bench import bench_configuration

    with pytest.raises(ValueError, match="repeats"):
        bench_configuration(length=8, channels=1, repeats=0)


# ---------------------------------------------------------------------- cost model, latency
def test_bench_prints_the_prediction_beside_the_time(capsys):
    argv = ["bench", "--length", "32", "--channels", "2", "--schedules", "naive,continuous"]
    assert cli(argv) == 0
    out = capsys.readouterr().out
    assert "pred s" in out and "s/pred" in out
    assert "cost model" in out and "FLOPs ÷ floor" in out and "cpu/pred" in out
    assert cli([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        assert row["predicted_seconds"] > 0
        assert row["measured_vs_predicted"] == pytest.approx(
            row["seconds"] / row["predicted_seconds"]
        )


def test_bench_no_predict_skips_the_calibration(capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("calibrated although --no-predict")

    monkeypatch.setattr("futurefill.measure.bench.calibrate", refuse)
    argv = ["bench", "--length", "16", "--channels", "1", "--no-predict", "--json"]
    assert cli(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(row["predicted_seconds"] is None for row in rows)
    assert cli(argv[:-1]) == 0
    assert "arithmetic vs overhead" not in capsys.readouterr().out


def test_bench_latency_table_json_and_plot(tmp_path, capsys):
    argv = ["bench", "--latency", "--length", "32", "--channels", "2", "--warmup-steps", "8"]
    assert cli(argv) == 0
    out = capsys.readouterr().out
    for word in ("p50", "p99.9", "max/p50", "warm-up", "naive", "epoched", "continuous"):
        assert word in out
    assert cli([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["schedule"] for r in rows] == list(futurefill.SCHEDULES)
    for r in rows:
        assert r["p50_us"] <= r["p99_us"] <= r["p99.9_us"] <= r["max_us"]
        assert r["warmup_steps"] == 8
    assert rows[0]["max_deviation"] is None and rows[2]["max_deviation"] <= 1e-12
    path = tmp_path / "latency.svg"
    assert cli([*argv, "--schedules", "continuous", "--plot", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    assert path.read_text().lstrip().startswith("<?xml")


def test_bench_open_ended_table_and_json(capsys):
    argv = ["bench", "--open-ended", "--lengths", "20,50", "--channels", "2"]
    assert cli(argv) == 0
    out = capsys.readouterr().out
    for word in ("open-ended", "known s", "ratio", "continuous"):
        assert word in out
    assert cli([*argv, "--schedules", "epoched,naive", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["schedule"], r["length"]) for r in rows] == [
        ("epoched", 20), ("epoched", 50), ("naive", 20), ("naive", 50)
    ]  # fmt: skip
    for r in rows:
        assert r["max_deviation"] <= 1e-12 and r["open_s"] > 0 and r["known_s"] > 0
        assert r["ratio"] == r["open_s"] / r["known_s"]
    assert cli([*argv, "--latency"]) == 2
    assert "takes no" in capsys.readouterr().err
