"""Regenerate the scaling figure of the docs: ``python docs/scripts/scaling_figure.py``.

Times every shipped schedule and the offline floor on NumPy float64, one depthwise layer of
D = 64 channels, at each length of ``--lengths`` (one process per run, best of ``--repeats``
rounds after a warm-up round: :func:`futurefill.measure.bench.bench_configuration`), writes the
rows and a description of the machine to ``docs/img/scaling-numpy.json`` and draws
``docs/img/scaling-numpy.png`` with :func:`futurefill.measure.plot.plot_scaling`.

The figure shows the **processor time** of the best round per token (``cpu_seconds``, all
threads of the process: for ``deadline`` that includes its worker thread), not the wall time:
on a shared machine other tenants inflate the wall time, not the processor time. Its title
names the backend and the machine. ``--from FILE`` redraws from saved rows without measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

import futurefill
from futurefill.measure.bench import bench_configuration
from futurefill.measure.plot import _new_axes, plot_scaling, save_figure

IMG = Path(__file__).resolve().parent.parent / "img"
LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768)
CHANNELS = 64


def machine() -> str:
    """``"2-core x86_64 Linux (CPU model), NumPy 2.4"``: what the figure was measured on."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text(encoding="utf-8").splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    return (
        f"{os.cpu_count()}-core {platform.machine()} {platform.system()} ({model}), "
        f"NumPy {np.__version__}"
    )


def measure(lengths: list[int], repeats: int) -> dict[str, Any]:
    """The rows of every length, with the machine and its load average before and after."""
    load_before = os.getloadavg()[0]
    rows = [
        result.as_dict()
        for length in lengths
        for result in bench_configuration(
            length=length, channels=CHANNELS, backend="numpy", repeats=repeats
        )
    ]
    return {
        "machine": machine(),
        "futurefill": futurefill.__version__,
        "repeats": repeats,
        "load_average": [load_before, os.getloadavg()[0]],
        "rows": rows,
    }


def draw(data: dict[str, Any], path: Path) -> None:
    """The figure: processor microseconds per token against length, slopes in the legend."""
    rows = [
        {
            "schedule": row["schedule"],
            "length": row["length"],
            "us_per_token": row["cpu_seconds"] / row["length"] * 1e6,
        }
        for row in data["rows"]
    ]
    low, high = data["load_average"]
    title = (
        f"NumPy float64, D = {CHANNELS}: processor time per token (best of {data['repeats']} "
        f"rounds; dotted: least-squares fit)\n{data['machine']}; load average "
        f"{low:.1f} -> {high:.1f}"
    )
    ax = plot_scaling(rows, ax=_new_axes((8.0, 5.2)), title=title)
    ax.set_ylabel("processor time per token (µs)")
    save_figure(ax, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--from", dest="source", type=Path, default=None)
    args = parser.parse_args()
    json_path = IMG / "scaling-numpy.json"
    if args.source is None:
        data = measure([int(n) for n in args.lengths.split(",")], args.repeats)
        json_path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    else:
        data = json.loads(args.source.read_text(encoding="utf-8"))
    draw(data, IMG / "scaling-numpy.png")
    print(f"wrote {IMG / 'scaling-numpy.png'} ({data['machine']})")


if __name__ == "__main__":
    main()
