"""Pictures of plans and of benchmark scaling (matplotlib: ``pip install 'futurefill[plot]'``).

matplotlib is imported inside the functions, so ``import futurefill`` never needs it.

* :func:`plot_plan` draws how a :class:`~futurefill.plan.Plan` tiles the input x output
  triangle of a causal convolution: every pair (input ``s``, output ``j``) with ``s <= j`` is
  covered exactly once, by the prefill, by the local window summed directly at step ``j`` or
  by one FutureFill task.
* :func:`plot_scaling` draws time per token against length on log-log axes, one line per
  schedule, with the least-squares slope of each line in the legend.
* :func:`plot_latency` draws a histogram of per-step times per schedule (log-scaled time).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from os import PathLike
from typing import Any

import numpy as np

from ._figures import new_axes as _new_axes
from ._figures import pyplot_axes as _pyplot_axes
from ._figures import require_matplotlib as _require_matplotlib
from ._figures import save_figure
from .plot_plan import PREFILL_GID, TASKS_GID, WINDOWS_GID, plot_plan

__all__ = [
    "PREFILL_GID",
    "TASKS_GID",
    "WINDOWS_GID",
    "fit_slope",
    "plot_latency",
    "plot_plan",
    "plot_scaling",
    "save_figure",
]

#: Colour of each schedule in :func:`plot_scaling`; other names cycle through ``_EXTRA``.
SCHEDULE_COLORS = {
    "naive": "#d62728",
    "epoched": "#ff7f0e",
    "continuous": "#1f77b4",
    "offline": "#7f7f7f",
}
_EXTRA = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def fit_slope(lengths: Iterable[float], values: Iterable[float]) -> float:
    """Least-squares slope of ``log(values)`` against ``log(lengths)``.

    Parameters
    ----------
    lengths, values : iterable of float
        Positive numbers, at least two distinct lengths.

    Returns
    -------
    float
        The exponent ``a`` of the best fit ``value ~ length**a``; NaN with fewer than two
        distinct lengths.
    """
    x = np.log(np.asarray(list(lengths), dtype=np.float64))
    y = np.log(np.asarray(list(values), dtype=np.float64))
    if x.shape != y.shape:
        raise ValueError("lengths and values must have the same number of entries")
    if np.unique(x).size < 2:
        return math.nan
    slope, _ = np.polyfit(x, y, 1)
    return float(slope)


def _short_int(x: float) -> str:
    """``256``, ``4K``, ``1M``: compact labels for powers of two."""
    n = round(x)
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _series(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    rows = list(rows)
    for k, row in enumerate(rows):
        missing = {"schedule", "length", "us_per_token"} - set(row)
        if missing:
            raise ValueError(f"row {k} lacks {sorted(missing)}: {dict(row)}")
    backends = {row["backend"] for row in rows if "backend" in row}
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        name = str(row["schedule"])
        if len(backends) > 1:
            name = f"{row.get('backend', '?')}: {name}"
        value = float(row["us_per_token"])
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"us_per_token must be positive and finite, got {row}")
        series.setdefault(name, []).append((int(row["length"]), value))
    return series


def plot_scaling(
    rows: Iterable[Mapping[str, Any]],
    path: str | PathLike[str] | None = None,
    *,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Time per token against length on log-log axes, one line per schedule, slopes in the legend.

    A slope of 1 means O(L) work per token (naive), 0.5 the epoched schedule's O(sqrt(L log L)),
    about 0 (plus logarithms) the continuous, deadline and reuse schedules, whose work per
    token is polylogarithmic (amortised for deadline, which spreads tasks over later steps).

    Parameters
    ----------
    rows : iterable of mapping
        One measurement each: ``{"schedule": str, "length": int, "us_per_token": float}``
        (microseconds per generated token), as ``futurefill bench`` produces them. Other keys
        are ignored, except ``"backend"``: with several backends the lines are named
        ``"backend: schedule"``.
    path : str or path-like, optional
        Save the figure there (rendered by Agg; the format follows the suffix).
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.
    """
    _require_matplotlib()
    series = _series(rows)
    if not series:
        raise ValueError("plot_scaling needs at least one row")
    if ax is None:
        ax = _new_axes((7.0, 4.8)) if path is not None else _pyplot_axes((7.0, 4.8))
    extra = iter(_EXTRA * 4)
    for name, points in series.items():
        points.sort()
        lengths = np.array([p[0] for p in points], dtype=np.float64)
        values = np.array([p[1] for p in points])
        schedule = name.rsplit(": ", 1)[-1]
        color = SCHEDULE_COLORS.get(schedule) or next(extra, "black")
        slope = fit_slope(lengths, values)
        label = name if math.isnan(slope) else f"{name} (slope {round(slope, 2) + 0.0:.2f})"
        style = "--" if schedule == "offline" else "-"
        ax.plot(lengths, values, style, marker="o", markersize=4, color=color, label=label)
        if not math.isnan(slope):
            a, b = np.polyfit(np.log(lengths), np.log(values), 1)
            ax.plot(lengths, np.exp(b) * lengths**a, ":", color=color, linewidth=1.0, alpha=0.7)
    ax.set_xscale("log", base=2)
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _short_int(x)))
    ax.set_yscale("log")
    ax.set_xlabel("length L (tokens)")
    ax.set_ylabel("time per token (µs)")
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.15)
    ax.legend(title="schedule (log-log slope)", fontsize=9, title_fontsize=9)
    ax.set_title(title or "Time per token vs length (dotted: least-squares fit)", fontsize=10)
    if path is not None:
        save_figure(ax, path)
    return ax


# ---------------------------------------------------------------------- latency
def plot_latency(
    times: Mapping[str, Any], path: str | PathLike[str] | None = None, *, title: str | None = None
) -> Any:
    """One histogram of per-step times per schedule, on a shared log-scaled time axis.

    Parameters
    ----------
    times : mapping of str to array
        Per-step times in seconds by schedule (e.g. ``{r.schedule: r.seconds for r in
        futurefill.measure.latency.measure_latency(...)}``).
    path : str or path-like, optional
        Save the figure there (rendered by Agg; the format follows the suffix).
    title : str, optional
        Figure title.

    Returns
    -------
    list of matplotlib.axes.Axes
        One per schedule, top to bottom.
    """
    _require_matplotlib()
    series = {name: np.asarray(t, dtype=np.float64) * 1e6 for name, t in times.items()}
    if not series or any(t.size == 0 or not np.all(t > 0) for t in series.values()):
        raise ValueError("plot_latency needs positive per-step times for every schedule")
    low = min(float(t.min()) for t in series.values())
    high = max(float(t.max()) for t in series.values())
    bins = np.geomspace(low, high * 1.0001, 80) if high > low else np.array([low, low * 2])
    first = _new_axes((7.5, 1.9 * len(series) + 0.8)) if path else _pyplot_axes((7.5, 5.0))
    fig = first.figure
    fig.delaxes(first)
    axes = fig.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0]
    extra = iter(_EXTRA * 4)
    for ax, (name, us) in zip(axes, series.items(), strict=True):
        schedule = name.rsplit(": ", 1)[-1].split("(")[0]
        color = SCHEDULE_COLORS.get(schedule) or next(extra, "black")
        ax.hist(us, bins=bins, color=color, alpha=0.85)
        p50, p999 = np.percentile(us, [50, 99.9])
        for value, style, label in (
            (p50, "-", "p50"),
            (p999, "--", "p99.9"),
            (us.max(), ":", "max"),
        ):
            ax.axvline(
                value, color="black", linestyle=style, linewidth=0.9, label=f"{label} {value:.3g}"
            )
        ax.set_yscale("log")
        ax.set_ylabel("steps")
        ax.set_title(f"{name} (mean {us.mean():.3g} µs)", fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(True, which="major", alpha=0.3)
    axes[-1].set_xscale("log")
    axes[-1].set_xlabel("time of one OnlineConv.step (µs)")
    fig.suptitle(title or "Per-step latency", fontsize=10)
    if path is not None:
        save_figure(axes[0], path)
    return list(axes)
