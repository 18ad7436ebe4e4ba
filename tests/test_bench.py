"""The same-run benchmark's floor: exact, and warm (no fresh temporaries per call)."""

from __future__ import annotations

import numpy as np
import pytest

import futurefill
from futurefill.measure.bench import _offline
from futurefill.ops import filter_spectrum

from .conftest import decaying_filters, oracle


@pytest.mark.parametrize("backend_name", ["numpy", "array_api_strict"])
def test_the_floor_is_the_causal_convolution(rng, backend_name: str) -> None:
    if backend_name not in futurefill.list_backends():
        pytest.skip(f"{backend_name} is not installed")
    ex = futurefill.get_backend(backend_name)
    phi = decaying_filters(rng, 3, 100)
    u = rng.standard_normal((2, 3, 100))
    n = 256
    floor = _offline(ex, ex.asarray(u), filter_spectrum(ex.asarray(phi), 0, 100, n, xp=ex.xp), n)
    got = ex.to_numpy(floor())
    np.testing.assert_allclose(got, oracle(u, phi), rtol=0, atol=1e-12)


def test_the_numpy_floor_reuses_its_arrays(rng) -> None:
    ex = futurefill.get_backend("numpy")
    u = rng.standard_normal((1, 2, 64))
    floor = _offline(ex, u, filter_spectrum(rng.standard_normal((2, 64)), 0, 64, 128), 128)
    first, second = floor(), floor()
    assert first.base is second.base  # the same preallocated output, pages already faulted in
    np.testing.assert_array_equal(first, second)
