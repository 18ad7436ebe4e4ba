"""nox sessions: tests per backend, lint, docs, quick benchmarks, the demo, mutation testing.

``nox -s tests`` runs one session per backend; the torch session pins the CPU wheel
``torch==2.13.0`` (an unpinned torch pulls a multi-GB CUDA build). ``nox -s mutation`` is
not part of the default run (see its docstring).
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]

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
    """The asv suite, quick: every benchmark once, on the backends installed in the session.

    Only NumPy is installed here, so the other backends are reported as skipped (n/a); run
    ``asv`` from ``asv_benchmarks/`` in an environment with torch/jax/cupy to time them.
    Extra arguments go to ``asv run`` (e.g. ``nox -s bench -- -b Generation``).
    """
    session.install("-e", ".[bench]")
    session.chdir("asv_benchmarks")
    session.run("asv", "machine", "--yes")
    session.run("asv", "check", "--python=same")
    session.run("asv", "run", "--quick", "--python=same", "--show-stderr", *session.posargs)


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
