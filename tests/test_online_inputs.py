"""OnlineConv's inputs follow the conventions of array libraries (see ``futurefill._inputs``).

A list, a NumPy array given to another backend's stream and float32 data for a float64 stream
are converted: the outputs are exactly those of the same stream fed inputs converted by hand.
What cannot be converted exactly (complex values, a cast that would round, a ragged list) is
refused with the reason and the state unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from futurefill import OnlineConv
from futurefill.executor import Executor

from .conftest import decaying_filters, oracle

B, C, P, L = 2, 3, 4, 16
# float64 outputs are sums of O(log L) FFT convolutions, each with relative error ~1e-16.
RTOL64 = 1e-12

Form = Callable[[Executor, np.ndarray], Any]

#: How a user may give float64 data whose values float32 holds exactly.
CONVERTED: dict[str, Form] = {
    "list": lambda ex, x: x.tolist(),
    "numpy": lambda ex, x: np.array(x),  # another library's array, except on NumPy's stream
    "numpy_float32": lambda ex, x: x.astype(np.float32),
    "native_float32": lambda ex, x: ex.asarray(x.astype(np.float32), dtype="float32"),
}

#: Inputs a float32 stream refuses, with the reason its message gives.
REFUSED: dict[str, tuple[Form, str]] = {
    "complex": (lambda ex, x: (x + 1j).tolist(), "real numbers"),
    "native_complex": (lambda ex, x: ex.asarray(x + 0j), "real numbers"),
    "float64_that_rounds": (lambda ex, x: x + 0.1, "would round"),
    "native_float64_that_rounds": (
        lambda ex, x: ex.asarray(x + 0.1, dtype="float64"),
        "would round",
    ),
    "integers_that_round": (lambda ex, x: np.full(x.shape, 2**24 + 1), "would round"),
    "ragged_list": (lambda ex, x: [[x.tolist()[0]], *x.tolist()[1:]], "array of numbers"),
}


def _inputs(rng: np.random.Generator) -> np.ndarray:
    """float64 inputs ``(B, C, P + L)`` whose values are float32 numbers."""
    return rng.standard_normal((B, C, P + L)).astype(np.float32).astype(np.float64)


def _by_hand(ex: Executor, x: np.ndarray, dtype: str) -> Any:
    return ex.asarray(np.ascontiguousarray(x, dtype=dtype), dtype=dtype)


def _drive(conv: OnlineConv, give: Callable[[np.ndarray], Any], u: np.ndarray) -> np.ndarray:
    """Every way in: prefill, step, emit + advance, run and a rollout; the outputs on the host."""
    ex = conv.backend
    ys = [conv.prefill(give(u[..., :P]))]
    ys += [conv.step(give(u[..., t]))[..., None] for t in (P, P + 1)]
    t = P + 2
    parts = [conv.emit(give(u[:, :1, t]), slice(0, 1)), conv.emit(give(u[:, 1:, t]), slice(1, C))]
    conv.advance()
    ys.append(ex.xp.concat(parts, axis=1)[..., None])
    ys.append(conv.run(give(u[..., P + 3 : P + L - 4])))
    ys.append(conv.rollout(give(u[..., P + L - 4]), ex.xp.tanh, 4))
    for y in ys:
        assert conv.backend.is_native(y) and y.dtype == conv.dtype
    return np.concatenate([ex.to_numpy(y) for y in ys], axis=-1)


@pytest.mark.parametrize(
    ("form", "length"), [(form, L) for form in CONVERTED] + [("list", None)]
)  # fmt: skip
def test_array_likes_give_the_outputs_of_converting_by_hand(
    backend: Executor, rng, form: str, length: int | None
) -> None:
    if form == "numpy" and backend.name == "numpy":
        pytest.skip("NumPy's stream: its own arrays, nothing converted")
    phi = decaying_filters(rng, C, P + L)
    u = _inputs(rng)
    ref, conv = (
        OnlineConv(phi, length, prompt=P, batch=B, backend=backend, dtype="float64")
        for _ in range(2)
    )
    want = _drive(ref, lambda x: _by_hand(backend, x, "float64"), u)
    got = _drive(conv, lambda x: CONVERTED[form](backend, x), u)
    np.testing.assert_array_equal(got, want)
    known = P + L - 4  # the inputs given, not fed back
    exact = oracle(u[..., :known], phi)
    assert np.abs(got[..., :known] - exact).max() <= RTOL64 * np.abs(exact).max()


def test_python_floats_take_the_streams_precision(backend: Executor, rng) -> None:
    """A list of Python floats is "weak" (NEP 50): a float32 stream rounds it to nearest, as
    ``np.asarray(values, dtype=np.float32)`` does; a value beyond float32's range is refused."""
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((B, C, P + L)) + 0.1  # not float32 numbers
    ref, conv = (
        OnlineConv(phi, L, prompt=P, batch=B, backend=backend, dtype="float32") for _ in range(2)
    )
    before = _state(conv)
    with pytest.raises(TypeError, match="would round"):
        conv.prefill(np.full((B, C, P), 1e39).tolist())
    _assert_same(_state(conv), before)
    want = _drive(ref, lambda x: _by_hand(backend, x, "float32"), u)
    got = _drive(conv, lambda x: x.tolist(), u)
    np.testing.assert_array_equal(got, want)


def _state(conv: OnlineConv) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    snapshot = conv.state_dict()
    buffer = conv.backend.to_numpy(snapshot["buffer"]).copy()
    return buffer, snapshot["position"], snapshot["prefilled"], snapshot["emitted"]


def _assert_same(a: tuple, b: tuple) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[3], b[3])


@pytest.mark.parametrize("form", REFUSED)
def test_inexact_inputs_are_refused_with_the_reason_and_state_unchanged(
    backend: Executor, rng, form: str
) -> None:
    make, reason = REFUSED[form]
    phi = decaying_filters(rng, C, P + L)
    u = _inputs(rng)
    ref, conv = (
        OnlineConv(phi, L, prompt=P, batch=B, backend=backend, dtype="float32") for _ in range(2)
    )
    hand = lambda x: _by_hand(backend, x, "float32")  # noqa: E731
    calls = [
        ("the prompt", lambda: conv.prefill(make(backend, u[..., :P]))),
        ("u_t", lambda: conv.step(make(backend, u[..., P]))),
        ("u_t", lambda: conv.emit(make(backend, u[:, :1, P]), slice(0, 1))),
        ("u", lambda: conv.run(make(backend, u[..., P:]))),
        ("u0", lambda: conv.rollout(make(backend, u[..., P]), backend.xp.tanh, 3)),
    ]
    for what, call in calls:
        if what != "the prompt" and not conv.state.prefilled.all():
            ys = [conv.prefill(hand(u[..., :P])), ref.prefill(hand(u[..., :P]))]
            np.testing.assert_array_equal(*(backend.to_numpy(y) for y in ys))
        before = _state(conv)
        with pytest.raises(TypeError, match=f"^{what} .*{reason}"):
            call()
        _assert_same(_state(conv), before)
    got, want = conv.step(hand(u[..., P])), ref.step(hand(u[..., P]))  # the next step: exact
    np.testing.assert_array_equal(backend.to_numpy(got), backend.to_numpy(want))


def test_a_batch_mismatch_names_the_batch_fixed_at_construction(backend: Executor, rng) -> None:
    phi = decaying_filters(rng, C, P + L)
    conv = OnlineConv(phi, L, prompt=P, batch=1, backend=backend, dtype="float64")
    fixed = r"the batch is fixed at construction \(batch=1\); build the OnlineConv with batch=2"
    with pytest.raises(
        ValueError, match=r"^the prompt must have shape \(1, 3, 4\), got \(2, 3, 4\)"
    ):
        conv.prefill(np.zeros((2, C, P)))
    conv.prefill(np.zeros((1, C, P)))
    for call in (
        lambda: conv.step(np.zeros((2, C))),
        lambda: conv.emit(np.zeros((2, 1)), slice(0, 1)),
        lambda: conv.run(np.zeros((2, C, 3))),
        lambda: conv.rollout(np.zeros((2, C)), backend.xp.tanh, 3),
    ):
        with pytest.raises(ValueError, match=fixed):
            call()
    with pytest.raises(ValueError, match=r"got \(1, 2\)$"):  # channels: no word on the batch
        conv.step(np.zeros((1, C - 1)))
    assert conv.position == 0


def test_a_feedback_may_return_numpy_arrays_converted_exactly(backend: Executor, rng) -> None:
    phi = decaying_filters(rng, C, 16)
    ex = backend
    u0 = np.ones((B, C))
    runs = [
        OnlineConv(phi, 16, batch=B, backend=backend, dtype="float64").rollout(u0, feedback, 6)
        for feedback in (
            lambda y: ex.xp.full((B, C), 0.5, dtype=y.dtype),
            lambda y: np.full((B, C), 0.5, dtype=np.float32),  # another library, float32
        )
    ]
    np.testing.assert_array_equal(*(ex.to_numpy(y) for y in runs))
    conv = OnlineConv(phi, 16, batch=B, backend=backend, dtype="float32")
    with pytest.raises(TypeError, match=r"^the feedback's value has dtype float64.*would round"):
        conv.rollout(u0, lambda y: np.full((B, C), 0.1), 3)
    assert conv.position == 0


def test_snapshots_are_loaded_as_saved(backend: Executor, rng) -> None:
    """The conversions stop at snapshots: their arrays are the stream's own, never converted."""
    phi = decaying_filters(rng, C, 8)
    conv, other = (OnlineConv(phi, 8, batch=B, backend=backend) for _ in range(2))
    conv.step(np.ones((B, C)))
    snapshot = conv.state_dict()
    snapshot["buffer"] = conv.backend.to_numpy(snapshot["buffer"]).tolist()
    with pytest.raises(TypeError, match="the buffer must be an array of the"):
        other.load_state_dict(snapshot)
    assert other.position == 0
