"""Plan pictures, scaling plots and ``futurefill plan``: the drawn artists match the plan."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import futurefill

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from futurefill.measure import plot  # noqa: E402

PLANS = [
    dict(length=16, schedule="continuous"),
    dict(length=64, schedule="continuous"),
    dict(length=64, schedule="continuous", direct_below=4),
    dict(length=37, schedule="continuous", prompt=5),
    dict(length=16, schedule="epoched"),
    dict(length=50, schedule="epoched", prompt=7, epoch=6),
    dict(length=16, schedule="naive"),
    dict(length=12, schedule="naive", prompt=4),
]


def _collection(ax, gid):
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert len(found) <= 1
    return found[0] if found else None


def _boxes(collection) -> np.ndarray:
    """``(n, 4)`` array of ``x0, x1, y0, y1`` of each rectangle of a collection."""
    boxes = []
    for path in collection.get_paths():
        v = path.vertices
        boxes.append((v[:, 0].min(), v[:, 0].max(), v[:, 1].min(), v[:, 1].max()))
    return np.array(boxes).reshape(-1, 4)


def _polygon_area(v: np.ndarray) -> float:
    x, y = v[:, 0], v[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _ax():
    return plot._new_axes((6.0, 5.0))


@pytest.mark.parametrize("kwargs", PLANS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_plot_plan_draws_every_task_window_and_prefill(kwargs):
    plan = futurefill.make_plan(**kwargs)
    ax = plot.plot_plan(plan, ax=_ax())

    tasks = _collection(ax, plot.TASKS_GID)
    if plan.num_tasks == 0:
        assert tasks is None
    else:
        boxes = _boxes(tasks)
        assert len(boxes) == plan.num_tasks
        np.testing.assert_array_equal(boxes[:, 0], plan.src_start)
        np.testing.assert_array_equal(boxes[:, 1], plan.src_stop)
        np.testing.assert_array_equal(boxes[:, 2], plan.dst_start)
        np.testing.assert_array_equal(boxes[:, 3], plan.dst_stop)

    windows = _boxes(_collection(ax, plot.WINDOWS_GID))
    assert len(windows) == plan.length
    rows = plan.prompt + np.arange(plan.length)
    np.testing.assert_array_equal(windows[:, 0], plan.window_start)
    np.testing.assert_array_equal(windows[:, 1], rows + 1)
    # Thin rows inside the output's own row.
    assert np.all(windows[:, 2] > rows) and np.all(windows[:, 3] < rows + 1)

    prefill = _collection(ax, plot.PREFILL_GID)
    assert (prefill is not None) == (plan.prompt > 0)

    # The drawn pieces tile the triangle: task cells + window cells + prefill cells = all pairs.
    cells = 0
    if plan.num_tasks:
        cells += int(((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).sum())
    cells += int((windows[:, 1] - windows[:, 0]).sum())
    if prefill is not None:
        cells += round(_polygon_area(prefill.get_paths()[0].vertices))
    n = plan.total
    assert cells == n * (n + 1) // 2

    assert ax.get_xlim() == (0, n)
    assert ax.get_ylim() == (n, 0)
    assert plan.schedule in ax.get_title()
    assert f"{plan.num_tasks} FutureFill tasks" in ax.get_title()


def test_plot_plan_colors_by_fft_size_with_a_legend_entry_per_size():
    plan = futurefill.make_plan(64, schedule="continuous")
    ax = plot.plot_plan(plan, ax=_ax())
    faces = _collection(ax, plot.TASKS_GID).get_facecolors()
    sizes = np.unique(plan.fft_size)
    # One colour per FFT size, and tasks of equal size share it.
    assert len({tuple(f) for f in faces}) == len(sizes)
    for size in sizes:
        assert len({tuple(f) for f in faces[plan.fft_size == size]}) == 1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    for size in sizes:
        count = int((plan.fft_size == size).sum())
        assert any(label.startswith(f"FFT size {size}: {count} task") for label in labels)
    assert any("local window" in label for label in labels)


def test_plot_plan_colors_by_step_with_a_colorbar():
    plan = futurefill.make_plan(16, schedule="continuous")
    ax = plot.plot_plan(plan, ax=_ax(), color_by="step")
    tasks = _collection(ax, plot.TASKS_GID)
    np.testing.assert_array_equal(tasks.get_array(), plan.after_step)
    assert len(ax.figure.axes) == 2  # the plot and its colorbar


def test_plot_plan_annotates_small_plans_only():
    small = plot.plot_plan(futurefill.make_plan(16, schedule="continuous"), ax=_ax())
    assert len(small.texts) == 15
    big = plot.plot_plan(futurefill.make_plan(64, schedule="continuous"), ax=_ax())
    assert len(big.texts) == 0


def test_plot_plan_rejects_bad_arguments():
    plan = futurefill.make_plan(8)
    with pytest.raises(ValueError, match="color_by"):
        plot.plot_plan(plan, ax=_ax(), color_by="fft")
    with pytest.raises(TypeError, match="Plan"):
        plot.plot_plan("continuous", ax=_ax())


def test_plot_plan_draws_on_the_given_axes():
    ax = _ax()
    plan = futurefill.make_plan(16, schedule="epoched")
    assert plot.plot_plan(plan, ax=ax) is ax
    assert len(_collection(ax, plot.TASKS_GID).get_paths()) == plan.num_tasks


def test_plot_plan_without_axes_uses_pyplot():
    import matplotlib.pyplot as plt

    ax = plot.plot_plan(futurefill.make_plan(8))
    try:
        assert ax.figure in [plt.figure(n) for n in plt.get_fignums()]
    finally:
        plt.close(ax.figure)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'futurefill\[plot\]'"):
        plot.plot_plan(futurefill.make_plan(8))
    with pytest.raises(ImportError, match=r"futurefill\[plot\]"):
        plot.plot_scaling([{"schedule": "naive", "length": 8, "us_per_token": 1.0}])


# ---------------------------------------------------------------------- scaling
def _power_rows(schedule, exponent, scale=1.0, lengths=(256, 1024, 4096, 16384)):
    return [
        {"schedule": schedule, "length": L, "us_per_token": scale * L**exponent} for L in lengths
    ]


def test_fit_slope_recovers_power_laws():
    L = np.array([64, 256, 1024, 4096])
    assert plot.fit_slope(L, 3.0 * L**1.0) == pytest.approx(1.0)
    assert plot.fit_slope(L, 0.1 * L**0.5) == pytest.approx(0.5)
    assert plot.fit_slope(L, np.full(4, 7.0)) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(plot.fit_slope([128, 128], [1.0, 2.0]))


def test_plot_scaling_lines_and_slopes_in_the_legend(tmp_path):
    rows = (
        _power_rows("naive", 1.0, 0.01)
        + _power_rows("epoched", 0.5, 0.5)
        + _power_rows("continuous", 0.0, 20.0)
    )
    rows.append({"schedule": "continuous", "length": 64, "us_per_token": 20.0, "extra": 1})
    path = tmp_path / "scaling.png"
    ax = plot.plot_scaling(rows, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "naive (slope 1.00)",
        "epoched (slope 0.50)",
        "continuous (slope 0.00)",
    ]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    data_lines = [line for line in ax.get_lines() if line.get_label() in labels]
    continuous = next(line for line in data_lines if line.get_label().startswith("continuous"))
    np.testing.assert_array_equal(continuous.get_xdata(), [64, 256, 1024, 4096, 16384])


def test_plot_scaling_names_lines_by_backend_when_several():
    rows = [dict(r, backend="numpy") for r in _power_rows("naive", 1.0)] + [
        dict(r, backend="torch") for r in _power_rows("naive", 1.0, 2.0)
    ]
    ax = plot.plot_scaling(rows, ax=_ax())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["numpy: naive (slope 1.00)", "torch: naive (slope 1.00)"]


def test_plot_scaling_single_length_has_no_slope():
    ax = plot.plot_scaling([{"schedule": "naive", "length": 8, "us_per_token": 1.0}], ax=_ax())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["naive"]


@pytest.mark.parametrize(
    "rows, match",
    [
        ([], "at least one row"),
        ([{"schedule": "naive", "length": 8}], "us_per_token"),
        ([{"schedule": "naive", "length": 8, "us_per_token": 0.0}], "positive"),
    ],
)
def test_plot_scaling_rejects_bad_rows(rows, match):
    with pytest.raises(ValueError, match=match):
        plot.plot_scaling(rows, ax=_ax())
