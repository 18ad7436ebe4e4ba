"""The array-API kernels against direct float64 sums, under NumPy and array_api_strict."""

from __future__ import annotations

import array_api_strict as xs
import numpy as np
import pytest

from futurefill import ops

from .conftest import oracle


@pytest.fixture(params=["numpy", "array_api_strict"])
def xp(request: pytest.FixtureRequest):
    import array_api_compat.numpy as cnp

    return cnp if request.param == "numpy" else xs


def test_causal_conv_matches_numpy_convolve(xp, rng: np.random.Generator) -> None:
    u = rng.standard_normal((2, 3, 37))
    phi = rng.standard_normal((3, 40))
    y = ops.causal_conv(xp.asarray(u), xp.asarray(phi))
    np.testing.assert_allclose(np.asarray(y), oracle(u, phi), rtol=0, atol=1e-12)


@pytest.mark.parametrize("T", [1, 2, 3, 5, 9, 17])
@pytest.mark.parametrize("extra", [0, 3, 60])
def test_causal_conv_any_length_and_taps(xp, rng, T: int, extra: int) -> None:
    """Lengths whose ``2T - 2`` is a power of two (the FFT is then one point too short if
    sized by it), exactly ``T`` taps, and taps far beyond the FFT size (they must be cut)."""
    u = rng.standard_normal((2, 3, T))
    phi = rng.standard_normal((3, T + extra))
    y = ops.causal_conv(xp.asarray(u), xp.asarray(phi))
    np.testing.assert_allclose(np.asarray(y), oracle(u, phi), rtol=0, atol=1e-12)


def test_causal_conv_needs_enough_taps(xp) -> None:
    with pytest.raises(ValueError, match="taps"):
        ops.causal_conv(xp.zeros((1, 1, 5)), xp.zeros((1, 4)))


@pytest.mark.parametrize(("a", "b", "c", "d"), [(0, 4, 4, 8), (3, 5, 9, 12), (0, 1, 1, 2)])
def test_fill_future_is_the_block_contribution(xp, rng, a: int, b: int, c: int, d: int) -> None:
    phi = rng.standard_normal(32)
    u = rng.standard_normal(32)
    lo, hi = c - b + 1, d - a
    n = ops.next_pow2((b - a) + (hi - lo) - 1)
    spec = ops.filter_spectrum(xp.asarray(phi[None, :]), lo, hi, n)
    got = ops.fill_future(xp.asarray(u[None, a:b]), spec, n, c - a - lo, d - a - lo)
    want = [sum(phi[j - s] * u[s] for s in range(a, b)) for j in range(c, d)]
    np.testing.assert_allclose(np.asarray(got)[0], want, rtol=0, atol=1e-12)


def test_window_sum_with_reversed_taps(xp, rng) -> None:
    phi = rng.standard_normal((2, 10))
    u = rng.standard_normal((2, 10))
    rev = ops.reversed_taps(xp.asarray(phi), 10)
    j, w = 7, 3
    got = ops.window_sum(xp.asarray(u[:, w : j + 1]), rev[:, 10 - (j - w + 1) :])
    want = [sum(phi[c, j - s] * u[c, s] for s in range(w, j + 1)) for c in range(2)]
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-12)


def test_namespace_without_fft_is_refused() -> None:
    class NoFFT:
        __name__ = "nofft"

    with pytest.raises(TypeError, match="FFT extension"):
        ops.filter_spectrum(np.zeros((1, 4)), 0, 4, 4, xp=NoFFT())


def test_next_pow2() -> None:
    assert [ops.next_pow2(n) for n in (0, 1, 2, 3, 4, 5, 1023, 1025)] == [
        1,
        1,
        2,
        4,
        4,
        8,
        1024,
        2048,
    ]
