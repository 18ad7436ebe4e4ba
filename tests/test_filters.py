"""Filters of the reference models: STU spectral basis, Hyena-style and random decaying filters."""

from __future__ import annotations

import numpy as np
import pytest

from futurefill import filters as ff
from futurefill.filters import decaying_random_filters, hyena_filters, stu_filters

EPS = np.finfo(np.float64).eps


def hankel_by_loops(L: int, hankel: str = "standard") -> np.ndarray:
    """The STU paper's Hankel matrices, ``i, j = 1..L``, entry by entry (independent).

    ``"standard"``: ``Z[i, j] = 2 / ((i + j)^3 - (i + j))``; ``"L"``:
    ``Z_L[i, j] = ((-1)^(i+j-2) + 1) * 8 / ((i+j+3)(i+j-1)(i+j+1))``.
    """
    Z = np.empty((L, L))
    for i in range(1, L + 1):
        for j in range(1, L + 1):
            s = i + j
            if hankel == "L":
                Z[i - 1, j - 1] = ((-1.0) ** (s - 2) + 1.0) * 8.0 / ((s + 3) * (s - 1) * (s + 1))
            else:
                Z[i - 1, j - 1] = 2.0 / (s**3 - s)
    return Z


@pytest.mark.parametrize("hankel", ["standard", "L"])
@pytest.mark.parametrize("method", ["dense", "structured"])
def test_stu_filters_solve_the_eigenproblem(method: str, hankel: str) -> None:
    L, K = 96, 12
    Z = hankel_by_loops(L, hankel)
    phi, sigma = stu_filters(L, K, method=method, hankel=hankel, return_eigenvalues=True)
    assert phi.shape == (K, L) and phi.dtype == np.float64
    # Eigenvalues: the K largest of an independent dense solve, descending. Both are backward
    # stable, so they agree to a few eps * sigma_1.
    reference = np.linalg.eigvalsh(Z)[::-1][:K]
    np.testing.assert_allclose(sigma, reference, rtol=0, atol=50 * EPS * reference[0])
    assert np.all(np.diff(sigma) <= 0)
    # Filters are eigenvectors scaled by sigma^(1/4): undo the scale, check Z v = sigma v and
    # orthonormality (residuals of a backward-stable solver are ~ eps * ||Z||).
    v = phi / sigma[:, None] ** 0.25
    np.testing.assert_allclose(v @ v.T, np.eye(K), atol=1e-12)
    residual = Z @ v.T - v.T * sigma
    assert np.abs(residual).max() <= 100 * EPS * sigma[0]


@pytest.mark.parametrize("hankel", ["standard", "L"])
def test_structured_method_agrees_with_dense(hankel: str) -> None:
    L, K = 512, 24
    dense, sigma = stu_filters(L, K, method="dense", hankel=hankel, return_eigenvalues=True)
    fast, sigma_fast = stu_filters(
        L, K, method="structured", hankel=hankel, return_eigenvalues=True
    )
    np.testing.assert_allclose(sigma_fast, sigma, rtol=0, atol=20 * EPS * sigma[0])
    # Davis-Kahan: an eigenvector is determined to ~ (backward error) / (gap to the rest of the
    # spectrum); backward errors are <= 1e4 * eps * sigma_1 for both solvers at this size. The
    # filters carry the extra factor sigma^(1/4); unit vectors differ by at most 2.
    gaps = np.abs(sigma[:, None] - sigma[None, :]) + np.diag(np.full(K, np.inf))
    gap = np.minimum(gaps.min(axis=1), sigma - np.append(sigma[1:], 0.0))
    bound = np.maximum(sigma, 0) ** 0.25 * np.minimum(2.0, 1e4 * EPS * sigma[0] / gap)
    err = np.linalg.norm(dense - fast, axis=1)
    assert np.all(err <= bound), (err / bound).max()
    # The leading filters (well separated eigenvalues) agree to rounding.
    np.testing.assert_allclose(fast[:4], dense[:4], atol=1e-12)


@pytest.mark.parametrize("method", ["dense", "structured"])
def test_stu_signs_are_normalised(method: str) -> None:
    phi = stu_filters(200, 16, method=method)
    peak = phi[np.arange(16), np.argmax(np.abs(phi), axis=1)]
    assert np.all(peak > 0)


def test_stu_auto_method_and_dtype() -> None:
    small = stu_filters(64, 4)
    np.testing.assert_array_equal(small, stu_filters(64, 4, method="dense"))
    long = stu_filters(ff.DENSE_MAX_LENGTH + 1, 4)
    np.testing.assert_array_equal(
        long, stu_filters(ff.DENSE_MAX_LENGTH + 1, 4, method="structured")
    )
    f32 = stu_filters(64, 4, dtype=np.float32)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, small, rtol=1e-6)


def test_stu_basis_is_cached_and_results_are_private() -> None:
    ff._stu_basis.cache_clear()
    first = stu_filters(128, 8)
    info = ff._stu_basis.cache_info()
    assert (info.hits, info.misses) == (0, 1)
    first[...] = 0.0  # the caller owns its copy: the cache must not change
    second = stu_filters(128, 8)
    assert ff._stu_basis.cache_info().hits == 1
    assert np.abs(second).max() > 0
    stu_filters(128, 9)
    assert ff._stu_basis.cache_info().misses == 2


def test_stu_filters_depend_on_length() -> None:
    short = stu_filters(100, 4)
    long = stu_filters(120, 4)
    assert not np.allclose(long[:, :100], short, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "error"),
    [((4, 5), ValueError), ((0, 1), ValueError), ((8, 2.5), ValueError)],
)
def test_stu_filters_reject_bad_sizes(args: tuple, error: type) -> None:
    with pytest.raises(error):
        stu_filters(*args)


def test_stu_filters_reject_unknown_method() -> None:
    with pytest.raises(ValueError, match="method"):
        stu_filters(16, 2, method="lanczos")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hankel"):
        stu_filters(16, 2, hankel="l")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["dense", "structured"])
@pytest.mark.parametrize(("L", "K"), [(1, 1), (2, 2), (7, 7), (300, 24)])
def test_hankel_l_filters_vanish_at_every_other_lag(L: int, K: int, method: str) -> None:
    # Z_L is zero where i + j is odd: block diagonal over odd and even indices. Each block is
    # solved on its own, so every filter is exactly zero on the other one.
    phi = stu_filters(L, K, method=method, hankel="L")
    even, odd = np.abs(phi[:, 0::2]).max(axis=1), np.abs(phi[:, 1::2]).max(axis=1, initial=0)
    assert np.all((even == 0) ^ (odd == 0))
    # Both parities occur among the leading filters (the blocks' spectra interleave).
    assert K < 2 or {bool(e == 0) for e in even[:2]} == {False, True}


def test_hankel_l_differs_from_standard_and_is_cached_apart() -> None:
    standard, sigma = stu_filters(64, 4, return_eigenvalues=True)
    hankel_l, sigma_l = stu_filters(64, 4, hankel="L", return_eigenvalues=True)
    assert not np.allclose(sigma, sigma_l)
    assert not np.allclose(standard, hankel_l)
    np.testing.assert_array_equal(stu_filters(64, 4), standard)


def test_hyena_filters_shape_seed_and_gain() -> None:
    h = hyena_filters(6, 300, seed=3)
    assert h.shape == (6, 300) and h.dtype == np.float64
    np.testing.assert_array_equal(h, hyena_filters(6, 300, seed=3))
    assert not np.allclose(h, hyena_filters(6, 300, seed=4))
    np.testing.assert_allclose(np.abs(h).sum(axis=1), 1.0, rtol=1e-12)
    assert hyena_filters(2, 50, seed=0, dtype=np.float32).dtype == np.float32


def test_hyena_filters_decay_from_fast_to_slow() -> None:
    L = 2000
    h = hyena_filters(8, L, seed=0, fast_decay=0.1, slow_decay=2.0)

    def tail_share(row: np.ndarray) -> float:
        return float(np.sum(row[L // 2 :] ** 2) / np.sum(row**2))

    # The fastest channel's window is exp(-ln(100) * 5) ~ 1e-10 at mid-length: no energy left;
    # the slowest one is still above 0.1 at the end, so its tail matters.
    assert tail_share(h[0]) < 1e-12
    assert tail_share(h[-1]) > 1e-3


def test_hyena_filters_reject_bad_decay() -> None:
    with pytest.raises(ValueError):
        hyena_filters(2, 10, seed=0, fast_decay=2.0, slow_decay=1.0)
    with pytest.raises(ValueError):
        hyena_filters(2, 10, seed=0, target=1.5)


def test_decaying_random_filters() -> None:
    h = decaying_random_filters(3, 400, seed=7, decay=20.0)
    assert h.shape == (3, 400)
    np.testing.assert_array_equal(h, decaying_random_filters(3, 400, seed=7, decay=20.0))
    # Undoing the envelope leaves the seeded standard normal taps.
    white = h * np.exp(np.arange(400) / 20.0)
    np.testing.assert_allclose(white, np.random.default_rng(7).standard_normal((3, 400)))
    per_channel = decaying_random_filters(2, 100, seed=1, decay=[5.0, 50.0])
    assert np.abs(per_channel[0, 60:]).max() < np.abs(per_channel[1, 60:]).max()
    with pytest.raises(ValueError):
        decaying_random_filters(2, 100, seed=1, decay=[5.0, 5.0, 5.0])
    with pytest.raises(ValueError):
        decaying_random_filters(2, 100, seed=1, decay=-1.0)


def test_decaying_random_filters_normalized_to_unit_gain() -> None:
    raw = decaying_random_filters(4, 64, seed=3)
    unit = decaying_random_filters(4, 64, seed=3, normalize=True, dtype=np.float32)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(np.abs(unit).sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit, raw / np.abs(raw).sum(axis=1, keepdims=True), rtol=1e-6)
