"""Memory estimates: plans and states that would not fit are refused before allocation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import futurefill
from futurefill import memory


@pytest.fixture
def limit() -> Iterator[None]:
    memory.set_memory_limit(50 << 20)  # 50 MiB
    yield
    memory.set_memory_limit(None)


def test_available_memory_is_known_here() -> None:
    available = memory.available_memory()
    assert available is None or available > 0


def test_a_plan_too_large_is_refused_with_its_size(limit) -> None:
    with pytest.raises(MemoryError, match=r"needs about .*GiB but only 50\.0 MiB"):
        futurefill.make_plan(2**26)
    assert futurefill.make_plan(1024).length == 1024  # small plans still fine


def test_a_state_too_large_is_refused_before_allocation(limit) -> None:
    # 64 channels x 2**16 taps: the plan is small, the state (filters + buffer) is not.
    with pytest.raises(MemoryError, match="state of 8x64 channels"):
        futurefill.OnlineConv(np.zeros((64, 2**16)), 2**16, batch=8, schedule="naive")


def test_the_limit_is_checked() -> None:
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="positive number of bytes"):
            memory.set_memory_limit(bad)


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (1536, "1.5 KiB"), (3 << 30, "3.0 GiB")])
def test_format_bytes(n: int, text: str) -> None:
    assert memory.format_bytes(n) == text
