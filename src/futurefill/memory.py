"""Memory estimates, checked before anything large is allocated.

A plan or a state that would not fit is refused with a :class:`MemoryError` that names the
size, instead of being allocated until the process is killed. The limit is the memory the
operating system reports as available (``MemAvailable`` on Linux), or the value set with
:func:`set_memory_limit`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .plan import Plan

__all__ = [
    "StateMemory",
    "available_memory",
    "check_memory",
    "check_plan_memory",
    "format_bytes",
    "plan_bytes",
    "prefill_bytes",
    "set_memory_limit",
    "state_memory",
]

_limit: int | None = None

#: Bytes per task while a plan is built, proved (:meth:`futurefill.Plan.validate`) and its
#: transform program derived: the builder's int64 columns, the stored int32 columns, the
#: corner keys of the proof, the program's ops (measured peaks, ``tracemalloc``, 2**12 to 2**20
#: steps: at most 185 bytes per task, the deadline schedule with ``slack_from=1``).
BYTES_PER_TASK = 200
#: Bytes per step: window starts, task pointers, per-step tables, the proof's window corners.
BYTES_PER_STEP = 64
#: Bytes of any plan, however small (Python objects, NumPy's small allocations).
PLAN_OVERHEAD = 4 << 20


def format_bytes(n: float) -> str:
    """``n`` bytes in a human unit (``"1.5 GiB"``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def set_memory_limit(limit: int | None) -> None:
    """Refuse plans and states estimated above ``limit`` bytes (``None``: what is available)."""
    global _limit
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"the memory limit is a positive number of bytes or None, got {limit!r}")
    _limit = limit


def available_memory() -> int | None:
    """Bytes that may be allocated now: the limit set, else what the system has available."""
    if _limit is not None:
        return _limit
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(what: str, need: float) -> None:
    """Raise :class:`MemoryError` when ``need`` bytes exceed :func:`available_memory`."""
    available = available_memory()
    if available is not None and need > available:
        raise MemoryError(
            f"{what} needs about {format_bytes(need)} but only {format_bytes(available)} is "
            "available; use fewer steps, channels or a smaller batch "
            "(futurefill.memory.set_memory_limit changes the limit)"
        )


def plan_bytes(length: int, max_tasks: int) -> int:
    """Estimated peak memory of building a plan of ``length`` steps and ``max_tasks`` tasks
    (its proof and its transform program included)."""
    return PLAN_OVERHEAD + BYTES_PER_STEP * length + BYTES_PER_TASK * max_tasks


def check_plan_memory(length: int, max_tasks: int) -> None:
    """Refuse a plan whose construction would not fit in memory."""
    check_memory(
        f"a plan of {length} steps and up to {max_tasks} tasks", plan_bytes(length, max_tasks)
    )


# ---------------------------------------------------------------------- states
@dataclass(frozen=True)
class StateMemory:
    """Bytes that one convolution's state needs over its life, by what holds them.

    Every term counts arrays of ``batch x channels`` rows (or ``channels`` for filter data)
    and bounds what the shipped executors allocate: NumPy, torch, CuPy and the array-API
    reference step through the plan's tables (:attr:`workspace` and :attr:`steps`), JAX runs
    whole rollouts as compiled programs (:attr:`compiled`). XLA's own compilation memory is
    not an array and is not counted.

    Attributes
    ----------
    state : int
        The state's arrays: the private filter copy, the reversed window taps, the filter
        spectra, the buffer and the spectrum registers of shared transforms.
    workspace : int
        Work arrays of executors that step: per FFT size a spectrum and an inverse (NumPy's
        ``out=`` arrays; elsewhere, at most as much, the temporaries of one task), the window
        block's accumulators, the products of shared transforms and, when some task is due
        after the next step, the deferred tasks' own buffer.
    construction : int
        Temporaries while the state is built: the filters converted to the working dtype
        and the float64 copy its fingerprint hashes.
    prefill : int
        The prompt's FFT convolution (:func:`prefill_bytes`); its outputs are views of it.
    steps : int
        A rollout or a run over every step by an executor that steps: its outputs (collected,
        then stacked) and two copies of the buffer (the one kept to restore the state on an
        error; an updated copy where arrays are immutable).
    compiled : int
        The same by a compiled program (JAX): its outputs, the padded inputs and accumulators,
        the merged buffer, the buffer kept to restore the state and the stacked filter
        spectra it takes as constants.
    """

    state: int
    workspace: int
    construction: int
    prefill: int
    steps: int
    compiled: int

    @property
    def peak(self) -> int:
        """The most held at once: the state, plus the construction's temporaries or the
        prefill's (its outputs may still be held) and those of the steps."""
        running = max(self.workspace + self.steps, self.compiled)
        return self.state + max(self.construction, self.prefill + running)


def _spectrum(n: int) -> int:
    """Complex values of a real FFT of size ``n``."""
    return n // 2 + 1


def prefill_bytes(plan: Plan, *, batch: int, channels: int, itemsize: int) -> int:
    """Temporaries of the prefill of ``channels`` channels (0 without a prompt).

    The filters' spectrum of the prefill FFT (size ``n = plan.prefill_fft_size``), the
    prompt's spectrum and its product with the filters' (one freed when the inverse is
    made), the inverse of ``n`` values per row (its first ``prompt`` values are the outputs
    returned), and two copies of the prompt (in the compute dtype; an open-ended stream's
    history).
    """
    if plan.prompt == 0:
        return 0
    rows, n = batch * channels, plan.prefill_fft_size
    spectrum = 2 * itemsize * _spectrum(n)
    convolution = channels * spectrum + rows * max(2 * spectrum, spectrum + itemsize * n)
    return convolution + 2 * rows * itemsize * plan.prompt + rows * plan.prompt  # + NaN mask


def state_memory(plan: Plan, *, batch: int, channels: int, taps: int, itemsize: int) -> StateMemory:
    """The :class:`StateMemory` of a state of ``plan`` for ``batch x channels`` rows, filters
    of ``taps`` taps and real values of ``itemsize`` bytes (complex ones take twice that)."""
    rows, real, cplx = batch * channels, itemsize, 2 * itemsize
    W, Lb, L = plan.window_length, plan.buffer_length, plan.length
    spectra = sum(_spectrum(n) for _, _, n in plan.spectrum_keys)
    program = plan.transforms
    registers = sum(_spectrum(n) for n in program.register_fft_size.tolist())
    sizes = {n for _, _, n in plan.spectrum_keys}
    shared = set(program.register_fft_size.tolist())
    largest = max(sizes, default=0)
    deferred = plan.num_tasks > 0 and bool(
        np.any(plan.dst_start > np.add(plan.after_step, plan.prompt + 1, dtype=np.int64))
    )
    state = real * (channels * (taps + W) + rows * Lb) + cplx * (
        channels * spectra + rows * registers
    )
    workspace = rows * (
        cplx * sum(_spectrum(n) for n in sizes)
        + real * sum(sizes)
        + real * W
        + cplx * sum(_spectrum(n) for n in shared)
        + (real * Lb if deferred else 0)
    )
    return StateMemory(
        state=state,
        workspace=workspace,
        construction=channels * taps * (itemsize + 8),
        prefill=prefill_bytes(plan, batch=batch, channels=channels, itemsize=itemsize),
        steps=rows * real * (2 * L + 2 * Lb),
        compiled=rows * real * (L + 4 * Lb + 2 * largest) + cplx * channels * spectra,
    )
