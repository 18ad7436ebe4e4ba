"""Mutation testing of futurefill with mutmut 3: the ``nox -s mutation`` session.

mutmut 3 mutates the packages under ``src/`` of the directory it runs in, imports them from
its ``mutants/`` copy and names every mutant after its module. Two things keep it from
running on this repository as it is:

* the executors live in ``backends/``, a second source root that mutmut would name
  ``backends.futurefill_numpy...`` while the tests import ``futurefill_numpy...``;
* mutmut leaves decorated functions alone, and many functions under test are decorated:
  the schedule builders (``@register_schedule``), the plan cache (``@lru_cache``), the plan's
  properties and cached tables, the jitted JAX kernels.

So every group of modules gets a staged tree, ``.mutation/<group>/``: ``src/`` holds
``futurefill`` and the ``futurefill_*`` executor packages, the decorators of the functions
to mutate are turned into the equivalent assignment after the definition
(``@d(x) def f`` becomes ``def f`` then ``f = d(x)(f)``), and ``tests/`` and
``pyproject.toml`` are copied with the group's settings added to ``[tool.mutmut]``. mutmut
puts ``mutants/src`` first on ``sys.path``, so the mutated copies are what the tests and the
``futurefill.executors`` entry points of the installed distribution import.

Usage (from the repository root, in an environment with ``.[test]``, torch, jax and mutmut)::

    python scripts/mutation.py                       # every group
    python scripts/mutation.py core jax              # some groups
    python scripts/mutation.py core -k 'futurefill.plan.checks.*'   # some mutants
    python scripts/mutation.py core --fresh          # forget earlier results
    python scripts/mutation.py --report              # the summary of earlier runs

Results persist in ``.mutation/<group>/mutants``; in that directory ``mutmut results``,
``mutmut show <mutant>`` and ``mutmut browse`` work as usual.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / ".mutation"


@dataclass(frozen=True)
class Group:
    """Modules mutated together, the tests that judge them and the backend they run on."""

    mutate: tuple[str, ...]  # globs over the staged tree (``src/...``)
    tests: tuple[str, ...]  # test files and pytest options
    env: dict[str, str] = field(default_factory=dict)  # ``{stage}``: the staged tree


#: The fast, relevant tests of each group. mutmut runs, for every mutant, only the tests that
#: called the mutated function when it recorded the test run.
GROUPS: dict[str, Group] = {
    "core": Group(
        mutate=(
            "src/futurefill/plan/*",
            "src/futurefill/interpreter.py",
            "src/futurefill/ops.py",
            "src/futurefill/online.py",
            "src/futurefill_numpy/*",
        ),
        tests=(
            "tests/test_plan.py",
            "tests/test_checks.py",
            "tests/test_interpreter.py",
            "tests/test_ops.py",
            "tests/test_online.py",
            "tests/test_custom_schedules.py",
            "tests/test_backend_numpy.py",
            "tests/test_stream_machine.py",
            # 70% of the time of these tests, and no code path the others miss
            "-k",
            "not float32_long_generation",
        ),
        env={"FUTUREFILL_TEST_BACKENDS": "numpy"},
    ),
    # What round 3 added to the single-stream and pool paths, judged on NumPy.
    "round3": Group(
        mutate=(
            "src/futurefill/pool/*",
            "src/futurefill/grouped_kernels.py",
            "src/futurefill/_inputs.py",
            "src/futurefill/undo.py",
            "src/futurefill/segments.py",
            "src/futurefill/snapshots.py",
            "src/futurefill_numpy/_pool.py",
            "src/futurefill_numpy/_deferred.py",
        ),
        tests=(
            "tests/test_pool.py",
            "tests/test_pool_regressions.py",
            "tests/test_grouped_kernels.py",
            "tests/test_pool_machine.py",
            "tests/test_online.py",
            "tests/test_open_length.py",
            "tests/test_numpy_deferred.py",
            "tests/test_failures.py",
        ),
        env={"FUTUREFILL_TEST_BACKENDS": "numpy"},
    ),
    "jax": Group(
        mutate=("src/futurefill_jax/*",),
        # Every test compiles XLA programs (seconds each), so one test per code path: steps
        # and rollouts of each schedule (blocked windows of 1, 4, 16, 17 and 25 steps,
        # stepwise above 64, uniform Toeplitz, uniform FFT and masked task classes, whole
        # chunks), rollouts started inside blocks, custom plans, float32, array handling.
        tests=tuple(
            f"tests/{test}"
            for test in (
                "test_backend_jax.py::test_steps_match_oracle[7-100-continuous]",
                "test_backend_jax.py::test_steps_match_oracle[0-100-epoched]",
                "test_backend_jax.py::test_steps_match_oracle[7-17-naive]",
                "test_backend_jax.py::test_rollout_matches_oracle[7-100-continuous]",
                "test_backend_jax.py::test_rollout_matches_oracle[0-100-epoched]",
                "test_backend_jax.py::test_rollout_matches_oracle[7-100-naive]",
                "test_backend_jax.py::test_rollout_matches_oracle[0-17-naive]",
                "test_backend_jax.py::test_rollout_matches_oracle[7-5-continuous]",
                "test_backend_jax.py::test_rollout_equals_step_loop[3-100-cuts1-continuous]",
                "test_backend_jax.py::test_rollout_equals_step_loop[0-100-cuts1-epoched]",
                "test_backend_jax.py::test_rollout_equals_step_loop[3-100-cuts1-naive]",
                "test_backend_jax.py::test_rollout_direct_below[1]",
                "test_backend_jax.py::test_rollout_direct_below[4]",
                "test_backend_jax.py::test_rollout_direct_below[128]",
                "test_backend_jax.py::test_rollout_over_whole_chunks",
                "test_backend_jax.py::test_rollout_then_steps",
                "test_backend_jax.py::test_rollout_float32",
                "test_backend_jax.py::test_float64_needs_x64",
                "test_backend_jax.py::test_low_precision_refused",
                "test_backend_jax.py::test_feedback_shape_checked",
                "test_backend_jax.py::test_rollout_programs_are_reused",
                "test_backend_jax.py::test_online_conv_end_to_end",
                "test_backend_jax.py::test_steps_update_in_place",
                "test_backend_jax.py::test_tracers_are_refused_and_the_state_is_untouched",
                "test_custom_schedules.py::test_step_and_prefill_are_exact[jax-13-5]",
                "test_custom_schedules.py::test_emit_advance_over_split_channels[jax]",
                "test_custom_schedules.py::test_rollout_with_feedback_is_exact[jax-6]",
                "test_online.py::test_construction_errors",
                "test_online.py::test_rejected_calls_leave_state_unchanged_and_usable",
                "test_online.py::test_state_dict_resume_is_bit_identical[jax-continuous]",
                "test_online.py::test_reset_twice_refills_what_a_step_reads",
                "test_online.py::test_filters_of_the_backend_are_accepted",
                "test_online.py::test_big_endian_filters_are_accepted",
                "test_online.py::test_prefill_by_channel_ranges_equals_one_prefill",
            )
        ),
        env={
            "FUTUREFILL_TEST_BACKENDS": "jax",
            "JAX_ENABLE_X64": "1",
            # Programs a mutant leaves unchanged are compiled once for all mutants.
            "JAX_COMPILATION_CACHE_DIR": "{stage}/jax-cache",
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        },
    ),
    "torch": Group(
        mutate=("src/futurefill_torch/*",),
        tests=(
            "tests/test_online.py",
            "tests/test_custom_schedules.py",
            "tests/test_backend_torch.py",
        ),
        # The CPU paths; the graph bodies of _graphs.py run eagerly in test_backend_torch.py.
        env={"FUTUREFILL_TEST_BACKENDS": "torch"},
    ),
}

#: Decorators mutmut handles itself.
_KEPT_DECORATORS = ("staticmethod", "classmethod")


# ---------------------------------------------------------------------- staging
def undecorate(source: str) -> str:
    """``source`` with decorated module- and class-level functions rewritten as a plain
    definition followed by ``name = decorator(name)`` (same object, same order)."""
    import libcst as cst  # a dependency of mutmut

    def rewrite(body: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
        out: list[cst.BaseStatement] = []
        for stmt in body:
            if isinstance(stmt, cst.ClassDef) and isinstance(stmt.body, cst.IndentedBlock):
                stmt = stmt.with_changes(
                    body=stmt.body.with_changes(body=rewrite(list(stmt.body.body)))
                )
            decorators = getattr(stmt, "decorators", ())
            kept = len(decorators) == 1 and (
                isinstance(decorators[0].decorator, cst.Name)
                and decorators[0].decorator.value in _KEPT_DECORATORS
            )
            if not isinstance(stmt, cst.FunctionDef) or not decorators or kept:
                out.append(stmt)
                continue
            value: cst.BaseExpression = cst.Name(stmt.name.value)
            for dec in reversed(decorators):
                value = cst.Call(func=dec.decorator, args=[cst.Arg(value)])
            out.append(stmt.with_changes(decorators=[]))
            assign = cst.Assign(targets=[cst.AssignTarget(cst.Name(stmt.name.value))], value=value)
            out.append(cst.SimpleStatementLine(body=[assign]))
        return out

    module = cst.parse_module(source)
    return module.with_changes(body=rewrite(list(module.body))).code


def _write(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (mutmut compares modification times)."""
    if path.exists() and path.read_text("utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")


def _toml(value: object) -> str:
    """A TOML value for strings, numbers, booleans and lists of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def stage(name: str, group: Group, *, fresh: bool) -> Path:
    """Build (or refresh) the staged tree of ``group``; return its path."""
    where = STAGE / name
    if fresh and where.exists():
        shutil.rmtree(where)
    sources = {"futurefill": ROOT / "src" / "futurefill"}
    sources |= {p.name: p for p in sorted((ROOT / "backends").glob("futurefill_*"))}
    wanted = set()
    for package, origin in sources.items():
        for path in origin.rglob("*"):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            rel = Path("src") / package / path.relative_to(origin)
            wanted.add(rel)
            if path.suffix == ".py" and any(fnmatch.fnmatch(str(rel), g) for g in group.mutate):
                _write(where / rel, undecorate(path.read_text("utf-8")))
            elif not (where / rel).exists() or (where / rel).read_bytes() != path.read_bytes():
                (where / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, where / rel)
    for stale in (where / "src").rglob("*.py"):
        if "__pycache__" not in stale.parts and stale.relative_to(where) not in wanted:
            stale.unlink()
    shutil.copytree(ROOT / "tests", where / "tests", dirs_exist_ok=True)
    shutil.copytree(ROOT / "docs", where / "docs", dirs_exist_ok=True)  # some tests read the guides

    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    pytest_opts = project["tool"]["pytest"]["ini_options"]
    settings = dict(project["tool"].get("mutmut", {}))
    settings["only_mutate"] = list(group.mutate)
    settings["also_copy"] = ["docs"]
    settings["pytest_add_cli_args_test_selection"] = [
        t for t in group.tests if not t.startswith("tests/") or (ROOT / t.split("::")[0]).exists()
    ]
    lines = ["[tool.pytest.ini_options]"]
    lines += [f"{k} = {_toml(v)}" for k, v in pytest_opts.items()]
    lines += ["", "[tool.mutmut]"]
    lines += [f"{k} = {_toml(v)}" for k, v in settings.items()]
    _write(where / "pyproject.toml", "\n".join(lines) + "\n")
    return where


# ---------------------------------------------------------------------- report
def summary(where: Path) -> dict[str, Counter[str]]:
    """Status counts per mutated module of a staged tree, from mutmut's result files."""
    from mutmut.stats import status_by_exit_code

    out: dict[str, Counter[str]] = {}
    for meta in sorted((where / "mutants" / "src").rglob("*.py.meta")):
        data = json.loads(meta.read_text("utf-8"))
        module = str(meta.relative_to(where / "mutants" / "src"))[: -len(".py.meta")]
        counts = Counter(status_by_exit_code[code] for code in data["exit_code_by_key"].values())
        if counts:
            out[module.replace(os.sep, ".")] = counts
    return out


_COLUMNS = ("killed", "survived", "timeout", "no tests", "not checked")


def print_report(groups: list[str]) -> None:
    """One line per module: killed, survived, timeouts, mutants no test reaches, not run."""
    header = f"{'module':<40}" + "".join(f"{c:>12}" for c in _COLUMNS) + f"{'score':>8}"
    print(header)
    for name in groups:
        where = STAGE / name
        if not (where / "mutants").exists():
            print(f"{name}: not run")
            continue
        for module, counts in summary(where).items():
            tested = sum(counts[c] for c in ("killed", "survived", "timeout"))
            score = (counts["killed"] + counts["timeout"]) / tested if tested else float("nan")
            other = sum(counts.values()) - sum(counts[c] for c in _COLUMNS)
            row = f"{module:<40}" + "".join(f"{counts[c]:>12}" for c in _COLUMNS)
            print(row + f"{score:>8.0%}" + (f"  (+{other} other)" if other else ""))
    print("\nSurvivors: `mutmut results` in .mutation/<group>; `mutmut show <name>` shows one.")


# ---------------------------------------------------------------------- main
def _mutmut() -> str:
    """The ``mutmut`` command of this interpreter's environment (``python -m mutmut`` would
    import it twice)."""
    beside = Path(sys.executable).with_name("mutmut")
    return str(beside) if beside.exists() else "mutmut"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help=f"groups to run: {', '.join(GROUPS)} (all)")
    parser.add_argument(
        "-k", "--mutants", action="append", default=[], help="mutant name globs to (re)run"
    )
    parser.add_argument("-j", "--max-children", type=int, default=1, help="parallel mutants")
    parser.add_argument("--fresh", action="store_true", help="discard earlier results")
    parser.add_argument("--report", action="store_true", help="only print the summary")
    args = parser.parse_args(argv)
    groups = args.groups or list(GROUPS)
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    if args.report:
        print_report(groups)
        return 0
    status = 0
    for name in groups:
        group = GROUPS[name]
        where = stage(name, group, fresh=args.fresh)
        env = {**os.environ, **{k: v.format(stage=where) for k, v in group.env.items()}}
        cmd = [_mutmut(), "run", "--max-children", str(args.max_children), *args.mutants]
        print(f"== {name}: mutmut {' '.join(cmd[1:])} (in {where.relative_to(ROOT)})", flush=True)
        start = time.perf_counter()
        rc = subprocess.run(cmd, cwd=where, env=env, check=False).returncode
        print(f"== {name}: exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        status = status or rc
    print_report(groups)
    return status


if __name__ == "__main__":
    sys.exit(main())
