"""Verdicts of the GPU check (``scripts/gpu_check.py``): a test report and an environment probe.

A GPU check must not pass by skipping. :func:`judge_junit` reads a pytest JUnit XML report
(``--junitxml``) and fails it on any failure or error, on any skip whose reason is not one of
:data:`ALLOWED_SKIPS` (reasons that hold on a machine *with* a GPU), and on any GPU variant
(``torch_cuda``, ``torch_cuda_graphs``, ``cupy``, ``jax``) that no passed test ran on.
:func:`judge_probe` fails a part whose library does not see the GPU (``jax.default_backend()``
other than ``gpu``, ``torch.cuda.is_available()`` false, no CuPy runtime).

No import beyond the standard library: ``gpu_check.py --judge REPORT --part NAME`` runs it on
a saved report, which is how the skip detection is tested without a GPU.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Skip reasons that are right on a GPU machine (tests of machines without one, backends that
#: lack a dtype, files of backends another part runs). Anything else fails the check.
ALLOWED_SKIPS = (
    r"a CUDA device exists here",
    r"cupy is installed here",
    r"needs cupy without a CUDA device",
    r"is not among FUTUREFILL_TEST_BACKENDS",
    r"no torch variant among FUTUREFILL_TEST_BACKENDS",
    r"backend '\w+' has no (bfloat16|float16)",
    r"a traced feedback cannot fail at a given step",
    r"running as a user who can write anywhere",
)


@dataclass
class Verdict:
    """What a part of the check found: counts, and the problems that fail it."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self, part: str, detail: str = "") -> str:
        """The part's one summary line."""
        status = "PASS" if self.ok else "FAIL"
        counts = ", ".join(f"{n} {k}" for k, n in self.counts.items())
        problems = (p if len(p) <= 120 else p[:117] + "..." for p in self.problems[:3])
        text = "; ".join(x for x in (counts, detail, *problems) if x)
        more = f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        return f"{part:12s} {status}  {text}{more}"


def _params(name: str) -> list[str]:
    """The parameter ids of a test name, ``test_x[torch_cuda-3]`` -> ``["torch_cuda", "3"]``."""
    start = name.find("[")
    return name[start + 1 : -1].split("-") if start >= 0 and name.endswith("]") else []


def _outcome(case: ET.Element) -> tuple[str, str]:
    """``(outcome, reason)`` of one ``<testcase>``."""
    for tag, outcome in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
        child = case.find(tag)
        if child is not None:
            return outcome, f"{child.get('message', '')} {child.text or ''}".strip()
    return "passed", ""


def judge_junit(report: Path, variants: Iterable[str]) -> Verdict:
    """Judge a pytest JUnit XML report of a part that must run on ``variants``."""
    verdict = Verdict()
    try:
        cases = ET.parse(report).getroot().iter("testcase")
    except (OSError, ET.ParseError) as exc:
        verdict.problems.append(f"no readable test report ({exc})")
        return verdict
    counts = dict.fromkeys(("passed", "failed", "errors", "skipped"), 0)
    ran = dict.fromkeys(variants, 0)
    allowed = re.compile("|".join(ALLOWED_SKIPS))
    for case in cases:
        outcome, reason = _outcome(case)
        counts[outcome] += 1
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if outcome == "passed":
            for variant in set(_params(name)) & set(ran):
                ran[variant] += 1
        elif outcome != "skipped":
            verdict.problems.append(f"{outcome}: {name}")
        elif not allowed.search(reason):
            verdict.problems.append(f"skipped: {name}: {reason[:160]}")
    verdict.counts = counts
    if not sum(counts.values()):
        verdict.problems.append("no test was collected")
    verdict.problems += [f"no test ran on {v}" for v, n in ran.items() if not n]
    verdict.counts.update({f"on {v}": n for v, n in ran.items()})
    return verdict


def judge_probe(part: str, probe: Mapping[str, Any]) -> Verdict:
    """Judge what a part's library reported about the GPU (see ``gpu_check.PROBES``)."""
    verdict = Verdict()
    if "error" in probe:
        verdict.problems.append(f"probe failed: {probe['error']}")
    elif part == "torch-cuda" and probe.get("available") is not True:
        verdict.problems.append("torch.cuda.is_available() is False")
    elif part == "jax-gpu" and probe.get("backend") != "gpu":
        verdict.problems.append(f"jax.default_backend() is {probe.get('backend')!r}, not 'gpu'")
    elif part == "cupy" and not probe.get("runtime"):
        verdict.problems.append("no CuPy CUDA runtime version")
    return verdict
