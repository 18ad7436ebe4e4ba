"""Per-step latency: one stream for every schedule, the warm-up apart, the summary and the plot.

No test checks a timing against a threshold: only the shape and order of the statistics.
"""

from __future__ import annotations

import numpy as np
import pytest

from futurefill.executor import Executor
from futurefill.measure.latency import LatencyResult, latency_summary, measure_latency


def test_summary_of_known_times():
    seconds = np.arange(1, 1001) * 1e-6  # 1 .. 1000 µs
    s = latency_summary(seconds)
    assert s["mean"] == pytest.approx(500.5)
    assert s["p50"] == pytest.approx(500.5)
    assert s["p99"] == pytest.approx(np.percentile(np.arange(1, 1001), 99))
    assert s["max"] == pytest.approx(1000.0)
    assert np.isnan(latency_summary(np.zeros(0))["p50"])


def test_every_schedule_runs_on_the_same_stream(backend: Executor):
    results = measure_latency(
        length=40,
        channels=2,
        batch=2,
        backend=backend,
        schedules=("naive", "continuous", "epoched"),
        warmup_steps=5,
    )
    assert [r.schedule for r in results] == ["naive", "continuous", "epoched"]
    for r in results:
        assert isinstance(r, LatencyResult) and r.backend == backend.name
        assert r.seconds.shape == (40,) and r.warmup_seconds.shape == (5,)
        assert np.all(r.seconds > 0)
        s = r.summary
        assert s["p50"] <= s["p99"] <= s["p99.9"] <= s["max"]
        assert r.worst_vs_median >= 1 and r.p999_vs_median >= 1
    assert results[0].max_deviation is None
    assert all(r.max_deviation <= 1e-12 for r in results[1:])  # one stream, exact schedules


def test_warmup_defaults_to_a_whole_pass_and_can_be_skipped():
    whole, none = (
        measure_latency(length=16, channels=1, schedules=("continuous",), warmup_steps=w)[0]
        for w in (None, 0)
    )
    assert whole.warmup_seconds.shape == (16,) and none.warmup_seconds.shape == (0,)
    d = whole.as_dict()
    assert d["warmup_steps"] == 16 and d["warmup_total_seconds"] > 0
    assert {"mean_us", "p50_us", "p99_us", "p99.9_us", "max_us"} <= set(d)
    assert "seconds" not in d  # the per-step times stay out of the JSON


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="warmup_steps"):
        measure_latency(length=8, channels=1, warmup_steps=9)
    with pytest.raises(ValueError, match="schedule"):
        measure_latency(length=8, channels=1, schedules=())


def test_plot_latency_draws_a_log_histogram_per_schedule(tmp_path):
    pytest.importorskip("matplotlib")
    from futurefill.measure.plot import plot_latency

    rng = np.random.default_rng(0)
    times = {
        "naive": rng.uniform(1e-5, 2e-5, 100),
        "continuous(direct_below=4)": rng.uniform(5e-6, 1e-3, 100),
    }
    path = tmp_path / "latency.png"
    axes = plot_latency(times, path, title="t")
    assert len(axes) == 2 and path.read_bytes()[:4] == b"\x89PNG"
    assert axes[-1].get_xscale() == "log"
    assert axes[1].get_title(loc="left").startswith("continuous(direct_below=4)")
    with pytest.raises(ValueError):
        plot_latency({"naive": np.zeros(3)})
