"""Memory estimates: plans and states that would not fit are refused before allocation."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest

import futurefill
from futurefill import interpreter, memory

from .conftest import oracle


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


# ---------------------------------------------------------------------- what a state needs
def _traced_peak(work) -> tuple[int, object]:
    """Peak bytes NumPy allocates (it reports its arrays to tracemalloc) while ``work()`` runs,
    and what it returned."""
    tracemalloc.start()
    try:
        result = work()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("schedule", "prompt", "batch"),
    [
        ("continuous", 0, 1),
        ("continuous", 1500, 2),
        ("deadline", 300, 1),  # tasks due later: the deferred tasks' own buffer
        ("reuse", 0, 3),  # shared transforms: registers and products
        ("epoched", 700, 1),
        ("naive", 0, 2),
    ],
)
def test_a_state_stays_within_its_estimate(schedule: str, prompt: int, batch: int) -> None:
    """Construction, prefill and a rollout of every step allocate (NumPy arrays, work
    arrays and deferred buffers included) at most what ``state_bytes`` told the guard."""
    C, L = 6, 3000
    phi = np.exp(-np.arange(prompt + L) / 300.0)[None, :] * np.linspace(0.5, 1, C)[:, None]
    u = np.full((batch, C, prompt), 0.1)

    def work() -> futurefill.OnlineConv:
        conv = futurefill.OnlineConv(phi, L, schedule=schedule, prompt=prompt, batch=batch)
        if prompt:
            conv.prefill(u)
        conv.rollout(np.ones((batch, C)), np.tanh)
        return conv

    peak, conv = _traced_peak(work)
    need = interpreter.state_bytes(conv.plan, batch=batch, channels=C, taps=prompt + L, itemsize=8)
    assert peak <= need, (peak, need)


def test_an_open_ended_stream_stays_within_its_last_segment_estimate() -> None:
    """Every segment switch holds the old state, the history and the new state at once."""
    C, N = 3, 2**14

    def work() -> futurefill.OnlineConv:
        conv = futurefill.OnlineConv(np.ones((C, N)) / N, None)
        conv.rollout(np.ones((1, C)), np.tanh, N)
        return conv

    peak, conv = _traced_peak(work)
    need = interpreter.state_bytes(conv.plan, batch=1, channels=C, taps=N, itemsize=8)
    assert conv.position == N and peak <= need, (peak, need)


def test_a_prefill_too_large_is_refused_before_its_fft() -> None:
    """The prompt's FFT convolution is checked when the prefill runs (the limit may have
    changed since the state was built): refused, the state unchanged, then allowed."""
    C, P, L = 4, 4096, 64
    phi = np.exp(-np.arange(P + L) / 50.0)[None, :].repeat(C, axis=0)
    conv = futurefill.OnlineConv(phi, L, prompt=P)
    u = np.full((1, C, P), 0.5)
    need = memory.prefill_bytes(conv.plan, batch=1, channels=2, itemsize=8)
    assert need > 3 * 8 * 2 * conv.plan.prefill_fft_size  # three FFT-sized arrays at least
    memory.set_memory_limit(need)
    try:
        with pytest.raises(MemoryError, match=r"the prefill of 1x4 channels over 4096 prompt"):
            conv.prefill(u)
        assert not conv.state.prefilled.any()
        conv.prefill(u[:, :2], channels=slice(0, 2))  # half of the channels fit
    finally:
        memory.set_memory_limit(None)
    conv.prefill(u[:, 2:], channels=slice(2, None))
    y = conv.rollout(np.full((1, C), 0.5), lambda y: np.full_like(y, 0.5))
    full = np.full((1, C, P + L), 0.5)
    np.testing.assert_allclose(y, oracle(full, phi)[..., P:], rtol=1e-10, atol=1e-9)


def test_a_state_whose_prefill_would_not_fit_is_refused_when_built() -> None:
    """The state's estimate counts its prefill: a huge prompt is refused up front."""
    memory.set_memory_limit(1 << 30)
    try:
        with pytest.raises(MemoryError, match="state of 1x16 channels"):
            futurefill.OnlineConv(np.zeros((16, 2**20 + 16)), 16, prompt=2**20)
    finally:
        memory.set_memory_limit(None)
