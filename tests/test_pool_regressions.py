"""StreamPool bugs found by the state machine (``test_pool_machine.py``), one minimal case each.

Each test states the behaviour the pool promises -- a refused call raises and leaves every
slot exactly as it was (:func:`pool_model.snapshot`), outputs equal ``numpy.convolve`` of the
sequence's own inputs -- and failed before the pool's fix. Tolerance as in ``test_pool.py``:
1e-12 of the largest |output| (float64).
"""

from __future__ import annotations

import numpy as np
import pytest

from futurefill import StreamPool

from .conftest import decaying_filters
from .pool_model import TAPS, C, L, assert_same, snapshot

TOL = 1e-12


@pytest.fixture
def pool_and_filters(rng: np.random.Generator) -> tuple[StreamPool, np.ndarray]:
    phi = decaying_filters(rng, C, TAPS)
    return StreamPool(phi, L, capacity=3, schedule="continuous", direct_below=1), phi


def convolve(u: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Causal outputs of ``u`` ``(C, n)``: ``numpy.convolve`` per channel."""
    return np.stack([np.convolve(u[c], phi[c])[: u.shape[-1]] for c in range(C)])


def check_close(got: np.ndarray, want: np.ndarray) -> None:
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * scale)


def test_a_step_refused_for_unequal_prompts_leaves_the_slot_usable(pool_and_filters, rng):
    pool, phi = pool_and_filters
    a = pool.admit()
    prompt = rng.standard_normal((C, 2))
    pool.prefill(a, prompt[:1], channels=slice(0, 1))  # a layer gave its channel only
    before = snapshot(pool)
    with pytest.raises(RuntimeError, match="same prompt"):
        pool.step([a], np.ones((1, C)))
    assert_same(snapshot(pool), before)  # before the fix: poisoned / refused
    pool.prefill(a, prompt[1:], channels=slice(1, C))  # the other layer catches up
    u = rng.standard_normal((C, 1))
    check_close(pool.step([a], u.T)[0], convolve(np.hstack([prompt, u]), phi)[:, -1])


def test_a_prefill_over_channels_at_different_lengths_leaves_the_slot(pool_and_filters):
    pool, _ = pool_and_filters
    a = pool.admit()
    pool.prefill(a, np.ones((1, 2)), channels=slice(0, 1))
    before = snapshot(pool)
    with pytest.raises(RuntimeError, match="different lengths"):
        pool.prefill(a, np.ones((2, 1)), channels=slice(0, 2))
    assert_same(snapshot(pool), before)  # before the fix: poisoned / refused


def test_a_prefill_refused_for_taps_leaves_no_trace(pool_and_filters):
    pool, _ = pool_and_filters
    a = pool.admit()
    before = snapshot(pool)
    with pytest.raises(ValueError, match="taps"):
        pool.prefill(a, np.ones((C, TAPS)))
    assert_same(snapshot(pool), before)


def test_a_prompt_given_in_chunks_can_be_saved(pool_and_filters, rng):
    pool, phi = pool_and_filters
    a = pool.admit()
    prompt = rng.standard_normal((C, 4))
    pool.prefill(a, prompt[:, :3])
    pool.prefill(a, prompt[:, 3:])  # the inputs grow to 6 columns, 4 of them given
    b = pool.load_state_dict(pool.state_dict(a))  # before the fix: poisoned / refused
    u = rng.standard_normal((C, 1))
    y = pool.step([a, b], np.repeat(u.T, 2, axis=0))
    want = convolve(np.hstack([prompt, u]), phi)[:, -1]
    check_close(y[0], want)
    check_close(y[1], want)


def test_prefill_after_a_rewind_to_step_zero(pool_and_filters, rng):
    """Either the prompt stays closed (refused, nothing changed) or the chunk continues it."""
    pool, phi = pool_and_filters
    prompt = rng.standard_normal((C, 4))
    a = pool.admit(prompt=prompt)
    pool.mark(a)
    pool.step([a], np.ones((1, C)))
    pool.rewind(a, 1)
    assert pool.position(a) == 4
    chunk = rng.standard_normal((C, 2))
    before = snapshot(pool)
    try:
        y = pool.prefill(a, chunk)
    except RuntimeError:
        assert_same(snapshot(pool), before)
        return
    check_close(y, convolve(np.hstack([prompt, chunk]), phi)[:, 4:])
    assert pool.position(a) == 6


@pytest.mark.parametrize("slot", [1.5, "0", np.float64(1.0)], ids=repr)
def test_release_refuses_what_is_not_a_slot(pool_and_filters, slot):
    pool, _ = pool_and_filters
    pool.admit(), pool.admit()
    before = snapshot(pool)
    with pytest.raises(TypeError):
        pool.release(slot)
    assert_same(snapshot(pool), before)
