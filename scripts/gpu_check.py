"""The GPU check: the tests on torch-CUDA, CuPy and JAX-GPU, then a same-run benchmark.

Meant for a machine with one CUDA GPU, the libraries preinstalled and no network (what it needs
is listed in ``docs/backends.md``, "The GPU check"). It cannot pass by skipping: each part runs
in its own pytest process with a JUnit report, and fails on a failure, on a skip whose reason
does not hold on a GPU machine, on a GPU variant no passed test ran on, or when its library
does not see the GPU (JAX runs with ``JAX_PLATFORMS=cuda`` and must report
``jax.default_backend() == 'gpu'``); see ``gpu_check_report.py``. The environment (torch and
its CUDA version, the GPU's name, JAX's backend, the CuPy runtime version) is recorded.

``--quick`` (the default) runs the backend test files and a one-configuration benchmark within
:data:`QUICK_SECONDS`; ``--full`` runs the whole suite per part and the benchmark at full size.
Prints one summary line per part, writes ``summary.json``, the reports and the logs to
``--out``, and exits non-zero unless every part passed. ``--judge REPORT --part NAME`` only
judges a saved JUnit report (exit status 0 or 1). ``scripts/gpu-check.sh`` is the usual entry.

Benchmark: float32, one depthwise layer with feedback ``u[t+1] = tanh(y[t])``, the schedules
vs the offline FFT floor, timed in one process per configuration
(``futurefill.measure.bench.bench_configuration``: a warm-up round reported apart, then best of
``--repeats`` round-robin rounds).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_check_report import Verdict, judge_junit, judge_probe

ROOT = Path(__file__).resolve().parent.parent
#: The time ``--quick`` keeps to, tests and benchmark together (under six minutes): the test
#: parts take at most their ``seconds`` (260 in all), the benchmark what is left.
QUICK_SECONDS = 320
BASE_FILES = ("tests/test_online.py", "tests/test_custom_schedules.py")


@dataclass(frozen=True)
class Part:
    """One pytest run: the GPU variants it selects, its quick files, its environment."""

    name: str
    variants: tuple[str, ...]
    files: tuple[str, ...]
    seconds: int  # its share of the quick budget
    env: tuple[tuple[str, str], ...] = ()


PARTS = (
    Part(
        "torch-cuda",
        ("torch_cuda", "torch_cuda_graphs"),
        (
            *BASE_FILES,
            "tests/test_backend_torch.py",
            "tests/test_backend_torch_module.py",
            "tests/test_backend_torch_graphs.py",
            "tests/test_backend_torch_decode_graphs.py",
            "tests/test_backend_torch_precision.py",
            "tests/test_models_stu.py",
        ),
        seconds=120,
    ),
    Part("cupy", ("cupy",), (*BASE_FILES, "tests/test_backend_cupy.py"), seconds=60),
    Part(
        "jax-gpu",
        ("jax",),
        (*BASE_FILES, "tests/test_backend_jax.py"),
        seconds=80,
        env=(("JAX_PLATFORMS", "cuda"),),
    ),
)
#: What each part's library says about the GPU, printed as one JSON line.
PROBES = {
    "torch-cuda": (
        "import json, torch; ok = torch.cuda.is_available(); print(json.dumps({"
        "'torch': torch.__version__, 'cuda': torch.version.cuda, 'available': ok, "
        "'gpu': torch.cuda.get_device_name(0) if ok else None}))"
    ),
    "cupy": (
        "import json, cupy; r = cupy.cuda.runtime; print(json.dumps({"
        "'cupy': cupy.__version__, 'runtime': r.runtimeGetVersion(), "
        "'driver': r.driverGetVersion(), 'gpu': r.getDeviceProperties(0)['name'].decode()}))"
    ),
    "jax-gpu": (
        "import json, jax; print(json.dumps({'jax': jax.__version__, "
        "'backend': jax.default_backend(), 'devices': [str(d) for d in jax.devices()]}))"
    ),
}
#: Benchmark configurations (channels, length) and schedules: quick, full.
BENCH = {
    True: (((64, 8192),), ("naive", "continuous")),
    False: (((64, 32768), (1024, 16384)), ("naive", "epoched", "continuous")),
}


#: The probe's entries in the summary line.
_SHOWN = ("torch", "cuda", "available", "gpu", "cupy", "runtime", "driver", "jax", "backend")


def _env(part: Part) -> dict[str, str]:
    return dict(
        os.environ,
        FUTUREFILL_TEST_BACKENDS=",".join(part.variants),
        JAX_ENABLE_X64="1",
        XLA_PYTHON_CLIENT_PREALLOCATE="false",  # several test processes share the GPU
        **dict(part.env),
    )


def _probe(part: Part) -> dict[str, Any]:
    """Run the part's probe in its own process, with the part's environment."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBES[part.name]],
            env=_env(part),
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": repr(exc)}
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-20:] or [""]
        env = " ".join(f"{k}={v}" for k, v in part.env)
        where = f" with {env}" if env else ""
        return {"error": f"{tail[-1]} (exit status {done.returncode}{where})", "stderr": tail}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _run_tests(part: Part, out: Path, quick: bool, seconds: float) -> Verdict:
    report = out / f"{part.name}.xml"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    cmd += [f"--junitxml={report}"]
    if importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", str(min(8, os.cpu_count() or 1))]
    cmd += list(part.files) if quick else ["tests"]
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=_env(part), capture_output=True, text=True, timeout=seconds
        )
        log = done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        log = f"{exc.stdout or ''}\n{exc.stderr or ''}\ntimed out after {seconds:.0f} s"
        log = log if isinstance(log, str) else repr(log)
        (out / f"{part.name}.log").write_text(log)
        return Verdict(problems=[f"timed out after {seconds:.0f} s"])
    (out / f"{part.name}.log").write_text(log)
    return judge_junit(report, part.variants)


def _executors() -> list[tuple[str, Any]]:
    """(label, executor or the reason it is missing) for every GPU backend."""
    import futurefill

    def graphed() -> Any:
        from futurefill_torch import TorchExecutor

        return TorchExecutor("cuda", cuda_graphs=True)

    found: list[tuple[str, Any]] = []
    for label, make in (
        ("torch-cuda", lambda: futurefill.get_backend("torch", device="cuda")),
        ("torch-cuda-graphs", graphed),
        ("cupy", lambda: futurefill.get_backend("cupy")),
        ("jax-gpu", lambda: futurefill.get_backend("jax", device="gpu")),
    ):
        try:
            found.append((label, make()))
        except Exception as exc:
            found.append((label, f"unavailable: {exc!r}"))
    return found


def _bench(out: Path, quick: bool, repeats: int, deadline: float) -> Verdict:
    os.environ["JAX_PLATFORMS"] = "cuda"  # before JAX is first imported, in this process
    from futurefill.measure.bench import bench_configuration

    configs, schedules = BENCH[quick]
    verdict, rows = Verdict(), []
    for label, executor in _executors():
        for channels, length in configs:
            if isinstance(executor, str) or time.monotonic() > deadline:
                why = executor if isinstance(executor, str) else "not run: out of time"
                verdict.problems.append(f"{label} D={channels}: {why}")
                rows.append({"label": label, "channels": channels, "error": why})
                continue
            try:
                results = bench_configuration(
                    length=length, channels=channels, backend=executor, dtype="float32",
                    schedules=schedules, repeats=repeats,
                )  # fmt: skip
            except Exception as exc:
                verdict.problems.append(f"{label} D={channels}: {exc!r}")
                rows.append({"label": label, "channels": channels, "error": repr(exc)})
                continue
            for r in results:
                rows.append({"label": label, **r.as_dict()})
                print(
                    f"  {label:18s} D={channels:<5d} L={length:<6d} {r.schedule:11s} "
                    f"{r.us_per_token:9.2f} us/token  floor {r.ratio_to_floor:8.1f}x  "
                    f"warm-up {r.warmup_seconds:6.2f} s",
                    flush=True,
                )
            (out / "bench.json").write_text(json.dumps(rows, indent=1))
    verdict.counts = {"rows": sum("error" not in r for r in rows)}
    return verdict


def _environment() -> dict[str, Any]:
    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.node()}
    try:
        smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        env["gpus"] = smi.stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError) as exc:
        env["gpus"] = f"nvidia-smi failed: {exc}"
    return env


def check(args: argparse.Namespace) -> int:
    """Run the parts, print one line each, write ``summary.json``; 0 if all passed."""
    start = time.monotonic()
    budget = QUICK_SECONDS if args.quick else 6 * 3600
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"environment": _environment(), "parts": {}}
    lines = []
    for part in PARTS:
        probe = summary["environment"][part.name] = _probe(part)
        verdict = judge_probe(part.name, probe)
        if verdict.ok and not args.skip_tests:
            left = budget - (time.monotonic() - start)
            seconds = min(part.seconds, left) if args.quick else left
            verdict = _run_tests(part, out, args.quick, max(seconds, 1))
        detail = ", ".join(f"{k} {v}" for k, v in probe.items() if k in _SHOWN)
        lines.append(verdict.line(part.name, detail))
        print(lines[-1], flush=True)
        summary["parts"][part.name] = {"ok": verdict.ok, **vars(verdict)}
    if not args.skip_bench:
        verdict = _bench(out, args.quick, args.repeats, start + budget)
        lines.append(verdict.line("benchmark"))
        print(lines[-1], flush=True)
        summary["parts"]["benchmark"] = {"ok": verdict.ok, **vars(verdict)}
    passed = all(p["ok"] for p in summary["parts"].values())
    seconds = time.monotonic() - start
    summary.update(passed=passed, seconds=round(seconds, 1), lines=lines)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"GPU check: {'PASS' if passed else 'FAIL'} in {seconds:.0f} s ({out / 'summary.json'})")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="output folder")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="quick",
        action="store_true",
        default=True,
        help=f"backend tests and a small benchmark, {QUICK_SECONDS} s (default)",
    )
    size.add_argument("--full", dest="quick", action="store_false",
                      help="the whole suite per part and the full benchmark")  # fmt: skip
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds after a warm-up")
    parser.add_argument("--judge", type=Path, metavar="REPORT",
                        help="only judge a saved JUnit XML report of --part")  # fmt: skip
    parser.add_argument("--part", choices=[p.name for p in PARTS], default="torch-cuda")
    args = parser.parse_args(argv)
    if args.judge is not None:
        part = next(p for p in PARTS if p.name == args.part)
        verdict = judge_junit(args.judge, part.variants)
        print(verdict.line(part.name))
        print("\n".join(verdict.problems))
        return 0 if verdict.ok else 1
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
