"""nox sessions: the tests (quick and deep), lint, docs, quick benchmarks, the demo, mutation
testing.

``nox -s tests`` installs every backend into one environment (torch pinned to
``torch==2.13.0``, a CPU wheel on the project's development machines, see ``TORCH_PIN``; an
unpinned torch pulls a multi-GB CUDA build), runs the examples in the docstrings
(``DOCTESTS``), then the suite once per group of backends (``RUNS``), the
backend-independent tests in the first. ``nox -s tests_deep`` runs the slow
tests and the Hypothesis tests with many more examples. ``nox -s mutation`` is not part of the
default run (see its docstring).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]

# On the machines this project is developed on, this pin resolves to the CPU wheel
# torch-2.13.0+cpu: their pip configuration adds a local wheel directory holding it, and pip
# prefers 2.13.0+cpu to PyPI's 2.13.0 (a local version label sorts higher). With PyPI alone, the
# same pin installs the CUDA build on Linux; for a CPU wheel there, run the session with
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu (docs/backends.md, "torch without
# CUDA"). The pin itself is what CI installs: keep it.
TORCH_PIN = "torch==2.13.0"
#: The pytest runs of the test sessions, in order: ``FUTUREFILL_TEST_BACKENDS``, whether the
#: run also takes the backend-independent tests, and its pytest options (two pytest-xdist
#: workers). One process group per library keeps its memory to its own; the JAX workers take
#: whole files (a file's tests reuse its compiled programs; ``tests/conftest.py`` drops them
#: past 1 GB a worker). Variants that cannot run here (CUDA, cupy without a device) are
#: deselected with one summary line.
RUNS = (
    ("numpy,cupy_standin,array_api_strict,cupy", True, ("-n", "2")),
    ("torch,torch_cuda,torch_cuda_graphs", False, ("-n", "2")),
    ("jax", False, ("-n", "2", "--dist", "loadfile")),
)
#: The examples in the docstrings, run by ``nox -s tests`` before the suite (a few seconds;
#: ``tests/test_docstrings.py`` checks that every public name has one).
DOCTESTS = ("pytest", "--doctest-modules", "src/futurefill")
#: LLVM's optimisation of the compiled JAX programs off in the quick run, most of whose JAX
#: time is compilation: about a quarter less CPU time on compile-bound tests (the programs
#: compute the same operations; ``tests_deep`` keeps XLA's defaults).
QUICK_XLA_FLAGS = "--xla_backend_optimization_level=0"


def _jax_compilation_cache(session: nox.Session) -> dict[str, str]:
    """JAX's persistent compilation cache in an empty folder of the session's own: a program
    compiled by one test (or one pytest-xdist worker) is loaded, not compiled again, by the
    next one that builds the same program (the quick JAX run takes about a fifth less time).
    Emptied at every start, so each run is timed as on a fresh machine; every program is kept
    (no minimum compile time or size)."""
    path = Path(session.create_tmp()) / "jax-compilation-cache"
    shutil.rmtree(path, ignore_errors=True)
    return {
        "JAX_COMPILATION_CACHE_DIR": str(path),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _install_every_backend(session: nox.Session) -> None:
    backends = [TORCH_PIN, "jax[cpu]"] + (["cupy-cuda12x"] if _has_cuda() else [])
    session.install(*backends)
    session.install("-e", ".[test]")


def _run_groups(session: nox.Session, *args: str, env: dict[str, str] | None = None) -> None:
    cache = _jax_compilation_cache(session)
    for backends, shared, options in RUNS:
        session.run(
            "pytest",
            *options,
            *args,
            *session.posargs,
            env={
                "FUTUREFILL_TEST_BACKENDS": backends,
                "FUTUREFILL_TEST_SHARED": "1" if shared else "0",
                "JAX_ENABLE_X64": "1",
                **cache,
                **(env or {}),
            },
        )


@nox.session
def tests(session: nox.Session) -> None:
    """The docstrings' examples, then the quick suite on every backend: slow tests left out,
    the ``ci`` Hypothesis profile."""
    _install_every_backend(session)
    session.run(*DOCTESTS)
    _run_groups(session, "-m", "not slow", env={"XLA_FLAGS": QUICK_XLA_FLAGS})


@nox.session
def tests_deep(session: nox.Session) -> None:
    """The slow tests and the Hypothesis tests (the stateful ones included) on every backend,
    with the ``deep`` profile's examples (five times the counts tests ask for)."""
    _install_every_backend(session)
    _run_groups(session, "-m", "slow or hypothesis", "--hypothesis-profile=deep")


def _has_cuda() -> bool:
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: generation on the default NumPy backend."""
    session.install("-e", ".[cli]")
    session.run("futurefill", "demo", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors (``mkdocs build --strict``)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The asv suite, quick and saved: every benchmark once, then the HTML dashboard.

    Only NumPy is installed here, so the suite is parametrised over NumPy alone (it lists only
    the backends whose library is installed; nothing is reported skipped). ``--quick`` runs
    each benchmark once, and ``FUTUREFILL_BENCH_QUICK=1`` keeps one length and one channel
    count. ``--set-commit-hash=HEAD`` makes asv save the results (an ``existing`` environment
    saves nothing without it) under the checked-out commit, and ``asv publish`` writes them to
    ``asv_benchmarks/html/``: view it with ``asv preview`` from ``asv_benchmarks/``. Extra
    arguments go to ``asv run`` (e.g. ``nox -s bench -- -b Generation``).
    """
    session.install("-e", ".[bench]")
    session.chdir("asv_benchmarks")
    session.env["FUTUREFILL_BENCH_QUICK"] = "1"
    session.run("asv", "machine", "--yes", silent=True)  # its questions and defaults: noise
    session.run("asv", "check", "--python=same")
    session.run(
        "asv",
        "run",
        "--quick",
        "--python=same",
        "--set-commit-hash=HEAD",
        "--show-stderr",
        *session.posargs,
    )
    session.run("asv", "publish")
    session.log("dashboard in asv_benchmarks/html/: `cd asv_benchmarks && asv preview`")


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing with mutmut 3 of the plan, the interpreter, the kernels and the
    NumPy, JAX and torch executors (``scripts/mutation.py``; not in the default run).

    Four groups, each judged by its fast relevant tests on one backend: ``core`` (the plan
    package, ``interpreter``, ``ops``, ``online`` and the NumPy executor, on numpy), ``jax``
    (the JAX executor, its kernels and compiled-rollout generator), ``torch`` (the torch
    executor on the CPU) and ``round3`` (the stream pool, the grouped kernels, input
    conversion, undo, segments, snapshots and the NumPy deferred work, on numpy). Arguments
    go to the script: ``nox -s mutation -- core`` runs one group, ``-- core -k
    'futurefill.plan.checks.*'`` some mutants, ``-- --fresh`` forgets earlier results,
    ``-- --report`` prints the table of the last runs. One mutant at a time
    by default (``-- -j 2`` for two). Results persist in ``.mutation/<group>/``, where
    ``mutmut results`` lists the survivors and ``mutmut show <mutant>`` shows one.
    """
    session.install(TORCH_PIN, "jax[cpu]", "mutmut>=3.3", "tomli; python_version < '3.11'")
    session.install("-e", ".[test]")
    session.run("python", "scripts/mutation.py", *session.posargs)
