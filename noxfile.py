"""nox sessions: tests per backend, lint, docs, quick benchmarks, the demo, mutation testing.

``nox -s tests`` runs one session per backend; the torch session pins ``torch==2.13.0``, a
CPU wheel on the project's development machines (see ``TORCH_PIN``; an unpinned torch pulls a
multi-GB CUDA build). ``nox -s mutation`` is not part of the default run (see its docstring).
"""

from __future__ import annotations

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
BACKEND_EXTRAS: dict[str, list[str]] = {
    "numpy": [],
    "array_api_strict": [],
    "torch": [TORCH_PIN],
    "jax": ["jax[cpu]"],
    "cupy": [],  # the cupy wheel needs CUDA; the session skips without a device
}
#: What each session tests (``FUTUREFILL_TEST_BACKENDS``): the numpy session also runs the
#: CuPy executor over a NumPy-backed stand-in; the torch session also its CUDA variants,
#: which skip without a device.
TEST_BACKENDS = {
    "numpy": "numpy,cupy_standin",
    "torch": "torch,torch_cuda,torch_cuda_graphs",
}


@nox.session
@nox.parametrize("backend", list(BACKEND_EXTRAS))
def tests(session: nox.Session, backend: str) -> None:
    """Run the whole test suite on one backend (``FUTUREFILL_TEST_BACKENDS``)."""
    if backend == "cupy":
        if not _has_cuda():
            session.skip("no CUDA device on this machine: the cupy backend cannot run")
        session.install("cupy-cuda12x")
    extra = BACKEND_EXTRAS[backend]
    if extra:
        session.install(*extra)
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        *session.posargs,
        env={
            "FUTUREFILL_TEST_BACKENDS": TEST_BACKENDS.get(backend, backend),
            "JAX_ENABLE_X64": "1",
        },
    )


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

    Three groups, each judged by its fast relevant tests on one backend: ``core`` (the plan
    package, ``interpreter``, ``ops``, ``online`` and the NumPy executor, on numpy), ``jax``
    (the JAX executor, its kernels and compiled-rollout generator) and ``torch`` (the torch
    executor on the CPU). Arguments go to the script: ``nox -s mutation -- core`` runs one
    group, ``-- core -k 'futurefill.plan.checks.*'`` some mutants, ``-- --fresh`` forgets
    earlier results, ``-- --report`` prints the table of the last runs. One mutant at a time
    by default (``-- -j 2`` for two). Results persist in ``.mutation/<group>/``, where
    ``mutmut results`` lists the survivors and ``mutmut show <mutant>`` shows one.
    """
    session.install(TORCH_PIN, "jax[cpu]", "mutmut>=3.3", "tomli; python_version < '3.11'")
    session.install("-e", ".[test]")
    session.run("python", "scripts/mutation.py", *session.posargs)
