"""Regenerate the plan pictures of the docs: ``python docs/scripts/plan_images.py``.

The PNGs in ``docs/img/`` are committed; rerun this after changing the plans or the plotting.
"""

from __future__ import annotations

from pathlib import Path

import futurefill
from futurefill.measure.plot import _new_axes, plot_plan, save_figure

IMG = Path(__file__).resolve().parent.parent / "img"

#: file name -> (make_plan arguments, plot_plan arguments)
PICTURES: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "plan-naive-16.png": (dict(length=16, schedule="naive"), {}),
    "plan-epoched-16.png": (dict(length=16, schedule="epoched", epoch=4), {}),
    "plan-epoched-64.png": (dict(length=64, schedule="epoched"), {}),
    "plan-continuous-16.png": (dict(length=16, schedule="continuous"), {}),
    "plan-continuous-16-step.png": (dict(length=16, schedule="continuous"), {"color_by": "step"}),
    "plan-continuous-64.png": (dict(length=64, schedule="continuous"), {}),
    "plan-continuous-64-direct4.png": (
        dict(length=64, schedule="continuous", direct_below=4),
        {},
    ),
    "plan-continuous-16-prompt8.png": (dict(length=16, schedule="continuous", prompt=8), {}),
    "plan-deadline-64.png": (dict(length=64, schedule="deadline", slack_from=4), {}),
    "plan-deadline-64-step.png": (
        dict(length=64, schedule="deadline", slack_from=4),
        {"color_by": "step"},
    ),
    "plan-reuse-64.png": (dict(length=64, schedule="reuse", radix=4), {}),
}


def main() -> None:
    IMG.mkdir(exist_ok=True)
    for name, (plan_args, plot_args) in PICTURES.items():
        plan = futurefill.make_plan(**plan_args)  # type: ignore[arg-type]
        plan.validate()
        width = 9.0 if plot_args.get("color_by") == "step" else 8.0
        ax = _new_axes((width, 6.5))
        plot_plan(plan, ax=ax, **plot_args)  # type: ignore[arg-type]
        save_figure(ax, IMG / name, dpi=110)
        print(f"wrote {IMG / name}")


if __name__ == "__main__":
    main()
