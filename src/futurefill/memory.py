"""Memory estimates, checked before anything large is allocated.

A plan or a state that would not fit is refused with a :class:`MemoryError` that names the
size, instead of being allocated until the process is killed. The limit is the memory the
operating system reports as available (``MemAvailable`` on Linux), or the value set with
:func:`set_memory_limit`.
"""

from __future__ import annotations

import os

__all__ = [
    "available_memory",
    "check_memory",
    "check_plan_memory",
    "format_bytes",
    "plan_bytes",
    "set_memory_limit",
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
