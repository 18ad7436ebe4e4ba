"""The functional JAX API: pure functions over a pytree state, under jit, scan and jvp.

Against the stateful path (``OnlineConv`` on the JAX backend) results must be identical bit for
bit in float64 (both run the same kernels); against the ``numpy.convolve`` oracle within 1e-12
of the largest output, as in ``test_online.py``. Sharding needs several devices: it is tested
in ``test_jax_devices.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from futurefill import OnlineConv, PlanSpec, make_plan

from .conftest import decaying_filters, oracle, selected_backends

if "jax" not in selected_backends():
    pytest.skip("jax is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
if not jax.config.read("jax_enable_x64"):
    pytest.skip("these float64 tests need JAX_ENABLE_X64=1", allow_module_level=True)

from futurefill_jax import functional as ff  # noqa: E402

SPECS = [
    PlanSpec("naive"),
    PlanSpec("epoched", epoch=5),
    PlanSpec("continuous", direct_below=1),
    PlanSpec("continuous", direct_below=16),
]
RTOL64 = 1e-12


def _stateful(phi: np.ndarray, u: np.ndarray, spec: PlanSpec, prompt: int) -> tuple:
    B, L = u.shape[0], u.shape[-1] - prompt
    conv = OnlineConv(phi, L, schedule=spec, prompt=prompt, batch=B, backend="jax", dtype="float64")
    parts = []
    if prompt:
        parts.append(np.asarray(conv.prefill(jnp.asarray(u[..., :prompt]))))
    for t in range(L):
        parts.append(np.asarray(conv.step(jnp.asarray(u[..., prompt + t])))[..., None])
    return np.concatenate(parts, -1), np.asarray(conv._state.buffer)


@pytest.mark.parametrize("prompt", [0, 6])
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_jit_and_scan_equal_the_stateful_path_bit_for_bit(rng, spec, prompt) -> None:
    B, C, L = 2, 3, 37
    phi = decaying_filters(rng, C, prompt + L)
    u = rng.standard_normal((B, C, prompt + L))
    want, want_buffer = _stateful(phi, u, spec, prompt)
    plan = make_plan(L, spec, prompt=prompt)
    state = ff.init(plan, phi, batch=B, dtype=jnp.float64)
    parts = []
    if prompt:
        state, y = jax.jit(ff.prefill)(state, jnp.asarray(u[..., :prompt]))
        parts.append(np.asarray(y))
    after_prompt = state
    jstep = jax.jit(ff.step)
    for t in range(L):  # one jitted call per step
        state, y = jstep(state, jnp.asarray(u[..., prompt + t]))
        parts.append(np.asarray(y)[..., None])
    np.testing.assert_array_equal(np.concatenate(parts, -1), want)
    np.testing.assert_array_equal(np.asarray(state.buffer), want_buffer)

    @jax.jit
    def scanned(state, us):  # the whole generation as one lax.scan
        return jax.lax.scan(ff.step, state, us)

    final, ys = scanned(after_prompt, jnp.moveaxis(jnp.asarray(u[..., prompt:]), -1, 0))
    np.testing.assert_array_equal(np.moveaxis(np.asarray(ys), 0, -1), want[..., prompt:])
    np.testing.assert_array_equal(np.asarray(final.buffer), want_buffer)
    assert int(final.step) == L
    rel = np.abs(want - oracle(u, phi)).max() / np.abs(want).max()
    assert rel <= RTOL64


def test_emit_per_channel_range_then_advance(rng) -> None:
    B, C, L = 1, 5, 30
    phi = decaying_filters(rng, C, L)
    u = rng.standard_normal((B, C, L))
    state = ff.init(make_plan(L, "continuous", direct_below=4), phi, dtype=jnp.float64)

    @jax.jit
    def position(state, ut):
        state, lo = ff.emit(state, ut[:, :2], slice(0, 2))
        state, hi = ff.emit(state, ut[:, 2:], slice(2, 5))
        return ff.advance(state), jnp.concatenate([lo, hi], axis=1)

    ys = []
    for t in range(L):
        state, y = position(state, jnp.asarray(u[..., t]))
        ys.append(np.asarray(y))
    got = np.stack(ys, -1)
    want = oracle(u, phi)
    assert np.abs(got - want).max() <= RTOL64 * np.abs(want).max()


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_rollout_with_feedback_matches_the_oracle(rng, spec) -> None:
    B, C, L = 1, 2, 40
    phi = decaying_filters(rng, C, L) * 0.5
    u0 = rng.standard_normal((B, C))
    state = ff.init(make_plan(L, spec), phi, batch=B, dtype=jnp.float64)
    rollout = jax.jit(ff.rollout, static_argnums=(2, 3))
    state, ys = rollout(state, jnp.asarray(u0), jnp.tanh, L)
    got = np.asarray(ys)
    inputs = np.concatenate([u0[..., None], np.tanh(got[..., :-1])], -1)
    want = oracle(inputs, phi)
    assert np.abs(got - want).max() <= RTOL64 * np.abs(want).max()
    assert int(state.step) == L


def test_the_state_is_a_pytree_with_a_static_plan(rng) -> None:
    plan = make_plan(16, "continuous")
    state = ff.init(plan, decaying_filters(rng, 2, 16), dtype=jnp.float32)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    again = jax.tree_util.tree_unflatten(treedef, leaves)
    assert again.plan is plan and again.layout is state.layout
    assert state.buffer.dtype == jnp.float32
    with pytest.raises(ValueError, match="N >= 16"):
        ff.init(plan, np.ones((2, 8)))
    with pytest.raises(TypeError, match="float32 or float64"):
        ff.init(plan, np.ones((2, 16)), dtype=jnp.float16)


def test_forward_mode_differentiates_and_reverse_mode_is_refused(rng) -> None:
    """The outputs are linear in the inputs, so their tangent along ``du`` is the convolution
    of ``du`` (the oracle, within 1e-12 of the largest); ``jax.grad`` through the tasks
    raises the library's message, not JAX's about ``while_loop``."""
    B, C, L = 1, 2, 40
    phi = decaying_filters(rng, C, L)
    plan = make_plan(L, PlanSpec("continuous", direct_below=4))
    assert plan.num_tasks
    state = ff.init(plan, phi, batch=B, dtype=jnp.float64)
    u, du = rng.standard_normal((2, B, C, L))

    def outputs(us: jax.Array) -> jax.Array:  # (L, B, C) -> (L, B, C)
        return jax.lax.scan(ff.step, state, us)[1]

    time_first = (jnp.moveaxis(jnp.asarray(u), -1, 0), jnp.moveaxis(jnp.asarray(du), -1, 0))
    _, tangent = jax.jvp(outputs, time_first[:1], time_first[1:])
    want = oracle(du, phi)
    got = np.moveaxis(np.asarray(tangent), 0, -1)
    assert np.abs(got - want).max() <= RTOL64 * np.abs(want).max()
    with pytest.raises(NotImplementedError, match=r"reverse mode \(jax.grad.* not supported"):
        jax.grad(lambda us: outputs(us).sum())(time_first[0])


@pytest.mark.parametrize("per_octave", [1, 2, 4])
@pytest.mark.parametrize(("schedule", "prompt"), [("naive", 0), ("naive", 9), ("epoched", 4)])
def test_window_phases_cover_every_window(schedule: str, prompt: int, per_octave: int) -> None:
    """Phases tile the steps in order, and each one's static window is the least size of the
    ladder (powers of two, and ``per_octave - 1`` evenly spaced sizes between two powers
    when they are integers) that is at least the longest window so far."""
    plan = make_plan(300, schedule, prompt=prompt)
    phases = ff.window_phases(plan, per_octave)
    ladder = {1 << k for k in range(12)}
    for k in range(12):
        rung = (1 << k) // per_octave
        if rung:
            ladder |= {(1 << k) + j * rung for j in range(per_octave)}
    widths = plan.slot.astype(np.int64) - plan.window_slot
    longest = np.maximum.accumulate(widths)
    assert [p[0] for p in phases[1:]] == [p[1] for p in phases[:-1]]
    assert phases[0][0] == 0 and phases[-1][1] == plan.length
    for first, stop, M in phases:
        for t in range(first, stop):
            want = min(v for v in ladder if v >= longest[t]) if longest[t] > 0 else 0
            assert want == M
