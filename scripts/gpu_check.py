"""The GPU check: the test suite on torch-CUDA, CuPy and JAX-GPU, then a same-run benchmark.

Meant for a machine with a CUDA GPU and torch, cupy, jax, pytest and futurefill installed, and
no network. Writes ``summary.json`` (environment, test outcome, benchmark rows) and the logs to
``--out``; exits non-zero when a test fails. ``scripts/gpu-check.sh`` is the usual entry.

Benchmark: float32, one depthwise layer with feedback ``u[t+1] = tanh(y[t])``, naive vs
epoched vs continuous vs the offline FFT floor, timed in one process per configuration
(``futurefill.measure.bench.bench_configuration``: a warm-up round reported apart, then best of
``--repeats`` round-robin rounds), at D=64 L=32768 and D=1024 L=16384.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEST_BACKENDS = "torch_cuda,torch_cuda_graphs,cupy,jax"
CONFIGS = ((64, 32768), (1024, 16384))


def _environment() -> dict[str, Any]:
    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.node()}
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        env["gpus"] = out.stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError) as exc:
        env["gpus"] = f"nvidia-smi failed: {exc}"
    for name in ("numpy", "torch", "jax", "cupy", "futurefill"):
        try:
            env[name] = __import__(name).__version__
        except Exception as exc:
            env[name] = f"unavailable: {exc}"
    return env


def _run_tests(out: Path, quick: bool, timeout: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    if importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", str(min(8, os.cpu_count() or 1))]
    if quick:
        cmd += [
            "tests/test_online.py",
            "tests/test_custom_schedules.py",
            "tests/test_backend_torch.py",
            "tests/test_backend_torch_module.py",
            "tests/test_models_stu.py",
            "tests/test_backend_cupy.py",
            "tests/test_backend_jax.py",
        ]
    env = dict(
        os.environ,
        FUTUREFILL_TEST_BACKENDS=TEST_BACKENDS,
        JAX_ENABLE_X64="1",
        XLA_PYTHON_CLIENT_PREALLOCATE="false",  # several test processes share the GPU
    )
    start = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        log, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        log, rc = f"{exc.stdout or ''}\ntimed out after {timeout} s", 124
    (out / "tests.log").write_text(log if isinstance(log, str) else log.decode())
    counts = {
        key: int(n)
        for n, key in re.findall(r"(\d+) (passed|failed|skipped|errors?)", str(log)[-3000:])
    }
    return {
        "command": " ".join(cmd),
        "backends": TEST_BACKENDS,
        "returncode": rc,
        "seconds": round(time.perf_counter() - start, 1),
        **counts,
    }


def _executors() -> list[tuple[str, Any]]:
    """(label, executor or the reason it is missing) for every GPU backend."""
    found: list[tuple[str, Any]] = []
    try:
        from futurefill_torch import TorchExecutor

        found.append(("torch-cuda", TorchExecutor(device="cuda")))
        found.append(("torch-cuda-graphs", TorchExecutor(device="cuda", cuda_graphs=True)))
    except Exception as exc:
        found.append(("torch-cuda", f"unavailable: {exc}"))
    for label, name, device in (("cupy", "cupy", None), ("jax-gpu", "jax", "gpu")):
        try:
            import futurefill

            found.append((label, futurefill.get_backend(name, device=device)))
        except Exception as exc:
            found.append((label, f"unavailable: {exc}"))
    return found


def _bench(out: Path, repeats: int, scale: int) -> list[dict[str, Any]]:
    from futurefill.measure.bench import bench_configuration

    rows: list[dict[str, Any]] = []
    for label, executor in _executors():
        if isinstance(executor, str):
            rows.append({"label": label, "error": executor})
            print(f"{label}: {executor}", flush=True)
            continue
        for channels, length in CONFIGS:
            length //= scale
            try:
                results = bench_configuration(
                    length=length,
                    channels=channels,
                    backend=executor,
                    dtype="float32",
                    repeats=repeats,
                )
            except Exception as exc:
                rows.append({"label": label, "channels": channels, "length": length,
                             "error": repr(exc)})  # fmt: skip
                print(f"{label} D={channels} L={length}: {exc!r}", flush=True)
                continue
            for r in results:
                row = {"label": label, **r.as_dict()}
                rows.append(row)
                print(
                    f"{label:18s} D={channels:<5d} L={length:<6d} {r.schedule:11s} "
                    f"{r.us_per_token:9.2f} us/token  speedup {r.speedup_vs_naive or 0:7.2f}x  "
                    f"floor {r.ratio_to_floor:8.1f}x  warm-up {r.warmup_seconds:6.2f} s  "
                    f"dev {r.max_deviation if r.max_deviation is not None else float('nan'):.1e}",
                    flush=True,
                )
            (out / "bench.json").write_text(json.dumps(rows, indent=1))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="backend tests only, L/4")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds after a warm-up")
    parser.add_argument("--test-timeout", type=int, default=330, help="seconds")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    summary: dict[str, Any] = {"environment": _environment()}
    print(json.dumps(summary["environment"], indent=1), flush=True)
    if not args.skip_tests:
        summary["tests"] = _run_tests(args.out, args.quick, args.test_timeout)
        print(json.dumps(summary["tests"], indent=1), flush=True)
    if not args.skip_bench:
        summary["bench"] = _bench(args.out, args.repeats, 4 if args.quick else 1)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out / 'summary.json'}")
    return 0 if summary.get("tests", {}).get("returncode", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
