"""Long-convolution filters for reference models, built once on the host with NumPy.

Every function returns a NumPy array with time last, ``(channels, taps)``, the layout
:class:`futurefill.OnlineConv` and :func:`futurefill.causal_conv` take (``(C, N)``). The spectral
filters of STU are a fixed ``(K, L)`` basis; a model projects them to its channels.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = ["HANKELS", "decaying_random_filters", "hyena_filters", "stu_filters"]

FloatArray = npt.NDArray[np.floating[Any]]

#: Largest length whose STU basis ``method="auto"`` computes with a dense ``eigh`` (O(L^3));
#: longer ones use the structured subspace iteration (O(L log L) per column).
DENSE_MAX_LENGTH = 1024

#: Extra columns of the subspace iteration beyond ``k``. The eigenvalues of the Hankel matrices
#: fall by roughly 4x per index (``Z``) and 2x per index (``Z_L``), so after the three products
#: of the iteration the components outside the top ``k`` are damped by ``(2^-24)^3`` or less.
_OVERSAMPLE = 24
_POWER_ITERATIONS = 2


def _check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


#: The Hankel matrices whose eigenvectors :func:`stu_filters` returns.
HANKELS = ("standard", "L")


def _hankel_entries(length: int, hankel: str) -> FloatArray:
    """``g[r] = Z[i, j]`` for ``r = i + j`` (0-based ``i, j``), ``s = r + 2`` (1-based ``i + j``).

    ``"standard"``: ``2 / (s^3 - s)``; ``"L"``: ``((-1)^(s-2) + 1) * 8 / ((s+3)(s-1)(s+1))``,
    that is ``16 / ((s+3)(s-1)(s+1))`` for even ``s`` and 0 for odd ``s``.
    """
    s = np.arange(2, 2 * length + 1, dtype=np.float64)
    if hankel == "L":
        return np.where(s % 2 == 0, 16.0 / ((s + 3) * (s - 1) * (s + 1)), 0.0)
    return 2.0 / (s**3 - s)


def _dense_eigh(g: FloatArray, size: int, k: int) -> tuple[FloatArray, FloatArray]:
    """Top-``k`` eigenpairs of ``H[i, j] = g[i + j]`` (``size`` square; ``numpy.linalg.eigh``)."""
    idx = np.arange(size)
    w, v = np.linalg.eigh(g[idx[:, None] + idx[None, :]])
    return w[::-1][:k], v[:, ::-1][:, :k]


def _structured_eigh(g: FloatArray, size: int, k: int) -> tuple[FloatArray, FloatArray]:
    """Top-``k`` eigenpairs by subspace iteration with FFT Hankel products, then Rayleigh-Ritz.

    ``H @ X`` costs one FFT convolution per column (``H[i, j] = g[i + j]`` is a correlation with
    ``g``), so the basis of long filters costs O(p L log L) instead of the O(L^3) of a dense
    ``eigh``. The eigenvalues decay geometrically, so ``p = k + 24`` columns hold the top-``k``
    eigenvectors to working precision after two power iterations; the Rayleigh-Ritz step is then
    as backward stable as a dense solver (residual ``~ eps * sigma_1``).
    """
    n = 1 << (2 * size - 2).bit_length()  # >= 2L - 1: wrap-around misses the rows read
    spectrum = np.fft.rfft(g[: 2 * size - 1], n)[:, None]

    def hankel_times(x: FloatArray) -> FloatArray:
        full = np.fft.irfft(np.fft.rfft(x[::-1], n, axis=0) * spectrum, n, axis=0)
        return full[size - 1 : 2 * size - 1]

    p = min(size, k + _OVERSAMPLE)
    q = np.random.default_rng(0).standard_normal((size, p))
    for _ in range(_POWER_ITERATIONS + 1):
        q, _ = np.linalg.qr(hankel_times(q))
    small = q.T @ hankel_times(q)
    w, u = np.linalg.eigh((small + small.T) / 2)
    return w[::-1][:k], (q @ u)[:, ::-1][:, :k]


def _top_eigenpairs(length: int, k: int, method: str, hankel: str) -> tuple[FloatArray, FloatArray]:
    """Top-``k`` eigenpairs ``(w (k,), v (length, k))`` of the Hankel matrix ``hankel``.

    ``Z_L`` is solved as its two diagonal blocks: the rows and columns of even 0-based index
    read ``g[0::2]``, the odd ones ``g[2::2]``, each again a Hankel matrix. Its eigenvectors are
    then exactly zero on the other block (a solve of the whole matrix would leave rounding
    there) and each solve is half the size.
    """
    solve = _dense_eigh if method == "dense" else _structured_eigh
    g = _hankel_entries(length, hankel)
    if hankel != "L":
        return solve(g, length, k)
    values, vectors = [], []
    for parity in (0, 1):
        size = len(range(parity, length, 2))
        if size == 0:
            continue
        w, v = solve(g[2 * parity :: 2], size, min(k, size))
        full = np.zeros((length, v.shape[1]))
        full[parity::2] = v
        values.append(w)
        vectors.append(full)
    w, v = np.concatenate(values), np.concatenate(vectors, axis=1)
    order = np.argsort(-w, kind="stable")[:k]
    return w[order], v[:, order]


@functools.lru_cache(maxsize=16)
def _stu_basis(length: int, k: int, method: str, hankel: str) -> tuple[FloatArray, FloatArray]:
    """Cached ``(eigenvalues (k,), sign-normalised eigenvectors (k, L))``, float64, read-only."""
    w, v = _top_eigenpairs(length, k, method, hankel)
    vectors = np.ascontiguousarray(v.T)
    # Deterministic signs: the entry of largest magnitude of every eigenvector is positive.
    peak = vectors[np.arange(k), np.argmax(np.abs(vectors), axis=1)]
    vectors *= np.where(peak < 0, -1.0, 1.0)[:, None]
    for a in (w, vectors):
        a.setflags(write=False)
    return np.ascontiguousarray(w), vectors


def stu_filters(
    length: int,
    k: int = 24,
    *,
    dtype: npt.DTypeLike = np.float64,
    method: Literal["auto", "dense", "structured"] = "auto",
    hankel: Literal["standard", "L"] = "standard",
    return_eigenvalues: bool = False,
) -> FloatArray | tuple[FloatArray, FloatArray]:
    """Spectral filters of the STU: top eigenvectors of a Hankel matrix, scaled.

    Both Hankel matrices are those of the STU paper (Agarwal, Suo, Chen and Hazan, *Spectral
    State Space Models*, 2023), for ``i, j = 1..length``:

    * ``"standard"``: ``Z[i, j] = 2 / ((i + j)^3 - (i + j))``;
    * ``"L"``: ``Z_L[i, j] = ((-1)^(i+j-2) + 1) * 8 / ((i+j+3) (i+j-1) (i+j+1))``, the
      paper's alternative matrix (the authors' STU pairs it with the positive branch alone).
      Its entries vanish where ``i + j`` is odd: it is block diagonal over the odd and the
      even indices, so each of its eigenvectors (each filter) is zero at every other lag.

    Filter ``m`` is the eigenvector of the ``m``-th largest eigenvalue ``sigma_m`` times
    ``sigma_m ** 0.25`` (eigenvalues below zero by rounding count as zero). Each eigenvector's
    sign is fixed so that its entry of largest magnitude is positive. Filters depend on
    ``length``: shorter ones are not prefixes of longer ones.

    The basis is computed once per ``(length, k, method, hankel)`` and cached (float64, 16
    entries).

    Parameters
    ----------
    length : int
        Number of taps ``L``.
    k : int
        Number of filters ``K`` (24 is usual), at most ``length``.
    dtype : dtype, optional
        Output dtype; the eigenproblem is always solved in float64.
    method : {"auto", "dense", "structured"}
        ``"dense"``: ``numpy.linalg.eigh`` of the ``L x L`` matrix, O(L^3) time and O(L^2)
        memory (about a minute at L = 4096 on two cores). ``"structured"``: subspace iteration
        with FFT products, O(K L log L), which makes L in the hundreds of thousands practical.
        ``"auto"`` uses ``"dense"`` up to ``DENSE_MAX_LENGTH`` taps. Both are backward stable;
        eigenvectors whose eigenvalue is within ``~eps * sigma_1`` of another are only determined
        to ``~eps * sigma_1 / gap`` by either method (the last of 24 at L = 1024 to ~1e-4, its
        filter scaled by ``sigma ** 0.25 ~ 1e-4``).
    hankel : {"standard", "L"}
        Which Hankel matrix: ``Z`` or ``Z_L`` (see above).
    return_eigenvalues : bool
        Also return the eigenvalues ``sigma`` (descending).

    Returns
    -------
    filters : ndarray, shape (k, length)
        Time last, one filter per row (the project's ``(C, N)`` layout).
    sigma : ndarray, shape (k,)
        Only with ``return_eigenvalues``.

    Examples
    --------
    >>> from futurefill.filters import stu_filters
    >>> stu_filters(256, 8).shape
    (8, 256)
    """
    length = _check_positive("length", length)
    k = _check_positive("k", k)
    if k > length:
        raise ValueError(f"k = {k} filters need length >= k, got length {length}")
    if method not in ("auto", "dense", "structured"):
        raise ValueError(f"method must be 'auto', 'dense' or 'structured', got {method!r}")
    if hankel not in HANKELS:
        raise ValueError(f"hankel must be 'standard' or 'L', got {hankel!r}")
    if method == "auto":
        method = "dense" if length <= DENSE_MAX_LENGTH else "structured"
    sigma, vectors = _stu_basis(length, k, method, hankel)
    filters = (vectors * np.maximum(sigma, 0.0)[:, None] ** 0.25).astype(dtype, copy=False)
    if return_eigenvalues:
        return filters, sigma.copy()
    return filters


def _positional_features(length: int, pairs: int) -> FloatArray:
    """``(length, 1 + 2 * pairs)``: normalised time and sine/cosine pairs of rising frequency."""
    t = np.arange(length, dtype=np.float64)[:, None] / max(length - 1, 1)
    freqs = np.arange(1, pairs + 1, dtype=np.float64)[None, :]
    angle = 2 * math.pi * freqs * np.arange(length, dtype=np.float64)[:, None] / length
    return np.concatenate([t, np.sin(angle), np.cos(angle)], axis=1)


def hyena_filters(
    channels: int,
    length: int,
    *,
    seed: int,
    pairs: int = 4,
    width: int = 32,
    frequency: float = 1.0,
    fast_decay: float = 0.3,
    slow_decay: float = 1.5,
    target: float = 1e-2,
    dtype: npt.DTypeLike = np.float64,
) -> FloatArray:
    """Hyena-style implicit filters: a positional-feature MLP times an exponential decay window.

    ``h[c, t] = mlp(features(t))[c] * exp(-alpha_c * t / length)``. The features are the
    normalised time and ``pairs`` sine/cosine pairs; the MLP has two hidden layers of ``width``
    units with ``sin(frequency * .)`` activations and seeded Gaussian weights. Channel ``c``
    decays to ``target`` at the fraction ``d_c`` of the length, ``d_c`` spaced evenly from
    ``fast_decay`` to ``slow_decay`` over the channels, so some channels are short and others
    span the whole sequence. Every filter is divided by its L1 norm (unit gain).

    Parameters
    ----------
    channels : int
        Number of filters ``C``.
    length : int
        Number of taps ``N``.
    seed : int
        Seed of the MLP weights.
    pairs, width : int
        Sine/cosine feature pairs and hidden units.
    frequency : float
        Frequency of the sine activations.
    fast_decay, slow_decay : float
        Fractions of ``length`` at which the fastest and slowest channels reach ``target``.
    target : float
        Value of the decay window at those fractions, in ``(0, 1)``.
    dtype : dtype, optional
        Output dtype (computed in float64).

    Returns
    -------
    ndarray, shape (channels, length)

    Examples
    --------
    >>> import numpy as np
    >>> from futurefill import hyena_filters
    >>> h = hyena_filters(2, 16, seed=0)
    >>> h.shape
    (2, 16)
    >>> bool(np.allclose(np.abs(h).sum(axis=1), 1.0))  # unit gain
    True
    """
    channels = _check_positive("channels", channels)
    length = _check_positive("length", length)
    if not 0 < target < 1 or not 0 < fast_decay <= slow_decay:
        raise ValueError("need 0 < target < 1 and 0 < fast_decay <= slow_decay")
    rng = np.random.default_rng(seed)
    z = _positional_features(length, pairs)
    sizes = [z.shape[1], width, width, channels]
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        z = z @ (rng.standard_normal((fan_in, fan_out)) / math.sqrt(fan_in))
        z = z + 0.1 * rng.standard_normal(fan_out)
        if i < len(sizes) - 2:
            z = np.sin(frequency * z)
    reach = np.linspace(fast_decay, slow_decay, channels)
    alpha = -math.log(target) / reach  # exp(-alpha * reach) == target
    t = np.arange(length, dtype=np.float64) / length
    h = z.T * np.exp(-alpha[:, None] * t[None, :])
    return _unit_gain(h).astype(dtype, copy=False)


def decaying_random_filters(
    channels: int,
    length: int,
    *,
    seed: int,
    decay: float | npt.ArrayLike | None = None,
    normalize: bool = False,
    dtype: npt.DTypeLike = np.float64,
) -> FloatArray:
    """Seeded Gaussian filters under an exponential envelope ``exp(-m / decay)``.

    The one generator of random decaying test and benchmark filters in the project: the
    benchmarks, the tests and the examples all draw their filters here, so that the same
    ``(channels, length, seed, decay)`` always means the same taps.

    Parameters
    ----------
    channels, length : int
        Number of filters ``C`` and of taps ``N``.
    seed : int
        Seed of the Gaussian taps (``numpy.random.default_rng(seed)``).
    decay : float or array of shape (channels,), optional
        Time constant in taps (per channel if an array); default ``max(length / 8, 1)``.
    normalize : bool
        Divide every filter by its L1 norm (unit gain: ``sum |phi| = 1``), which keeps a
        feedback loop such as ``u[t+1] = tanh(y[t])`` bounded.
    dtype : dtype, optional
        Dtype of the result; the taps are drawn and scaled in float64.

    Returns
    -------
    ndarray, shape (channels, length)

    Examples
    --------
    >>> from futurefill.filters import decaying_random_filters
    >>> decaying_random_filters(2, 16, seed=0, decay=4.0).shape
    (2, 16)
    """
    channels = _check_positive("channels", channels)
    length = _check_positive("length", length)
    tau = np.asarray(max(length / 8, 1.0) if decay is None else decay, dtype=np.float64)
    if tau.ndim > 1 or (tau.ndim == 1 and tau.shape[0] != channels):
        raise ValueError(f"decay must be a number or have shape ({channels},), got {tau.shape}")
    if not np.all(tau > 0):
        raise ValueError("decay must be positive")
    envelope = np.exp(-np.arange(length, dtype=np.float64)[None, :] / np.reshape(tau, (-1, 1)))
    taps = np.random.default_rng(seed).standard_normal((channels, length)) * envelope
    return (_unit_gain(taps) if normalize else taps).astype(dtype, copy=False)


def _unit_gain(h: FloatArray) -> FloatArray:
    """Every row of ``h`` divided by its L1 norm (rows of zeros stay zero)."""
    return h / np.maximum(np.abs(h).sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
