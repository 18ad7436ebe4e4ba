"""OnlineConv on every backend: exactness against numpy.convolve, feedback, errors, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

import futurefill
from futurefill import OnlineConv
from futurefill.executor import Executor
from futurefill.plan import SCHEDULES

from .conftest import decaying_filters, oracle, run_online

LENGTHS = [1, 2, 3, 5, 16, 17, 100, 1000, 4097]
# float64 results are sums of O(log L) FFT convolutions with relative error ~1e-16 each;
# 1e-12 leaves three orders of magnitude for accumulation over lengths up to 4097.
RTOL64 = 1e-12


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("prompt", [0, 7])
def test_exact_against_numpy_convolve(backend: Executor, rng, schedule, length, prompt) -> None:
    B, C = 2, 3
    phi = decaying_filters(rng, C, prompt + length + 3)
    u = rng.standard_normal((B, C, prompt + length))
    conv = OnlineConv(
        phi, length, schedule=schedule, prompt=prompt, batch=B, backend=backend, dtype="float64"
    )
    assert _relative_error(run_online(conv, u), oracle(u, phi)) <= RTOL64


@pytest.mark.parametrize("direct_below", [1, 4, 64])
def test_continuous_crossovers_are_exact(backend: Executor, rng, direct_below: int) -> None:
    B, C, P, L = 1, 16, 5, 300
    phi = decaying_filters(rng, C, P + L, scale=400.0)
    u = rng.standard_normal((B, C, P + L))
    conv = OnlineConv(
        phi, L, prompt=P, batch=B, backend=backend, dtype="float64", direct_below=direct_below
    )
    assert _relative_error(run_online(conv, u), oracle(u, phi)) <= RTOL64


@pytest.mark.parametrize("epoch", [1, 3])
def test_short_epochs_are_exact(backend: Executor, rng, epoch: int) -> None:
    B, C, P, L = 2, 3, 4, 41
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((B, C, P + L))
    conv = OnlineConv(
        phi, L, schedule="epoched", epoch=epoch, prompt=P, batch=B, backend=backend,
        dtype="float64",
    )  # fmt: skip
    assert _relative_error(run_online(conv, u), oracle(u, phi)) <= RTOL64


@pytest.mark.slow  # 65536 steps per backend: nox -s tests_deep
def test_float32_long_generation_within_derived_bound(backend: Executor, rng) -> None:
    """float32, L = 65536, continuous.

    Bound: an FFT convolution of size n in float32 has error per output at most about
    c * eps * log2(n) * ||x||_2 * ||g||_2 (eps = 2**-24, c a small constant; Higham, Accuracy
    and Stability, ch. 24), and every output collects at most log2(L) + 1 such contributions.
    With c = 3 this gives |err_j| <= 3 * eps * log2(L)**2 * ||u||_2 * ||phi||_2 for every j.
    """
    if backend.name == "array_api_strict":
        pytest.skip("65536 interpreted steps: covered by the fast backends")
    L = 65536
    C = 1  # the O(L^2) oracle dominates the test's time
    phi = decaying_filters(rng, C, L, scale=2000.0)
    u = rng.standard_normal((1, C, L))
    conv = OnlineConv(phi.astype(np.float32), L, backend=backend, dtype="float32")
    got = run_online(conv, u.astype(np.float32))
    want = oracle(u.astype(np.float32).astype(np.float64), phi.astype(np.float32))
    bound = 3 * 2.0**-24 * math.log2(L) ** 2
    for c in range(C):
        scale = np.linalg.norm(u[0, c]) * np.linalg.norm(phi[c])
        assert np.abs(got[0, c] - want[0, c]).max() <= bound * scale


@pytest.mark.parametrize("prompt", [0, 9])
def test_feedback_trajectories_agree_across_schedules(backend: Executor, rng, prompt) -> None:
    """u[t+1] = f(y[t]): an error at any step would change every later step."""
    B, C, L = 2, 4, 300
    phi = decaying_filters(rng, C, prompt + L, scale=100.0) * 0.3
    u0 = rng.standard_normal((B, C))
    prompt_u = rng.standard_normal((B, C, prompt))
    trajectories = {}
    for schedule in SCHEDULES:
        conv = OnlineConv(
            phi, L, schedule=schedule, prompt=prompt, batch=B, backend=backend, dtype="float64"
        )
        if prompt:
            conv.prefill(backend.asarray(prompt_u, dtype=conv.dtype))
        u = backend.asarray(u0, dtype=conv.dtype)
        ys = []
        for _ in range(L):
            y = conv.step(u)
            y_host = backend.to_numpy(y)
            ys.append(y_host)
            u = backend.asarray(np.tanh(y_host) + 0.1, dtype=conv.dtype)
        trajectories[schedule] = np.stack(ys, axis=-1)
    # Independent check of the naive trajectory with float64 direct sums.
    inputs = np.concatenate(
        [prompt_u, u0[..., None], np.tanh(trajectories["naive"][..., :-1]) + 0.1], axis=-1
    )
    np.testing.assert_allclose(
        trajectories["naive"], oracle(inputs, phi)[..., prompt:], rtol=0, atol=1e-11
    )
    for schedule in ("epoched", "continuous"):
        np.testing.assert_allclose(
            trajectories[schedule], trajectories["naive"], rtol=0, atol=1e-11
        )


def test_rollout_equals_stepping(backend: Executor, rng) -> None:
    C, L = 3, 200
    phi = decaying_filters(rng, C, L) * 0.5
    u0 = backend.asarray(rng.standard_normal((1, C)), dtype="float64")
    xp = backend.xp
    stepped = OnlineConv(phi, L, backend=backend, dtype="float64")
    rolled = OnlineConv(phi, L, backend=backend, dtype="float64")
    stepped.step(u0)
    first = rolled.step(u0)
    u = xp.tanh(first)
    want = []
    for _ in range(L - 1):
        y = stepped.step(u if want else xp.tanh(first))
        want.append(backend.to_numpy(y))
        u = xp.tanh(y)
    got = rolled.rollout(xp.tanh(first), xp.tanh)
    np.testing.assert_allclose(backend.to_numpy(got), np.stack(want, axis=-1), rtol=0, atol=1e-12)
    assert rolled.remaining == 0


def test_emit_advance_split_equals_step(backend: Executor, rng) -> None:
    """Two 'layers' share one state: each emits its channels, one advance fills both futures."""
    B, C, L = 2, 6, 64
    phi = decaying_filters(rng, C, L)
    u = rng.standard_normal((B, C, L))
    whole = OnlineConv(phi, L, batch=B, backend=backend, dtype="float64")
    split = OnlineConv(phi, L, batch=B, backend=backend, dtype="float64")
    for t in range(L):
        y = backend.to_numpy(whole.step(backend.asarray(u[..., t].copy(), dtype="float64")))
        y_hi = split.emit(backend.asarray(u[:, 2:, t].copy(), dtype="float64"), slice(2, None))
        y_lo = split.emit(backend.asarray(u[:, :2, t].copy(), dtype="float64"), slice(0, 2))
        split.advance()
        np.testing.assert_array_equal(
            np.concatenate([backend.to_numpy(y_lo), backend.to_numpy(y_hi)], axis=1), y
        )


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_state_dict_resume_is_bit_identical(backend: Executor, rng, schedule: str) -> None:
    B, C, P, L = 2, 3, 4, 150
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((B, C, P + L))
    conv = OnlineConv(
        phi, L, schedule=schedule, prompt=P, batch=B, backend=backend, dtype="float64"
    )
    conv.prefill(backend.asarray(u[..., :P], dtype="float64"))
    feed = [backend.asarray(u[..., P + t].copy(), dtype="float64") for t in range(L)]
    for t in range(70):
        conv.step(feed[t])
    snapshot = conv.state_dict()
    first = [backend.to_numpy(conv.step(feed[t])) for t in range(70, L)]
    fresh = OnlineConv(
        phi, L, schedule=schedule, prompt=P, batch=B, backend=backend, dtype="float64"
    )
    fresh.load_state_dict(snapshot)
    second = [backend.to_numpy(fresh.step(feed[t])) for t in range(70, L)]
    np.testing.assert_array_equal(np.stack(first), np.stack(second))
    conv.load_state_dict(snapshot)  # the snapshot is a copy: rewinding works too
    assert conv.position == 70
    np.testing.assert_array_equal(backend.to_numpy(conv.step(feed[70])), first[0])


def test_reset_starts_over(backend: Executor, rng) -> None:
    C, P, L = 2, 3, 20
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((1, C, P + L))
    conv = OnlineConv(phi, L, prompt=P, backend=backend, dtype="float64")
    first = run_online(conv, u)
    conv.reset()
    assert conv.position == 0
    np.testing.assert_array_equal(run_online(conv, u), first)


def test_reset_twice_refills_what_a_step_reads(backend: Executor, rng) -> None:
    """Every reset invalidates what an executor derived from the old buffer (the NumPy
    executor's copy of a window block's accumulators): twice reset inside the first block,
    with a new prompt each time, then a whole exact run."""
    C, P, L = 2, 5, 24
    phi = decaying_filters(rng, C, P + L)
    conv = OnlineConv(phi, L, prompt=P, backend=backend, dtype="float64", direct_below=8)
    for _ in range(2):
        u = rng.standard_normal((1, C, P + L))
        conv.prefill(backend.asarray(u[..., :P], "float64"))
        y = conv.step(backend.asarray(np.ascontiguousarray(u[..., P]), "float64"))
        np.testing.assert_allclose(backend.to_numpy(y), oracle(u, phi)[..., P], atol=1e-12)
        conv.reset()
    u = rng.standard_normal((1, C, P + L))
    assert _relative_error(run_online(conv, u), oracle(u, phi)) <= RTOL64


def test_from_plan_runs_that_plan(backend: Executor, rng) -> None:
    plan = futurefill.make_plan(12, "epoched", prompt=2, epoch=3)
    phi = decaying_filters(rng, 2, 14)
    with futurefill.use_backend("array_api_strict" if backend.name == "numpy" else "numpy"):
        conv = OnlineConv.from_plan(phi, plan, backend=backend)
    assert conv.plan is plan and conv.backend is backend
    # float64 filters: float64, except where the backend defaults to float32 (a GPU)
    assert conv.batch == 1
    assert conv.dtype == backend.resolve_dtype(backend.default_dtype(np.dtype(np.float64)))
    conv = OnlineConv.from_plan(phi, plan, batch=3, dtype="float32", backend=backend)
    assert conv.batch == 3 and conv.dtype == backend.resolve_dtype("float32")
    # the device reaches the backend (which refuses it; the CuPy stand-in is not importable)
    with pytest.raises((ValueError, TypeError, RuntimeError, ImportError)):
        OnlineConv.from_plan(phi, plan, backend=backend.name, device="no-such-device")


def test_state_size_counts_every_component(backend: Executor) -> None:
    B, C, P, L = 2, 3, 6, 64
    phi = np.ones((C, P + L))
    conv = OnlineConv(phi, L, prompt=P, batch=B, backend=backend, dtype="float64", direct_below=4)
    plan = conv.plan
    assert plan.num_tasks > 0
    sizes = dict(conv.state_size)
    sizes.pop("cuda_graphs_bytes", None)  # the executor's own (torch with CUDA graphs)
    assert sizes == {
        "buffer": B * C * plan.buffer_length,
        "spectra": C * sum(n // 2 + 1 for _, _, n in plan.spectrum_keys),
        "window_taps": C * plan.window_length,
    }


# ---------------------------------------------------------------------- rejected input
def _state_snapshot(conv: OnlineConv) -> tuple:
    state = conv.state_dict()
    return (
        conv.backend.to_numpy(state["buffer"]).copy(),
        state["position"],
        state["prefilled"].copy(),
        state["emitted"].copy(),
    )


def _assert_unchanged(conv: OnlineConv, before: tuple) -> None:
    after = _state_snapshot(conv)
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1] == before[1]
    np.testing.assert_array_equal(after[2], before[2])
    np.testing.assert_array_equal(after[3], before[3])


def test_rejected_calls_leave_state_unchanged_and_usable(backend: Executor, rng) -> None:
    B, C, P, L = 2, 3, 4, 12
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((B, C, P + L))
    conv = OnlineConv(phi, L, prompt=P, batch=B, backend=backend, dtype="float64")
    as_b = lambda x: backend.asarray(np.ascontiguousarray(x), dtype="float64")  # noqa: E731

    before = _state_snapshot(conv)
    with pytest.raises(RuntimeError, match="prefill"):
        conv.step(as_b(u[..., P]))
    bad_prompt = u[..., :P].copy()
    bad_prompt[0, 0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        conv.prefill(as_b(bad_prompt))
    with pytest.raises(ValueError, match="shape"):
        conv.prefill(as_b(u[..., : P - 1]))
    _assert_unchanged(conv, before)
    conv.prefill(as_b(u[..., :P]))
    ys = [conv.step(as_b(u[..., P]))]

    before = _state_snapshot(conv)
    with pytest.raises(RuntimeError, match="already"):
        conv.prefill(as_b(u[..., :P]))
    with pytest.raises(ValueError, match="shape"):
        conv.step(as_b(u[:, :2, P + 1]))
    with pytest.raises(TypeError, match="real numbers"):
        conv.step(backend.asarray(u[..., P + 1] + 0j))
    with pytest.raises(TypeError, match="array of numbers"):
        conv.step([[0.0] * C, [0.0]])
    with pytest.raises(TypeError, match="slice"):
        conv.emit(as_b(u[:, :1, P + 1]), channels=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="contiguous"):
        conv.emit(as_b(u[:, :2, P + 1]), channels=slice(0, 3, 2))
    with pytest.raises(RuntimeError, match="not emitted"):
        conv.advance()
    with pytest.raises(ValueError, match="steps"):
        conv.rollout(as_b(u[..., P + 1]), lambda y: y, steps=L + 5)
    with pytest.raises(ValueError, match="feedback"):
        conv.rollout(as_b(u[..., P + 1]), lambda y: y[:, :1], steps=3)
    _assert_unchanged(conv, before)

    conv.emit(as_b(u[:, :1, P + 1]), channels=slice(0, 1))
    before = _state_snapshot(conv)
    with pytest.raises(RuntimeError, match="already emitted"):
        conv.emit(as_b(u[:, :1, P + 1]), channels=slice(0, 1))
    with pytest.raises(RuntimeError, match="emitted at this step"):
        conv.step(as_b(u[..., P + 1]))
    _assert_unchanged(conv, before)
    rest = conv.emit(as_b(u[:, 1:, P + 1]), channels=slice(1, None))
    conv.advance()
    assert rest.shape == (B, C - 1)
    for t in range(2, L):
        ys.append(conv.step(as_b(u[..., P + t])))
    with pytest.raises(RuntimeError, match="planned steps are done"):
        conv.step(as_b(u[..., P]))
    # The calls that succeeded, interleaved with all the rejected ones, are still exact.
    want = oracle(u, phi)[..., P:]
    got0 = backend.to_numpy(ys[0])
    np.testing.assert_allclose(got0, want[..., 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(ys[-1]), want[..., -1], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("filters", "kwargs", "error", "match"),
    [
        (np.ones((2, 10, 1)), {}, ValueError, "shape"),
        (np.ones((2, 5)), {}, ValueError, "taps"),
        (np.array([[1.0, np.nan] * 5]), {}, ValueError, "NaN"),
        (np.ones((2, 10)), {"dtype": "int8"}, TypeError, "float32"),
        (np.ones((2, 10)), {"dtype": "float8_e4m3fn"}, TypeError, "float32"),
        (np.ones((2, 10), dtype=complex), {}, TypeError, "real"),
        (np.ones((2, 10)), {"batch": 0}, ValueError, "batch"),
        (np.ones((2, 10)), {"schedule": "fast"}, ValueError, "schedule"),
        ([[1.0] * 10], {}, TypeError, "NumPy array"),
    ],
)
def test_construction_errors(backend: Executor, filters, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        OnlineConv(filters, 8, backend=backend, **kwargs)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_prefill_by_channel_ranges_equals_one_prefill(backend: Executor, rng, schedule) -> None:
    """Layers sharing a state prefill their own channels; the result is the same."""
    B, C, P, L = 2, 5, 9, 40
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((B, C, P + L))
    as_b = lambda x: backend.asarray(np.ascontiguousarray(x), dtype="float64")  # noqa: E731
    conv = OnlineConv(
        phi, L, schedule=schedule, prompt=P, batch=B, backend=backend, dtype="float64"
    )
    y_hi = conv.prefill(as_b(u[:, 2:, :P]), channels=slice(2, None))
    with pytest.raises(RuntimeError, match="every channel"):
        conv.step(as_b(u[..., P]))
    with pytest.raises(RuntimeError, match="already given"):
        conv.prefill(as_b(u[:, 1:3, :P]), channels=slice(1, 3))
    y_lo = conv.prefill(as_b(u[:, :2, :P]), channels=slice(0, 2))
    steps = [backend.to_numpy(conv.step(as_b(u[..., P + t])))[..., None] for t in range(L)]
    got = np.concatenate(
        [np.concatenate([backend.to_numpy(y_lo), backend.to_numpy(y_hi)], axis=1), *steps], -1
    )
    assert _relative_error(got, oracle(u, phi)) <= RTOL64


def test_prefill_without_prompt_is_refused(backend: Executor) -> None:
    conv = OnlineConv(np.ones((1, 4)), 4, backend=backend, dtype="float64")
    with pytest.raises(RuntimeError, match="without a prompt"):
        conv.prefill(backend.asarray(np.ones((1, 1, 2))))


def test_load_state_dict_checks_the_plan(backend: Executor) -> None:
    a = OnlineConv(np.ones((1, 16)), 8, backend=backend, dtype="float64")
    b = OnlineConv(np.ones((1, 16)), 9, backend=backend, dtype="float64")
    with pytest.raises(ValueError, match="plan"):
        b.load_state_dict(a.state_dict())


def test_filters_of_the_backend_are_accepted(backend: Executor, rng) -> None:
    phi = decaying_filters(rng, 2, 32)
    u = rng.standard_normal((1, 2, 32))
    conv = OnlineConv(backend.asarray(phi, dtype="float64"), 32, backend=backend)
    assert _relative_error(run_online(conv, u), oracle(u, phi)) <= RTOL64


def test_default_dtype_follows_filters(backend: Executor) -> None:
    conv = OnlineConv(np.ones((1, 8), dtype=np.float32), 8, backend=backend)
    assert conv.dtype == backend.resolve_dtype("float32")
    assert "OnlineConv(" in repr(conv) and backend.name in repr(conv)


def test_state_size_is_the_plan_buffer(backend: Executor) -> None:
    conv = OnlineConv(np.ones((3, 70)), 64, prompt=6, batch=2, backend=backend, dtype="float64")
    assert conv.state_size["buffer"] == 2 * 3 * 64
    assert futurefill.make_plan(64, conv.plan.spec, prompt=6) == conv.plan


# ---------------------------------------------------------------------- hardening
@pytest.mark.parametrize("filter_dtype", [np.float32, np.float64])
def test_filters_are_copied_at_construction(backend: Executor, rng, filter_dtype) -> None:
    """Editing the caller's filter array afterwards changes nothing (issue: NumPy kept a
    reference, so the spectra and the window taps disagreed)."""
    L = 40
    phi = decaying_filters(rng, 2, L).astype(filter_dtype)
    u = rng.standard_normal((1, 2, L))
    want = oracle(u, phi)
    conv = OnlineConv(phi, L, backend=backend, dtype="float64")
    phi *= -3.0  # in place, after the construction
    assert _relative_error(run_online(conv, u), want) <= RTOL64


@pytest.mark.parametrize("direct_below", [1, pytest.param(2, marks=pytest.mark.slow_on("jax")), 16])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_rollouts_split_anywhere_are_exact(
    backend: Executor, rng, schedule: str, direct_below: int
) -> None:
    """Rollouts that start and stop inside window blocks, after steps, with feedback."""
    B, C, L = 1, 2, 70
    params = {"direct_below": direct_below} if schedule == "continuous" else {}
    if schedule == "epoched":
        params = {"epoch": 3 + direct_below}
    phi = decaying_filters(rng, C, L) * 0.5
    conv = OnlineConv(phi, L, schedule=schedule, batch=B, backend=backend, dtype="float64",
                      **params)  # fmt: skip
    xp = backend.xp
    u0 = rng.standard_normal((B, C))
    y = conv.step(backend.asarray(u0, dtype="float64"))
    parts = [backend.to_numpy(y)[..., None]]
    y = conv.step(xp.tanh(y))
    parts.append(backend.to_numpy(y)[..., None])
    for steps in (1, 3, 5, 17, None):
        ys = conv.rollout(xp.tanh(y), xp.tanh, steps)
        parts.append(backend.to_numpy(ys))
        y = ys[..., -1]
    got = np.concatenate(parts, -1)
    inputs = np.concatenate([u0[..., None], np.tanh(got[..., :-1])], -1)
    assert _relative_error(got, oracle(inputs, phi)) <= RTOL64


def test_steps_may_be_a_numpy_integer(backend: Executor) -> None:
    conv = OnlineConv(np.ones((1, 8)), 8, backend=backend, dtype="float64")
    ys = conv.rollout(backend.asarray(np.ones((1, 1)), "float64"), lambda y: y * 0, np.int64(2))
    assert tuple(ys.shape) == (1, 1, 2) and conv.position == 2
    for bad in (2.0, "2", True, 0, 9):
        with pytest.raises((TypeError, ValueError), match="steps"):
            conv.rollout(backend.asarray(np.ones((1, 1)), "float64"), lambda y: y, bad)
    assert conv.position == 2


@pytest.mark.parametrize(
    ("filters", "kwargs", "error", "match"),
    [
        (np.ma.masked_invalid([[1.0, np.nan] * 5]), {}, TypeError, "masked"),
        (np.ones((2, 10)), {"dtype": "notfloat32"}, TypeError, "float32 or float64"),
        (np.ones((2, 10)), {"dtype": "float32x"}, TypeError, "float32 or float64"),
        (np.ones((2, 10)), {"batch": 2.0}, TypeError, "batch"),
        (np.ones((2, 10)), {"prompt": "1"}, TypeError, "prompt"),
        (np.ones((2, 10)), {"schedule": "naive", "epoch": 3}, ValueError, "takes no param"),
    ],
)
def test_more_construction_errors(backend: Executor, filters, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        OnlineConv(filters, 8, backend=backend, **kwargs)


def test_big_endian_filters_are_accepted(backend: Executor, rng) -> None:
    phi = decaying_filters(rng, 2, 16)
    u = rng.standard_normal((1, 2, 16))
    conv = OnlineConv(phi.astype(">f8"), 16, backend=backend)
    assert conv.dtype == backend.resolve_dtype("float64")
    assert _relative_error(run_online(conv, u), oracle(u, phi)) <= RTOL64


def test_too_few_taps_is_refused_before_any_plan_is_built(backend: Executor) -> None:
    """A huge length with 8 taps used to build a ~47 GB plan first (and cache it)."""
    before = futurefill.plan.registry._build.cache_info().currsize
    with pytest.raises(ValueError, match="taps"):
        OnlineConv(np.ones((1, 8)), 2**30, backend=backend)
    assert futurefill.plan.registry._build.cache_info().currsize == before


# ---------------------------------------------------------------------- snapshots
def _stepped(backend: Executor, phi: np.ndarray, steps: int, **kwargs) -> OnlineConv:
    conv = OnlineConv(phi, 16, backend=backend, dtype="float64", **kwargs)
    for t in range(steps):
        conv.step(backend.asarray(np.full((1, phi.shape[0]), t + 1.0), "float64"))
    return conv


def test_snapshot_of_other_filters_is_refused(backend: Executor, rng) -> None:
    a = _stepped(backend, decaying_filters(rng, 2, 16), 5)
    b = _stepped(backend, decaying_filters(rng, 2, 16), 3)
    before = _state_snapshot(b)
    with pytest.raises(ValueError, match="other filters"):
        b.load_state_dict(a.state_dict())
    _assert_unchanged(b, before)


@pytest.mark.parametrize(
    ("field", "value", "error", "match"),
    [
        ("position", 3.7, TypeError, "position"),
        ("position", "5", TypeError, "position"),
        ("position", True, TypeError, "position"),
        ("position", 17, ValueError, "position"),
        ("position", 4, ValueError, "edited"),
        ("emitted", np.ones(2, bool), ValueError, "edited"),
        ("emitted", np.ones(2, int), ValueError, "emitted"),
        ("prefilled", np.zeros(3, bool), ValueError, "prefilled"),
        ("digest", "0" * 64, ValueError, "edited"),
    ],
)
def test_edited_snapshots_are_refused(backend: Executor, rng, field, value, error, match) -> None:
    phi = decaying_filters(rng, 2, 16)
    conv = _stepped(backend, phi, 5)
    snapshot = conv.state_dict()
    snapshot[field] = value
    other = _stepped(backend, phi, 2)
    before = _state_snapshot(other)
    with pytest.raises(error, match=match):
        other.load_state_dict(snapshot)
    _assert_unchanged(other, before)


def test_snapshot_has_exactly_its_entries(backend: Executor, rng) -> None:
    phi = decaying_filters(rng, 2, 16)
    snapshot = _stepped(backend, phi, 5).state_dict()
    other = _stepped(backend, phi, 2)
    before = _state_snapshot(other)
    with pytest.raises(KeyError, match=r"lacks \['digest'\]"):
        other.load_state_dict({k: v for k, v in snapshot.items() if k != "digest"})
    with pytest.raises(ValueError, match=r"unknown entries \['note'\]"):
        other.load_state_dict({**snapshot, "note": "hello"})
    _assert_unchanged(other, before)


def test_rollout_waits_for_advance(backend: Executor, rng) -> None:
    """A rollout runs whole steps: not while some channels were emitted at this step."""
    conv = _stepped(backend, decaying_filters(rng, 2, 16), 3)
    conv.emit(backend.asarray(np.ones((1, 1)), "float64"), slice(0, 1))
    before = _state_snapshot(conv)
    with pytest.raises(RuntimeError, match="finish with advance"):
        conv.rollout(backend.asarray(np.ones((1, 2)), "float64"), lambda y: y, 2)
    _assert_unchanged(conv, before)


def test_snapshot_without_prompt_flags_is_refused(backend: Executor, rng) -> None:
    """prefilled=False at a position > 0 would let prefill overwrite the buffer."""
    phi = decaying_filters(rng, 2, 20)
    conv = OnlineConv(phi, 16, prompt=4, backend=backend, dtype="float64")
    conv.prefill(backend.asarray(np.ones((1, 2, 4)), "float64"))
    conv.step(backend.asarray(np.ones((1, 2)), "float64"))
    snapshot = conv.state_dict()
    snapshot["prefilled"] = np.zeros(2, bool)
    with pytest.raises(ValueError, match="edited"):
        conv.load_state_dict(snapshot)
    with pytest.raises(RuntimeError, match="already"):
        conv.prefill(backend.asarray(np.ones((1, 2, 4)), "float64"))
