"""Figures of the measuring tools: matplotlib on demand, new axes, saving."""

from __future__ import annotations

from os import PathLike
from typing import Any

__all__ = ["new_axes", "pyplot_axes", "require_matplotlib", "save_figure"]


def require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "futurefill's plots need matplotlib, which is not installed: "
            "pip install 'futurefill[plot]'"
        ) from exc
    return matplotlib


def new_axes(figsize: tuple[float, float]) -> Any:
    """Axes on a new figure drawn by the Agg canvas, without touching pyplot's global state."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def pyplot_axes(figsize: tuple[float, float]) -> Any:
    """Axes on a new pyplot figure (shown by notebooks and interactive sessions)."""
    require_matplotlib()
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def save_figure(ax: Any, path: str | PathLike[str], *, dpi: int = 150) -> None:
    """Save the figure of ``ax`` to ``path`` (format from the suffix, e.g. ``.png``, ``.svg``).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Any axes of the figure.
    path : str or path-like
        Output file.
    dpi : int
        Resolution of raster formats.
    """
    ax.figure.savefig(path, dpi=dpi)


# ---------------------------------------------------------------------- plans
