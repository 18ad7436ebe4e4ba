"""Half-precision inputs (bfloat16, float16): accepted at the boundary, computed in float32.

Bound: the convolution of the half-rounded inputs and filters is computed in float32, whose
FFT error per output is at most ``3 eps32 log2(L)^2 ||u|| ||phi||`` (the bound of
``test_online.py``), and the result is rounded once to the half type (relative error at most
its unit roundoff: 2**-8 for bfloat16, 2**-11 for float16). The oracle is the float64 direct
convolution of the same half-rounded values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from futurefill import OnlineConv
from futurefill.executor import Executor

from .conftest import decaying_filters, oracle

UNIT_ROUNDOFF = {"bfloat16": 2.0**-8, "float16": 2.0**-11}


def _half(backend: Executor, name: str):
    half = backend.half_dtype(name)
    if half is None:
        pytest.skip(f"backend {backend.name!r} has no {name}")
    return half


def _rounded(backend: Executor, x: np.ndarray, half) -> tuple:
    """``x`` as a half-precision backend array, and its exact values in float64."""
    xp = backend.xp
    arr = xp.astype(backend.asarray(x, dtype="float32"), half)
    exact = backend.to_numpy(xp.astype(arr, backend.resolve_dtype("float32"))).astype(np.float64)
    return arr, exact


def _bound(u: np.ndarray, phi: np.ndarray, want: np.ndarray, name: str, L: int) -> np.ndarray:
    fft = 3 * 2.0**-24 * math.log2(max(L, 2)) ** 2
    norms = np.linalg.norm(u, axis=-1)[..., None] * np.linalg.norm(phi, axis=-1)[None, :, None]
    return fft * norms + UNIT_ROUNDOFF[name] * np.abs(want)


@pytest.mark.parametrize("name", ["bfloat16", "float16"])
@pytest.mark.parametrize("schedule", ["naive", "continuous"])
def test_half_inputs_within_the_float32_bound(backend: Executor, rng, name, schedule) -> None:
    half = _half(backend, name)
    B, C, P, L = 2, 3, 5, 300
    phi_in, phi = _rounded(backend, decaying_filters(rng, C, P + L, scale=100.0), half)
    u_in, u = _rounded(backend, rng.standard_normal((B, C, P + L)), half)
    conv = OnlineConv(phi_in, L, schedule=schedule, prompt=P, batch=B, backend=backend)
    assert conv.dtype == half
    parts = [conv.prefill(u_in[..., :P])]
    assert parts[0].dtype == half
    for t in range(L):
        parts.append(conv.step(u_in[..., P + t])[..., None])
    xp = backend.xp
    got = np.concatenate(
        [backend.to_numpy(xp.astype(p, backend.resolve_dtype("float32"))) for p in parts], -1
    ).astype(np.float64)
    want = oracle(u, phi)
    assert np.all(np.abs(got - want) <= _bound(u, phi, want, name, P + L))


def test_half_rollout_feedback_sees_the_input_dtype(backend: Executor, rng) -> None:
    half = _half(backend, "float16")
    L = 40
    phi_in, phi = _rounded(backend, decaying_filters(rng, 2, L), half)
    u0_in, u0 = _rounded(backend, rng.standard_normal((1, 2)), half)
    seen = []

    def feedback(y):
        seen.append(y.dtype)
        return backend.xp.tanh(y)

    conv = OnlineConv(phi_in, L, backend=backend, dtype="float16")
    ys = conv.rollout(u0_in, feedback)
    assert ys.dtype == half and all(d == half for d in seen)
    got = backend.to_numpy(backend.xp.astype(ys, backend.resolve_dtype("float32")))
    inputs = np.concatenate([u0[..., None], np.tanh(got[..., :-1].astype(np.float64))], -1)
    # the feedback's tanh ran in half precision: compare with its rounding allowed for
    inputs = backend.to_numpy(
        backend.xp.astype(backend.xp.astype(backend.asarray(inputs, "float32"), half),
                          backend.resolve_dtype("float32"))
    ).astype(np.float64)  # fmt: skip
    want = oracle(inputs, phi)
    assert np.all(np.abs(got - want) <= _bound(inputs, phi, want, "float16", L))
