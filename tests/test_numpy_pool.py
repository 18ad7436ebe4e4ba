"""The NumPy pool kernels (``futurefill_numpy._pool``): window sums bucketed by width, each row
computed as a lock-step step computes it.

``emit_rows`` splits the stepped rows by window width (:func:`width_buckets`) and gives each
row the lock-step step's own sum: one ``vecdot`` over exactly its window ``start .. slot`` with
the input in the slot, then the accumulated future the slot held; ``fill_group`` runs the
lock-step task's transform, product and inverse over its rows. So on NumPy a pool's outputs
equal those of an :class:`OnlineConv` of batch one running the same sequence bit for bit
(``continuous``: every task runs alone, no shared transforms), however the rows of a call
differ in width -- and both equal ``numpy.convolve`` to rounding (float64: 1e-12 of the largest
|output|, as in ``test_pool.py``; float32: 1e-5, a few float32 ulps of each window sum and FFT
round trip of length <= 64).
"""

from __future__ import annotations

import numpy as np
import pytest

from futurefill import OnlineConv, StreamPool
from futurefill_numpy._pool import width_buckets

from .conftest import decaying_filters, oracle

C, L, LAG = 3, 96, (0, 5, 37)  # three sequences, started 0, 5 and 37 steps apart
TOL = {"float64": 1e-12, "float32": 1e-5}


def test_width_buckets_partition_the_rows_by_width(rng):
    for size in (1, 2, 7, 40):
        widths = rng.integers(1, 5, size)
        buckets = width_buckets(widths)
        seen = np.concatenate([np.atleast_1d(np.arange(size)[index]) for _, index in buckets])
        np.testing.assert_array_equal(np.sort(seen), np.arange(size))  # each row once
        assert [w for w, _ in buckets] == sorted({int(w) for w in widths})
        for width, index in buckets:
            assert (widths[index] == width).all()
    assert width_buckets(np.full(4, 3)) == [(3, slice(None))]  # one width: no index
    assert width_buckets(np.array([2, 1, 2]))[0] == (1, 1)  # one row: its position


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pool_outputs_equal_lock_step_outputs_bit_for_bit(rng, dtype):
    phi = decaying_filters(rng, C, L)
    u = rng.standard_normal((len(LAG), C, L)).astype(dtype)
    pool = StreamPool(phi, L, capacity=len(LAG), dtype=dtype, backend="numpy", direct_below=8)
    slots = [pool.admit() for _ in LAG]
    got = np.zeros((len(LAG), C, L), dtype)
    widths_seen = set()
    for t in range(L + max(LAG)):
        live = [i for i, lag in enumerate(LAG) if lag <= t < lag + L]
        steps = [t - LAG[i] for i in live]
        start = pool.plan.window_slot[steps]
        widths_seen.add(len(set((np.asarray(steps) - start).tolist())))
        y = pool.step([slots[i] for i in live], u[live, :, steps])
        got[live, :, steps] = y
    assert max(widths_seen) > 1  # calls whose rows have windows of several widths
    for i in range(len(LAG)):
        alone = OnlineConv(phi, L, batch=1, schedule=pool.plan, dtype=dtype, backend="numpy")
        want = np.stack([alone.step(u[i : i + 1, :, t])[0] for t in range(L)], axis=-1)
        np.testing.assert_array_equal(got[i], want)
    want = oracle(u.astype(np.float64), phi)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)
