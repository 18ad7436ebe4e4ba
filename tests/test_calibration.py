"""The cost model: FLOPs in units of the offline floor, the calibration and the predicted time.

No test compares a time with a threshold: the calibrations measured here only have to be
well formed; the predictions are checked on hand-made calibrations, where they are exact.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from futurefill import make_plan, predicted_seconds
from futurefill.executor import Executor
from futurefill.measure.bench import OFFLINE, bench_configuration
from futurefill.measure.calibration import Calibration, calibrate, calibration_grid
from futurefill.plan import PredictedTime, TimeModel, predict_time
from futurefill.plan.cost import fft_flops, floor_flops, window_widths


def _model(step: float = 2.0, tap: float = 0.5, per_size: float = 1.0) -> Calibration:
    """Windows cost ``step + tap * (w - 1)``; a task of size n costs ``per_size * n``."""
    return Calibration(
        backend="hand",
        device="default",
        dtype="float64",
        batch=1,
        channels=1,
        step_seconds_by_width={1: step, 4: step + 3 * tap, 64: step + 63 * tap},
        task_seconds_by_size={n: per_size * n for n in (2, 4, 8, 16, 32, 64)},
        call_seconds=0.25,
    )


# ---------------------------------------------------------------------- FLOPs vs the floor
@pytest.mark.parametrize("schedule", ["naive", "epoched", "continuous"])
@pytest.mark.parametrize("prompt", [0, 24])
def test_flops_split_into_transforms_and_multiply_adds(schedule: str, prompt: int) -> None:
    cost = make_plan(200, schedule=schedule, prompt=prompt).cost(channels=3, batch=2)
    total = cost.transform_flops + cost.multiply_add_flops
    assert total == pytest.approx(cost.prefill_flops + cost.online_flops)
    assert cost.floor_flops == pytest.approx(6 * floor_flops(prompt + 200))
    assert cost.total_vs_floor == pytest.approx(total / cost.floor_flops)
    assert "x offline floor" in str(cost)


def test_the_floor_is_one_fft_pair_of_the_whole_sequence() -> None:
    n = 2048  # next_pow2(2 * 1000 - 1)
    assert floor_flops(1000) == pytest.approx(2 * fft_flops(n) + 6 * (n // 2 + 1))


def test_naive_does_no_transforms() -> None:
    L = 256
    cost = make_plan(L, schedule="naive").cost()
    assert cost.transform_flops == 0
    assert cost.multiply_add_flops == pytest.approx(L * (L + 1))  # 2 FLOPs per tap
    assert cost.multiply_add_vs_floor > 1  # quadratic work against the floor's n log n


def test_continuous_transforms_grow_like_log_l_times_the_floor() -> None:
    ratios = [make_plan(L, schedule="continuous").cost().transform_vs_floor for L in (1024, 16384)]
    assert 1 < ratios[0] < ratios[1] < 2 * ratios[0]


# ---------------------------------------------------------------------- the predicted time
def test_calibration_is_a_time_model() -> None:
    assert isinstance(_model(), TimeModel)


def test_window_interpolation_is_piecewise_linear_and_extends_the_last_slope() -> None:
    model = _model(step=2.0, tap=0.5)
    widths = np.array([1, 2, 4, 30, 64, 128])
    np.testing.assert_allclose(model.window_seconds(widths), 2.0 + 0.5 * (widths - 1))
    assert model.step_seconds == 2.0
    assert model.tap_seconds == pytest.approx(0.5)


def test_noise_only_adds_time_so_larger_sizes_cap_smaller_ones() -> None:
    noisy = Calibration(
        backend="hand",
        device="default",
        dtype="float64",
        batch=1,
        channels=1,
        step_seconds_by_width={1: 5.0, 2: 4.0, 8: 9.0, 16: 30.0, 32: 20.0},
        task_seconds_by_size={2: 3.0, 4: 2.0, 8: 6.0},
    )
    widths = np.array([1, 2, 8, 16, 32])
    assert list(noisy.window_seconds(widths)) == [4.0, 4.0, 9.0, 20.0, 20.0]
    assert list(noisy.task_seconds(np.array([2, 4, 8]))) == pytest.approx([2.0, 2.0, 6.0])
    plan = make_plan(8, schedule="naive")
    assert predict_time(plan, noisy).windows >= 0


def test_task_interpolation_is_log_log_and_n_log_n_beyond() -> None:
    model = _model(per_size=1.0)
    np.testing.assert_allclose(model.task_seconds(np.array([2, 16, 64])), [2, 16, 64])
    assert model.task_seconds(np.array([128]))[0] == pytest.approx(64 * (128 * 7) / (64 * 6))


def test_predicted_time_adds_up_the_plan() -> None:
    model = _model(step=2.0, tap=0.5, per_size=1.0)
    for schedule in ("naive", "epoched", "continuous"):
        plan = make_plan(64, schedule=schedule)
        widths = window_widths(plan)
        predicted = predict_time(plan, model)
        assert predicted.steps == pytest.approx(2.0 * 64)
        assert predicted.windows == pytest.approx(0.5 * float((widths - 1).sum()))
        assert predicted.tasks == pytest.approx(float(plan.fft_size.sum()))
        assert predicted.task_overhead == pytest.approx(2.0 * plan.num_tasks)
        assert predicted.calls == 0
        assert predicted.seconds == pytest.approx(
            predicted.steps + predicted.windows + predicted.tasks
        )
        assert predicted_seconds(plan, model) == pytest.approx(predicted.seconds)
        with_calls = predict_time(plan, model, calls=True)
        assert with_calls.seconds == pytest.approx(predicted.seconds + 0.25 * 64)


def test_a_long_rollout_pays_for_its_output_and_step_calls_do_not() -> None:
    model = Calibration(
        **_model().head(),
        step_seconds_by_width={1: 2.0},
        task_seconds_by_size={2: 1.0},
        output_seconds=0.75,
    )
    plan = make_plan(32, schedule="naive")
    rolled, stepped = predict_time(plan, model), predict_time(plan, model, calls=True)
    assert rolled.output == pytest.approx(0.75 * 32) and stepped.output == 0
    assert rolled.seconds - rolled.windows == pytest.approx((2.0 + 0.75) * 32)
    assert Calibration.from_dict(model.as_dict()) == model


def test_overhead_share() -> None:
    p = PredictedTime(steps=1.0, windows=2.0, tasks=6.0, task_overhead=1.0, calls=0.0)
    assert p.overhead == 2.0 and p.overhead_share == pytest.approx(2 / 9)


def test_calibration_round_trips_through_plain_data() -> None:
    model = _model()
    again = Calibration.from_dict(model.as_dict())
    assert again == model


def test_calibration_grid_covers_the_plans() -> None:
    plans = [make_plan(100, schedule="epoched", epoch=10), make_plan(64, direct_below=4)]
    sizes, widths = calibration_grid(plans, extra_sizes=[512])
    assert set(sizes) == {2, 128, 8, 16, 32, 64, 512}
    assert widths == [1, 2, 4, 8, 10]


# ---------------------------------------------------------------------- measuring
def test_calibrate_measures_every_size_and_width(backend: Executor) -> None:
    cal = calibrate(
        backend,
        channels=2,
        batch=2,
        fft_sizes=[8],
        window_widths=[4],
        rounds=1,
        budget=1e-4,
        max_steps=8,
        positions=40,
        rollout_steps=16,
    )
    assert cal.backend == backend.name and (cal.batch, cal.channels) == (2, 2)
    assert set(cal.task_seconds_by_size) == {2, 8}
    assert set(cal.step_seconds_by_width) == {1, 4}
    values = [*cal.task_seconds_by_size.values(), *cal.step_seconds_by_width.values()]
    assert all(v > 0 and math.isfinite(v) for v in values)
    assert cal.call_seconds >= 0 and cal.output_seconds >= 0
    plan = make_plan(32, direct_below=4)
    assert predicted_seconds(plan, cal) > 0


def test_bench_predicts_every_method() -> None:
    results = bench_configuration(length=32, channels=2, predict=True)
    by_method = {r.schedule: r for r in results}
    for r in results:
        assert r.predicted_seconds is not None and r.predicted_seconds > 0
        assert r.measured_vs_predicted == pytest.approx(r.seconds / r.predicted_seconds)
        assert r.cpu_seconds >= 0 and 0 <= r.predicted_overhead <= 1
    assert by_method[OFFLINE].flops_vs_floor == 1.0
    assert all(r.flops_vs_floor > 0 for r in results)
    plain = bench_configuration(length=16, channels=1, schedules=("continuous",))
    assert all(r.predicted_seconds is None and r.measured_vs_predicted is None for r in plain)


def test_calibration_waits_for_tasks_run_in_the_background(monkeypatch) -> None:
    """The calibration's tasks are due later than the next step, so the NumPy executor hands
    them to its worker thread: each timed round must wait for them (else it times only their
    submission, and they go on running into later measurements)."""
    from futurefill_numpy import NumpyExecutor

    ex = NumpyExecutor()
    settled: list[int] = []
    queued: list[int] = []
    settle = ex.settle

    def counting_settle(state) -> None:
        deferred = state.workspace.deferred
        queued.append(0 if deferred is None else len(deferred.pending))
        settle(state)
        settled.append(0 if deferred is None else len(deferred.pending))

    monkeypatch.setattr(ex, "settle", counting_settle)
    calibrate(ex, channels=2, fft_sizes=[64], window_widths=[1], rounds=1, max_steps=8)
    assert queued and max(queued) > 0  # tasks did go to the worker
    assert settled and max(settled) == 0  # and every round waited for them
