"""A plan's tiling of the input x output triangle, drawn (matplotlib on demand).

:func:`plot_plan` draws how a :class:`~futurefill.plan.Plan` tiles the input x output triangle
of a causal convolution: every pair (input ``s``, output ``j``) with ``s <= j`` is covered
exactly once, by the prefill, by the local window summed directly at step ``j`` or by one
FutureFill task. :mod:`futurefill.measure.plot` re-exports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..plan import Plan
from ._figures import pyplot_axes, require_matplotlib

__all__ = ["PREFILL_GID", "TASKS_GID", "WINDOWS_GID", "plot_plan"]

WINDOW_COLOR = "#c9c9c9"
PREFILL_COLOR = "#9ecae1"

#: ``gid`` of the collections drawn by :func:`plot_plan` (tests and callers find them by it).
TASKS_GID = "futurefill-tasks"
WINDOWS_GID = "futurefill-windows"
PREFILL_GID = "futurefill-prefill"


def _plan_title(plan: Plan) -> str:
    cost = plan.cost()
    params = [f"L={plan.length}"]
    if plan.prompt:
        params.append(f"prompt={plan.prompt}")
    if plan.spec is not None:
        params += [f"{name}={value}" for name, value in plan.spec.params.items()]
    line1 = f"{plan.schedule} schedule ({', '.join(params)})"
    line2 = (
        f"{plan.num_tasks} FutureFill tasks; per channel {cost.online_flops:.3g} online FLOPs "
        f"({cost.flops_per_step:.3g}/step), worst step t={cost.worst_step}"
    )
    return f"{line1}\n{line2}"


def _rects(x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray) -> np.ndarray:
    """Closed rectangles ``[x0, x1) x [y0, y1)`` as an ``(n, 4, 2)`` vertex array."""
    x0, x1, y0, y1 = (np.asarray(v, dtype=np.float64) for v in (x0, x1, y0, y1))
    return np.stack(
        [np.stack([x0, y0], -1), np.stack([x1, y0], -1), np.stack([x1, y1], -1),
         np.stack([x0, y1], -1)],
        axis=1,
    )  # fmt: skip


def _prefill_polygon(plan: Plan) -> np.ndarray:
    """Cells ``(s, j)`` with ``s < prompt`` and ``s <= j`` covered by the prefill."""
    P = plan.prompt
    top = plan.total if plan.prefill_fills_future else P
    # Staircase along the diagonal for the prompt's own outputs, then a full-width block below.
    stairs = [(float(k + 1), float(k + dk)) for k in range(P) for dk in (0, 1)]
    return np.array([(0.0, 0.0), *stairs[:-1], (float(P), float(top)), (0.0, float(top))])


def _luminance(rgba: Any) -> float:
    r, g, b = (float(v) for v in rgba[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _triangle_outline(total: int) -> np.ndarray:
    stairs = [(float(k + 1), float(k + dk)) for k in range(total) for dk in (0, 1)]
    return np.array([(0.0, 0.0), *stairs, (0.0, float(total)), (0.0, 0.0)])


def plot_plan(
    plan: Plan,
    ax: Any = None,
    *,
    color_by: str = "size",
    annotate: bool | None = None,
) -> Any:
    """Draw how a plan tiles the input x output triangle of the causal convolution.

    Cell ``(s, j)`` stands for the term ``phi[j - s] * u[s]`` of output ``y[j]``. Rows are
    outputs (growing downwards, like the rows of the convolution matrix), columns are inputs.
    Each FutureFill task is the rectangle ``src[start, stop) x dst[start, stop)``, coloured by
    its FFT size or by the step after which it runs; each online step's local window is the
    thin grey row ``[window_start, j]`` of output ``j``; a prompt's prefill is the blue region
    of the first ``prompt`` columns. A valid plan covers every cell once.

    Parameters
    ----------
    plan : Plan
        The schedule to draw (from :func:`futurefill.make_plan`).
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new pyplot figure by default.
    color_by : {"size", "step"}
        Colour the tasks by FFT size (discrete legend) or by the step after which they run
        (colorbar).
    annotate : bool, optional
        Write the step ``t`` inside each task; by default only for plans of at most 32
        positions, where the labels fit.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.

    Examples
    --------
    On a figure of its own (without ``ax``: a new pyplot figure, which notebooks show);
    ``ax.figure.savefig("plan.png")`` would save it:

    >>> import futurefill
    >>> from matplotlib.figure import Figure
    >>> from futurefill.measure.plot_plan import TASKS_GID, plot_plan
    >>> plan = futurefill.make_plan(16, schedule="continuous")
    >>> ax = plot_plan(plan, ax=Figure().add_subplot())
    >>> [tasks] = [c for c in ax.collections if c.get_gid() == TASKS_GID]
    >>> len(tasks.get_paths()) == plan.num_tasks  # one rectangle per task
    True
    """
    require_matplotlib()
    if not isinstance(plan, Plan):
        raise TypeError(f"plot_plan draws a futurefill.Plan, got {type(plan).__name__}")
    if color_by not in ("size", "step"):
        raise ValueError(f"color_by must be 'size' or 'step', got {color_by!r}")
    total = plan.total
    if annotate is None:
        annotate = total <= 32
    if ax is None:
        side = 6.5 if total <= 32 else 7.5
        ax = pyplot_axes((side + 2.0, side))
    edge = max(0.15, min(1.2, 48.0 / total))
    handles: list[Any] = [_draw_prefill(ax, plan, edge)] if plan.prompt else []
    handles.append(_draw_windows(ax, plan))
    colorbar_mappable = None
    if plan.num_tasks:
        tasks = _draw_tasks(ax, plan, edge, color_by, handles)
        if color_by == "step":
            colorbar_mappable = tasks
        if annotate:
            _annotate_tasks(ax, plan, tasks, by_step=colorbar_mappable is not None)
    _draw_outline(ax, plan)
    _frame(ax, total)
    _legend_and_colorbar(ax, plan, handles, colorbar_mappable)
    return ax


def _add_region(ax: Any, polygons: list[np.ndarray], gid: str, label: str, **style: Any) -> Any:
    """Draw ``polygons`` in one collection tagged ``gid``; return its legend entry."""
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    collection = PolyCollection(polygons, **style)
    collection.set_gid(gid)
    ax.add_collection(collection)
    return Patch(facecolor=style["facecolors"], label=label)


def _draw_prefill(ax: Any, plan: Plan, edge: float) -> Any:
    """The prefill: one FFT convolution of the whole prompt; its legend entry."""
    what = "prompt outputs + future cache" if plan.prefill_fills_future else "prompt outputs"
    label = f"prefill: 1 FFT of size {plan.prefill_fft_size} ({what})"
    style = {"facecolors": PREFILL_COLOR, "edgecolors": "white", "linewidths": edge}
    return _add_region(ax, [_prefill_polygon(plan)], PREFILL_GID, label, **style)


def _draw_windows(ax: Any, plan: Plan) -> Any:
    """The local windows: output ``j`` sums inputs ``window_start[t] .. j`` directly; their
    legend entry."""
    j = plan.prompt + np.arange(plan.length)
    rows = list(_rects(plan.window_start, j + 1, j + 0.12, j + 0.88))
    label = "local window (direct sum at step t)"
    style = {"facecolors": WINDOW_COLOR, "edgecolors": "none"}
    return _add_region(ax, rows, WINDOWS_GID, label, **style)


def _draw_tasks(ax: Any, plan: Plan, edge: float, color_by: str, handles: list[Any]) -> Any:
    """The FutureFill tasks (the collection returned), coloured by FFT size (legend entries in
    ``handles``) or by the step after which they run (for a colorbar)."""
    from matplotlib.collections import PolyCollection

    verts = _rects(plan.src_start, plan.src_stop, plan.dst_start, plan.dst_stop)
    tasks = PolyCollection(list(verts), edgecolors="white", linewidths=edge)
    tasks.set_gid(TASKS_GID)
    if color_by == "size":
        _color_tasks_by_size(tasks, plan, handles)
    else:
        _color_tasks_by_step(tasks, plan)
    ax.add_collection(tasks)
    return tasks


def _color_tasks_by_size(tasks: Any, plan: Plan, handles: list[Any]) -> None:
    """One colour per FFT size, with its task count in the legend."""
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    sizes = np.unique(plan.fft_size)
    base = colormaps["viridis"]
    palette = [base(x) for x in np.linspace(0.15, 0.9, len(sizes))]
    index = np.searchsorted(sizes, plan.fft_size)
    tasks.set_facecolor([palette[i] for i in index])
    cost = plan.cost()
    for size, color in zip(sizes, palette, strict=True):
        count = cost.tasks_by_fft_size[int(size)][0]
        plural = "s" if count > 1 else ""
        handles.append(Patch(facecolor=color, label=f"FFT size {size}: {count} task{plural}"))


def _color_tasks_by_step(tasks: Any, plan: Plan) -> None:
    """Colours mapped from the step after which each task runs (discrete for short plans)."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, Normalize

    cmap = colormaps["viridis"]
    if plan.length <= 24:
        bounds = np.arange(plan.length + 1) - 0.5
        norm: Any = BoundaryNorm(bounds, cmap.N)
    else:
        norm = Normalize(vmin=0, vmax=max(plan.length - 1, 1))
    tasks.set_array(plan.after_step.astype(np.float64))
    tasks.set_cmap(cmap)
    tasks.set_norm(norm)


def _annotate_tasks(ax: Any, plan: Plan, tasks: Any, *, by_step: bool) -> None:
    """Write the step ``t`` inside each task, in a colour that reads on its face (mapped
    from the step ``by_step``, else the face colour set)."""
    faces = tasks.to_rgba(plan.after_step.astype(np.float64)) if by_step else tasks.get_facecolor()
    for t, a, b, c, d, face in zip(
        plan.after_step, plan.src_start, plan.src_stop, plan.dst_start, plan.dst_stop,
        faces, strict=True,
    ):  # fmt: skip
        big = min(b - a, d - c) >= 2
        ax.text(
            (a + b) / 2,
            (c + d) / 2,
            f"t={t}" if big else str(t),
            ha="center",
            va="center",
            fontsize=8 if big else 6.5,
            color="black" if _luminance(face) > 0.5 else "white",
        )


def _draw_outline(ax: Any, plan: Plan) -> None:
    """The outline of the triangle and the prompt's boundary."""
    outline = _triangle_outline(plan.total)
    ax.plot(outline[:, 0], outline[:, 1], color="black", linewidth=0.8)
    if plan.prompt:
        ax.axvline(plan.prompt, color="black", linestyle=":", linewidth=0.8)
        ax.axhline(plan.prompt, color="black", linestyle=":", linewidth=0.8)


def _frame(ax: Any, total: int) -> None:
    """Limits, aspect, ticks and axis labels of a plan's ``total x total`` picture."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(0, total)
    ax.set_ylim(total, 0)  # outputs grow downwards, as rows of the convolution matrix
    ax.set_aspect("equal")
    if total <= 32:  # label every cell (every other one above 16) at its centre
        ticks = np.arange(0, total, 1 if total <= 16 else 2)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_ticks(ticks + 0.5, [str(k) for k in ticks])
            axis.set_tick_params(length=0)
    else:  # label cell boundaries
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(nbins=16, integer=True))
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("input position s")
    ax.set_ylabel("output position j")


def _legend_and_colorbar(ax: Any, plan: Plan, handles: list[Any], colorbar_mappable: Any) -> None:
    """The title, the legend of what covers the cells and the steps' colorbar (if any)."""
    ax.set_title(_plan_title(plan), fontsize=10, pad=10)
    ax.legend(
        handles=handles,
        loc="upper right",
        fontsize=8,
        framealpha=0.95,
        title="covered by",
        title_fontsize=8,
    )
    if colorbar_mappable is not None:
        bar = ax.figure.colorbar(colorbar_mappable, ax=ax, shrink=0.8, pad=0.02)
        bar.set_label("task runs after step t")
        if plan.length <= 24:
            bar.set_ticks(np.arange(plan.length))


# ---------------------------------------------------------------------- scaling
