"""The GPU table of issue 20 in one run: one layer and two models, naive vs FutureFill.

Times, on one backend and float32 (see :mod:`futurefill.measure.gpu_table`):

* one depthwise layer, D = 64 and 1024, L = 16384, 65536 and 131072: naive (estimated from
  ``--naive-window`` steps around L/2 and at the end, where L is long), continuous, reuse and
  the offline FFT floor -- time per token, ratio to naive and to the floor, peak device memory;
* Hyena 4x256 and 4x1024 generating 16384 and 65536 tokens, naive vs continuous: the long
  convolution, the rest of the model, the speedup and its Amdahl ceiling, peak device memory.

Everything runs within ``--budget`` seconds (300 by default), the small configurations first;
what no longer fits is written as "not run: out of time". Writes ``table.md`` and
``table.json`` to ``--out`` and prints the Markdown. Peak device memory is read from the
backend's library: ``torch.cuda.max_memory_allocated`` (reset before each method),
the CuPy memory pool's held bytes (emptied before each method: the pool keeps every block it
was given, so what it holds after is the peak), JAX's ``peak_bytes_in_use`` (the process's peak
so far: JAX cannot reset it); ``None`` on the CPU. Tiny sizes run on the CPU for a test:
``--backend numpy --device cpu --channels 4 --lengths 64 --tokens 8 --models hyena:2x8``.

``scripts/gpu-table.sh`` is the usual entry.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import futurefill
from futurefill.executor import Executor
from futurefill.measure.gpu_table import (
    Budget,
    LayerRow,
    MemoryProbe,
    ModelRow,
    ModelSpec,
    NoProbe,
    layer_rows,
    model_rows,
)
from futurefill.measure.gpu_table_render import as_json, markdown

BACKENDS = ("torch", "torch-graphs", "cupy", "jax", "numpy")
#: Steps of the warm-up of a layer run whole (not JAX): the first steps have the small tasks,
#: a whole warm-up run would double the time of the longest configurations.
WARMUP_STEPS = 4096


class TorchProbe:
    """``torch.cuda`` peak allocated bytes, reset before each method."""

    def __init__(self, device: Any) -> None:
        import torch

        self.cuda, self.device = torch.cuda, device

    def reset(self) -> None:
        self.cuda.synchronize(self.device)
        self.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int | None:
        self.cuda.synchronize(self.device)
        return int(self.cuda.max_memory_allocated(self.device))


class CupyProbe:
    """The CuPy default memory pool's held bytes, the pool emptied before each method."""

    def __init__(self) -> None:
        import cupy

        self.pool = cupy.get_default_memory_pool()
        self.sync = cupy.cuda.Device().synchronize

    def reset(self) -> None:
        self.sync()
        self.pool.free_all_blocks()

    def peak(self) -> int | None:
        self.sync()
        return int(self.pool.total_bytes())


class JaxProbe:
    """JAX's ``peak_bytes_in_use`` of the device: the process's peak so far."""

    def __init__(self, device: Any) -> None:
        self.device = device

    def reset(self) -> None:
        """JAX cannot reset its peak."""

    def peak(self) -> int | None:
        stats = self.device.memory_stats()
        return (
            None
            if not stats or "peak_bytes_in_use" not in stats
            else int(stats["peak_bytes_in_use"])
        )


def executor_and_probe(backend: str, device: str | None) -> tuple[Executor, MemoryProbe]:
    """The executor of ``backend`` on ``device`` and the probe of that device's memory."""
    if backend == "numpy":
        return futurefill.get_backend("numpy"), NoProbe()
    if backend in ("torch", "torch-graphs"):
        from futurefill_torch import TorchExecutor

        ex = TorchExecutor(device or "cuda", cuda_graphs=backend == "torch-graphs")
        return ex, TorchProbe(ex.device) if ex.device.type == "cuda" else NoProbe()
    if backend == "cupy":
        return futurefill.get_backend("cupy"), CupyProbe()
    ex = futurefill.get_backend("jax", device=device or "gpu")
    return ex, NoProbe() if ex.device.platform == "cpu" else JaxProbe(ex.device)


def _specs(text: str) -> list[ModelSpec]:
    """``hyena:4x256,hyena:4x1024`` -> model specs."""
    specs = []
    for item in text.split(","):
        mixer, _, shape = item.partition(":")
        layers, _, dim = shape.partition("x")
        if not (mixer and layers.isdigit() and dim.isdigit()):
            raise argparse.ArgumentTypeError(f"a model is MIXER:LAYERSxDIM, got {item!r}")
        specs.append(ModelSpec(mixer, int(layers), int(dim)))
    return specs


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _jobs(
    args: argparse.Namespace, ex: Executor, memory: MemoryProbe, budget: Budget
) -> list[Callable[[], list[LayerRow] | list[ModelRow]]]:
    """The measurements in order, the small ones first."""
    common = {"dtype": args.dtype, "memory": memory, "budget": budget}
    layers = [
        lambda d=d, n=n: layer_rows(
            ex,
            d,
            n,
            window=args.naive_window[0],
            repeats=args.repeats[0],
            warmup_steps=_warmup_steps(args),
            **common,
        )
        for n in sorted(args.lengths)
        for d in sorted(args.channels)
    ]
    models = [
        lambda s=s, n=n: model_rows(ex, s, n, untimed=args.untimed, **common)
        for n in sorted(args.tokens)
        for s in args.models
    ]
    return [*layers, *models]


def _natural(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def _warmup_steps(args: argparse.Namespace) -> int | None:
    """Steps of a schedule's warm-up: ``--warmup-steps`` (0: a whole run), by default 4096,
    or a whole run on JAX, whose rollout program is compiled for its number of steps."""
    if args.warmup_steps is None:
        return None if args.backend == "jax" else WARMUP_STEPS
    return args.warmup_steps or None


def run(args: argparse.Namespace) -> int:
    """Measure, print the Markdown, write ``table.md`` and ``table.json``; return 0."""
    start = time.monotonic()
    ex, memory = executor_and_probe(args.backend, args.device)
    budget = Budget(args.budget)
    layers: list[LayerRow] = []
    models: list[ModelRow] = []
    for job in _jobs(args, ex, memory, budget):
        rows = job()
        target: list[Any] = layers if isinstance(rows[0], LayerRow) else models
        target += rows
        for r in rows:
            print(f"  {time.monotonic() - start:6.0f} s  {r}", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(layers, models)
    (args.out / "table.md").write_text(text)
    data = as_json(layers, models)
    data["run"] = {
        "backend": repr(ex), "dtype": args.dtype, "budget_s": args.budget,
        "seconds": round(time.monotonic() - start, 1), "python": platform.python_version(),
        "naive_window": args.naive_window[0], "repeats": args.repeats[0],
        "warmup_steps": _warmup_steps(args),
        "memory_probe": type(memory).__name__, "untimed": args.untimed,
    }  # fmt: skip
    (args.out / "table.json").write_text(json.dumps(data, indent=1))
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-table"), help="output folder")
    parser.add_argument("--backend", choices=BACKENDS, default="torch")
    parser.add_argument("--device", help="device (default: cuda for torch, gpu for jax)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--channels", type=_ints, default=[64, 1024], metavar="D1,D2")
    parser.add_argument("--lengths", type=_ints, default=[16384, 65536, 131072], metavar="L1,..")
    parser.add_argument(
        "--tokens",
        type=_ints,
        default=[16384, 65536],
        metavar="N1,N2",
        help="new tokens of the model runs",
    )
    parser.add_argument(
        "--models", type=_specs, default=_specs("hyena:4x256,hyena:4x1024"), metavar="MIXER:LxD,..."
    )
    parser.add_argument(
        "--naive-window",
        type=_ints,
        default=[1024],
        metavar="W",
        help="naive steps timed at L/2 and at the end (if 2W < L)",
    )
    parser.add_argument("--repeats", type=_ints, default=[1], help="timed rounds after a warm-up")
    parser.add_argument(
        "--warmup-steps",
        type=_natural,
        default=None,
        metavar="N",
        help="a schedule's warm-up steps (0: all; default 4096, JAX all)",
    )
    parser.add_argument(
        "--untimed",
        action="store_true",
        help="also time each model run untimed (whole-step graphs)",
    )
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for the whole run")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
