"""The algorithm layer: FutureFill kernels written against the Python array API standard.

Every function takes arrays of any standard-conforming namespace (found with
``array_api_compat.array_namespace``) and imports no backend, so it runs unchanged under
NumPy, PyTorch, JAX, CuPy and ``array_api_strict``. Time is the last axis of every array.
"""

from __future__ import annotations

from typing import Any

from ._checks import next_pow2
from ._compat import array_namespace

__all__ = [
    "block_spectrum",
    "causal_conv",
    "fill_future",
    "filter_spectrum",
    "inverse_slice",
    "next_pow2",
    "reversed_taps",
    "window_sum",
]

Array = Any


def _fft(xp: Any) -> Any:
    fft = getattr(xp, "fft", None)
    if fft is None:
        raise TypeError(
            f"{getattr(xp, '__name__', xp)!s} has no FFT extension (xp.fft); FutureFill needs "
            "rfft/irfft"
        )
    return fft


def filter_spectrum(filters: Array, start: int, stop: int, n: int, *, xp: Any = None) -> Array:
    """Real FFT of size ``n`` of the filter taps ``filters[..., start:stop]``.

    Parameters
    ----------
    filters : array, shape (..., N)
        Filter taps, time last.
    start, stop : int
        Tap range; ``stop - start <= n``.
    n : int
        FFT size.
    xp : namespace, optional
        Array namespace; inferred from ``filters`` when omitted.

    Returns
    -------
    array, shape (..., n // 2 + 1)
        Complex spectrum.
    """
    xp = array_namespace(filters) if xp is None else xp
    return _fft(xp).rfft(filters[..., start:stop], n=n, axis=-1)


def fill_future(
    block: Array, spectrum: Array, n: int, read_start: int, read_stop: int, *, xp: Any = None
) -> Array:
    """The FutureFill operation: a block's contribution to a range of later outputs.

    With ``block[..., i] = u[a + i]`` and ``spectrum`` the size-``n`` spectrum of
    ``phi[lo:hi]``, entry ``k`` of the result is ``sum_i u[a+i] * phi[a + lo + read_start + k
    - (a+i)]``, i.e. the block's contribution to output ``a + lo + read_start + k``. It is exact
    (no circular wrap-around) when ``n >= len(block) + (hi - lo) - 1 - read_start`` and
    ``read_stop <= n``; :meth:`futurefill.Plan.validate` checks this for every planned task.

    Parameters
    ----------
    block : array, shape (..., m)
        Known inputs, time last.
    spectrum : array, shape (..., n // 2 + 1)
        From :func:`filter_spectrum`; broadcasts against ``block``.
    n : int
        FFT size.
    read_start, read_stop : int
        Slice of the linear convolution to return.
    xp : namespace, optional
        Array namespace; inferred from ``block`` when omitted.

    Returns
    -------
    array, shape (..., read_stop - read_start)
    """
    xp = array_namespace(block) if xp is None else xp
    return inverse_slice(
        block_spectrum(block, n, xp=xp) * spectrum, n, read_start, read_stop, xp=xp
    )


def block_spectrum(block: Array, n: int, *, xp: Any = None) -> Array:
    """Real FFT of size ``n`` of a block of inputs ``(..., m)``, ``m <= n`` (zero-padded): the
    forward half of :func:`fill_future`, kept when several filter slices reuse it."""
    xp = array_namespace(block) if xp is None else xp
    return _fft(xp).rfft(block, n=n, axis=-1)


def inverse_slice(
    spectrum: Array, n: int, read_start: int, read_stop: int, *, xp: Any = None
) -> Array:
    """Entries ``read_start .. read_stop-1`` of the inverse real FFT of size ``n`` of
    ``spectrum`` (a sum of products of block and filter spectra): the inverse half of
    :func:`fill_future`, run once for all the products of one target."""
    xp = array_namespace(spectrum) if xp is None else xp
    return _fft(xp).irfft(spectrum, n=n, axis=-1)[..., read_start:read_stop]


def causal_conv(u: Array, filters: Array, *, xp: Any = None) -> Array:
    """Offline causal convolution ``y[..., t] = sum_{s<=t} phi[..., t-s] u[..., s]`` by FFT.

    This is the floor every online schedule is measured against: all inputs known at once.

    Parameters
    ----------
    u : array, shape (..., C, T)
        Inputs, time last.
    filters : array, shape (C, N), N >= T
        Filter taps.
    xp : namespace, optional
        Array namespace; inferred from the arguments when omitted.

    Returns
    -------
    array, shape (..., C, T)

    Examples
    --------
    >>> import numpy as np
    >>> from futurefill import causal_conv
    >>> rng = np.random.default_rng(0)
    >>> u, phi = rng.standard_normal((2, 16)), rng.standard_normal((2, 16))
    >>> y = causal_conv(u, phi)
    >>> y.shape
    (2, 16)
    >>> bool(np.allclose(y[1], np.convolve(u[1], phi[1])[:16]))
    True
    """
    xp = array_namespace(u, filters) if xp is None else xp
    T = u.shape[-1]
    if filters.shape[-1] < T:
        raise ValueError(f"filters have {filters.shape[-1]} taps, fewer than the {T} inputs")
    n = next_pow2(2 * T - 1)
    return fill_future(u, filter_spectrum(filters, 0, T, n, xp=xp), n, 0, T, xp=xp)


def reversed_taps(filters: Array, width: int, *, xp: Any = None) -> Array:
    """The first ``width`` taps reversed: ``out[..., width-1-m] = filters[..., m]``.

    A local window ``sum_{s=w..j} phi[j-s] u[s]`` is then the dot product of ``u[w:j+1]`` with
    ``out[..., width-(j-w+1):]`` (see :func:`window_sum`).
    """
    xp = array_namespace(filters) if xp is None else xp
    return xp.flip(filters[..., :width], axis=-1)


def window_sum(inputs: Array, taps_reversed: Array, *, xp: Any = None) -> Array:
    """Directly summed local window: ``sum(inputs * taps_reversed, axis=-1)``.

    Parameters
    ----------
    inputs : array, shape (..., m)
        Inputs ``u[w:j+1]`` of the window, time last.
    taps_reversed : array, shape (..., m)
        ``phi[j-w], ..., phi[0]`` (a slice of :func:`reversed_taps`).
    """
    xp = array_namespace(inputs) if xp is None else xp
    return xp.sum(inputs * taps_reversed, axis=-1)
