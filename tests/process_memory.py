"""This test process's memory: how much it holds, and giving freed memory back (for the
bound on compiled JAX programs kept across tests, in ``conftest.py``)."""

from __future__ import annotations

import contextlib
import ctypes
import os


def resident_bytes() -> int:
    """This process's resident memory (0 where ``/proc`` does not say)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def give_back_freed_memory() -> None:
    """Return the C heap's free pages to the system (glibc keeps them otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
