"""``scripts/gpu_check.py`` cannot pass by skipping: its judge, run on fake and real reports.

``gpu_check.py --judge REPORT --part NAME`` judges a pytest JUnit XML report the way the GPU
check judges each part's run: a skipped GPU test, a GPU variant no test ran on, a failure or an
empty report exits non-zero; the skips that hold on a GPU machine do not. The reports here are
written by hand (a GPU machine's, and broken ones) or produced by a real pytest run on this
machine, where every CUDA variant skips.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"
PASSED = [
    ("tests.test_online", "test_reset_starts_over[torch_cuda]"),
    ("tests.test_online", "test_reset_starts_over[torch_cuda_graphs]"),
    ("tests.test_online", "test_exact_against_numpy_convolve[torch_cuda_graphs-naive-0-5]"),
]
#: Skips a GPU machine gives: a test for machines without CUDA, another backend's file.
ALLOWED = [
    ("tests.test_backend_torch", "test_cuda_without_device_is_a_runtime_error[cuda]",
     "skipped", "a CUDA device exists here"),
    ("", "tests.test_backend_cupy", "skipped",
     "collection skipped ('tests/test_backend_cupy.py', 21, 'Skipped: cupy is not among "
     "FUTUREFILL_TEST_BACKENDS')"),
]  # fmt: skip
NO_CUDA = ("tests.test_online", "test_exact_against_numpy_convolve[torch_cuda-naive-0-5]",
           "skipped", "torch.cuda.is_available() is False: no CUDA device")  # fmt: skip


def write_report(path: Path, cases: list[tuple[str, ...]]) -> Path:
    """A JUnit XML report as pytest writes it: ``(classname, name[, outcome, message])``."""
    rows = []
    for classname, name, *rest in cases:
        body = ""
        if rest:
            outcome, message = rest
            body = f"<{outcome} message={quoteattr(message)}>{message}</{outcome}>"
        rows.append(f"<testcase classname={quoteattr(classname)} name={quoteattr(name)}>{body}"
                    "</testcase>")  # fmt: skip
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        + "".join(rows)
        + "</testsuite></testsuites>"
    )
    return path


def judge(report: Path, part: str = "torch-cuda") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--judge", str(report), "--part", part],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_gpu_machines_report_passes(tmp_path) -> None:
    done = judge(write_report(tmp_path / "r.xml", PASSED + ALLOWED))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("torch-cuda   PASS")
    assert "2 on torch_cuda_graphs" in done.stdout


@pytest.mark.parametrize(
    ("cases", "message"),
    [
        ([*PASSED, NO_CUDA], "torch.cuda.is_available() is False"),
        (PASSED[:1] + ALLOWED, "no test ran on torch_cuda_graphs"),
        ([*PASSED, ("tests.test_online", "test_x[torch_cuda]", "failure", "assert 1 == 2")],
         "failed: tests.test_online::test_x[torch_cuda]"),
        ([*PASSED, ("tests.test_online", "test_y", "error", "fixture broke")], "errors:"),
        ([], "no test was collected"),
        ([*PASSED, ("tests.test_plot", "test_z", "skipped", "could not import 'matplotlib'")],
         "matplotlib"),
    ],
)  # fmt: skip
def test_a_report_that_skipped_or_failed_fails(tmp_path, cases, message: str) -> None:
    done = judge(write_report(tmp_path / "r.xml", cases))
    assert done.returncode == 1
    assert done.stdout.startswith("torch-cuda   FAIL")
    assert message in done.stdout


def test_an_unreadable_report_fails(tmp_path) -> None:
    (tmp_path / "r.xml").write_text("<testsuites><testcase")
    done = judge(tmp_path / "r.xml", part="cupy")
    assert done.returncode == 1 and "no readable test report" in done.stdout
    assert judge(tmp_path / "missing.xml", part="jax-gpu").returncode == 1


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None
    or __import__("torch").cuda.is_available(),  # there the CUDA tests run and pass
    reason="a CUDA device exists here, or torch is not installed",
)
def test_a_real_run_without_a_gpu_fails(tmp_path) -> None:
    """pytest's own report of the CUDA variants on a machine without a device: they are
    deselected (or skipped), so no test runs on them and the judge fails the part."""
    report = tmp_path / "real.xml"
    env = dict(os.environ, FUTUREFILL_TEST_BACKENDS="torch_cuda,torch_cuda_graphs")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/test_online.py", "tests/test_backend_cupy.py", "-k", "reset_starts_over",
         f"--junitxml={report}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode in (0, 5), run.stdout[-2000:]  # 5: nothing collected (deselected)
    done = judge(report)
    assert done.returncode == 1
    assert "no test ran on torch_cuda" in done.stdout
    assert "cupy is not among" not in done.stdout  # that skip is allowed


@pytest.fixture(scope="module")
def report_module():
    """``scripts/gpu_check_report.py``, imported from its path (scripts are no package)."""
    path = SCRIPT.parent / "gpu_check_report.py"
    spec = importlib.util.spec_from_file_location("gpu_check_report", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.parametrize(
    ("part", "probe", "ok"),
    [
        ("jax-gpu", {"jax": "0.4.30", "backend": "gpu"}, True),
        ("jax-gpu", {"jax": "0.4.30", "backend": "cpu"}, False),
        ("jax-gpu", {"error": "AssertionError (exit status 1 with JAX_PLATFORMS=cuda)"}, False),
        ("torch-cuda", {"cuda": "12.4", "available": True, "gpu": "NVIDIA H100"}, True),
        ("torch-cuda", {"cuda": None, "available": False, "gpu": None}, False),
        ("cupy", {"cupy": "13.3.0", "runtime": 12040}, True),
        ("cupy", {"error": "ModuleNotFoundError: No module named 'cupy'"}, False),
    ],
)
def test_a_library_that_does_not_see_the_gpu_fails(report_module, part, probe, ok: bool) -> None:
    verdict = report_module.judge_probe(part, probe)
    assert verdict.ok is ok
    assert verdict.line(part).split()[1] == ("PASS" if ok else "FAIL")
