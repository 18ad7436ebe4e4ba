"""JAX executor: exactness of the jitted steps and of the compiled whole-generation rollout."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import futurefill

from .conftest import decaying_filters, oracle, run_online

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

pytestmark = pytest.mark.skipif(
    "jax" not in futurefill.list_backends(), reason="the jax backend is not installed"
)

SCHEDULES = ("naive", "epoched", "continuous")
LENGTHS = (1, 2, 3, 5, 16, 17, 100, 1000)
# float64 FFT convolutions of length <= 2048: rounding errors ~1e-15 relative per level,
# a dozen levels at most; 1e-12 leaves a wide margin yet catches any missing/double term.
RTOL64 = 1e-12
#: Cases left to the deep suite (``nox -s tests_deep``): each code path keeps a quick case.
SLOW = pytest.mark.slow


@pytest.fixture(autouse=True)
def _x64() -> None:
    if not jax.config.jax_enable_x64:
        pytest.skip("these tests compare float64 results: set JAX_ENABLE_X64=1")


def feedback(y):
    return 0.9 * jnp.tanh(y) + 0.1


def contractive_filters(rng: np.random.Generator, channels: int, taps: int) -> np.ndarray:
    """Filters with sum |phi| = 0.5: with a 0.9-Lipschitz feedback rounding differences between
    two exact computations shrink along the trajectory instead of growing."""
    phi = decaying_filters(rng, channels, taps)
    return 0.5 * phi / np.abs(phi).sum(axis=1, keepdims=True)


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300))


def make_conv(phi, length, schedule, prompt, batch=2, prompt_u=None, **kwargs):
    conv = futurefill.OnlineConv(
        phi, length, schedule=schedule, prompt=prompt, batch=batch, backend="jax", **kwargs
    )
    if prompt:
        conv.prefill(jnp.asarray(prompt_u))
    return conv


def split_rollouts(conv, u0: np.ndarray, splits) -> np.ndarray:
    """Rollouts of ``splits`` steps each (``None``: to the end), each fed back from the
    last; their outputs joined ``(B, C, steps)``."""
    parts, u = [], jnp.asarray(u0)
    for steps in splits:
        ys = conv.rollout(u, feedback, steps)
        parts.append(np.asarray(ys))
        u = feedback(ys[..., -1])
    return np.concatenate(parts, axis=-1)


def inputs_of(u0: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The inputs a rollout used: ``u[0] = u0``, ``u[t+1] = feedback(y[t])``."""
    u = np.empty_like(ys)
    u[..., 0] = u0
    u[..., 1:] = np.asarray(feedback(jnp.asarray(ys[..., :-1])))
    return u


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("prompt", [0, 7])
def test_steps_match_oracle(rng, schedule, length, prompt):
    phi = decaying_filters(rng, 3, prompt + length)
    u = rng.standard_normal((2, 3, prompt + length))
    conv = futurefill.OnlineConv(
        phi, length, schedule=schedule, prompt=prompt, batch=2, backend="jax"
    )
    assert rel_err(run_online(conv, u), oracle(u, phi)) <= RTOL64
    assert isinstance(conv._state.buffer, jax.Array)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("prompt", [0, pytest.param(7, marks=SLOW)])  # prompts: step loop below
def test_rollout_matches_oracle(rng, schedule, length, prompt):
    phi = decaying_filters(rng, 3, prompt + length)
    up = rng.standard_normal((2, 3, prompt))
    u0 = rng.standard_normal((2, 3))
    conv = make_conv(phi, length, schedule, prompt, prompt_u=up)
    ys = np.asarray(conv.rollout(jnp.asarray(u0), feedback))
    assert ys.shape == (2, 3, length)
    assert conv.position == length
    u = np.concatenate([up, inputs_of(u0, ys)], axis=-1)
    assert rel_err(ys, oracle(u, phi)[..., prompt:]) <= RTOL64


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize(
    ("length", "cuts"),
    [(5, (2,)), (100, (1, 17, 64)), pytest.param(1000, (15, 16, 513), marks=SLOW)],
)
@pytest.mark.parametrize("prompt", [0, 3])
def test_rollout_equals_step_loop(rng, schedule, length, cuts, prompt):
    """Rollouts started mid-generation leave the same trajectory, position and buffer as a loop
    of steps (and of emit/advance) with the same feedback."""
    phi = contractive_filters(rng, 2, prompt + length)
    up = rng.standard_normal((1, 2, prompt))
    u0 = jnp.asarray(rng.standard_normal((1, 2)))
    looped = make_conv(phi, length, schedule, prompt, batch=1, prompt_u=up)
    rolled = make_conv(phi, length, schedule, prompt, batch=1, prompt_u=up)
    ref, u = [], u0
    for t in range(length):
        if t % 2:
            y = looped.step(u)
        else:
            y = looped.emit(u)
            looped.advance()
        ref.append(np.asarray(y))
        u = feedback(y)
    ref = np.stack(ref, axis=-1)
    parts, u = [], u0
    for start, stop in zip((0, *cuts), (*cuts, length), strict=True):
        assert rolled.position == start
        ys = rolled.rollout(u, feedback, stop - start)
        parts.append(np.asarray(ys))
        u = feedback(ys[..., -1])
    assert rel_err(np.concatenate(parts, axis=-1), ref) <= RTOL64
    assert rolled.position == looped.position == length
    buf_r, buf_l = np.asarray(rolled._state.buffer), np.asarray(looped._state.buffer)
    assert rel_err(buf_r, buf_l) <= RTOL64


@pytest.mark.parametrize(
    "direct_below", [1, 2, 4, pytest.param(32, marks=SLOW), pytest.param(64, marks=SLOW), 128]
)
def test_rollout_direct_below(rng, direct_below):
    """Every crossover, including those above the unrolled group size and the fallback."""
    length, prompt = 300, 4
    phi = decaying_filters(rng, 2, prompt + length)
    up = rng.standard_normal((1, 2, prompt))
    u0 = rng.standard_normal((1, 2))
    conv = make_conv(
        phi, length, "continuous", prompt, batch=1, prompt_u=up, direct_below=direct_below
    )
    first = np.asarray(conv.rollout(jnp.asarray(u0), feedback, 77))
    rest = np.asarray(conv.rollout(feedback(jnp.asarray(first[..., -1])), feedback))
    ys = np.concatenate([first, rest], axis=-1)
    u = np.concatenate([up, inputs_of(u0, ys)], axis=-1)
    assert rel_err(ys, oracle(u, phi)[..., prompt:]) <= RTOL64


def test_rollout_then_steps(rng):
    """Rollouts and ordinary steps interleave on one state."""
    length = 40
    phi = decaying_filters(rng, 2, length)
    u = rng.standard_normal((1, 2, length))
    u[..., 2:21] = 1.0  # the inputs the constant feedback of the second rollout produces

    def one(y):
        return jnp.ones_like(y)

    conv = futurefill.OnlineConv(phi, length, backend="jax")
    ys = [np.asarray(conv.rollout(jnp.asarray(u[..., 0]), one, 1))]
    ys.append(np.asarray(conv.rollout(jnp.asarray(u[..., 1]), one, 20)))
    for t in range(21, length):
        ys.append(np.asarray(conv.step(jnp.asarray(u[..., t])))[..., None])
    assert rel_err(np.concatenate(ys, axis=-1), oracle(u, phi)) <= RTOL64


def test_rollout_float32(rng):
    length = 200
    phi = contractive_filters(rng, 2, length).astype(np.float32)
    conv = futurefill.OnlineConv(phi, length, backend="jax", dtype="float32")
    u0 = jnp.ones((1, 2), jnp.float32)
    ys = conv.rollout(u0, feedback)
    assert ys.dtype == jnp.float32
    ys = np.asarray(ys, dtype=np.float64)
    u = inputs_of(np.ones((1, 2)), ys.astype(np.float32)).astype(np.float64)
    # float32 FFTs: ~1e-7 relative per level, 8 levels at L=200 -> 1e-5 is a safe bound.
    assert rel_err(ys, oracle(u, phi.astype(np.float64))) <= 1e-5


def test_float64_needs_x64(rng):
    phi = decaying_filters(rng, 1, 8)
    with jax.enable_x64(False):
        with pytest.raises(TypeError, match="jax_enable_x64"):
            futurefill.OnlineConv(phi, 8, backend="jax", dtype="float64")
        with pytest.raises(TypeError, match="jax_enable_x64"):
            futurefill.OnlineConv(phi, 8, backend="jax")  # float64 filters, no dtype
        conv = futurefill.OnlineConv(phi, 8, backend="jax", dtype="float32")
        assert conv.step(jnp.ones((1, 1), jnp.float32)).dtype == jnp.float32


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_computes_in_float32(rng, dtype):
    conv = futurefill.OnlineConv(decaying_filters(rng, 1, 8), 8, backend="jax", dtype=dtype)
    assert conv.dtype == getattr(jnp, dtype) and conv.compute_dtype == jnp.float32
    for bad in ("int8", "float8"):
        with pytest.raises(TypeError, match="float32 or float64"):
            futurefill.OnlineConv(decaying_filters(rng, 1, 8), 8, backend="jax", dtype=bad)


def test_feedback_shape_checked(rng):
    conv = futurefill.OnlineConv(decaying_filters(rng, 2, 16), 16, backend="jax")
    before = np.asarray(conv._state.buffer)
    with pytest.raises(ValueError, match="feedback must return"):
        conv.rollout(jnp.ones((1, 2)), lambda y: y[:, :1])
    assert conv.position == 0
    np.testing.assert_array_equal(np.asarray(conv._state.buffer), before)


def test_rollout_programs_are_reused(rng):
    conv = futurefill.OnlineConv(decaying_filters(rng, 1, 64), 64, backend="jax")
    ex = conv.backend
    ex._programs.clear()
    conv.rollout(jnp.ones((1, 1)), feedback, 10)
    conv.rollout(jnp.ones((1, 1)), feedback, 30)
    conv.reset()
    conv.rollout(jnp.ones((1, 1)), feedback)
    assert len(ex._programs) == 1


def test_online_conv_end_to_end(rng):
    """prefill / step / emit+advance / state_dict / load_state_dict / reset with JAX arrays."""
    P, L, C = 5, 30, 4
    phi = decaying_filters(rng, C, P + L)
    u = rng.standard_normal((2, C, P + L))
    conv = futurefill.OnlineConv(phi, L, prompt=P, batch=2, backend="jax")
    y = [np.asarray(conv.prefill(jnp.asarray(u[..., :P])))]
    for t in range(10):
        y.append(np.asarray(conv.step(jnp.asarray(u[..., P + t])))[..., None])
    snap = conv.state_dict()
    assert isinstance(snap["buffer"], jax.Array)
    for t in range(10, L):
        ut = jnp.asarray(u[..., P + t])
        parts = [conv.emit(ut[:, :1], slice(0, 1)), conv.emit(ut[:, 1:], slice(1, None))]
        conv.advance()
        y.append(np.asarray(jnp.concatenate(parts, axis=1))[..., None])
    ref = oracle(u, phi)
    assert rel_err(np.concatenate(y, axis=-1), ref) <= RTOL64
    conv.load_state_dict(snap)
    again = [np.asarray(conv.step(jnp.asarray(u[..., P + t]))) for t in range(10, L)]
    assert rel_err(np.stack(again, axis=-1), ref[..., P + 10 :]) <= RTOL64
    conv.reset()
    assert conv.position == 0
    assert not np.any(np.asarray(conv._state.buffer))


def test_steps_update_in_place(rng):
    """Donated buffers are reused: no donation warning, and the old buffer is consumed."""
    conv = futurefill.OnlineConv(decaying_filters(rng, 2, 64), 64, backend="jax")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(20):
            old = conv._state.buffer
            conv.step(jnp.ones((1, 2)))
            assert old.is_deleted()


@pytest.mark.parametrize("transform", ["jit", "grad", "vmap"])
def test_tracers_are_refused_and_the_state_is_untouched(rng, transform) -> None:
    """``jax.jit(lambda x: conv.step(x))`` used to return wrong values from the second call
    on and leak a tracer into the state."""
    phi = decaying_filters(rng, 1, 16)
    conv = futurefill.OnlineConv(phi, 16, backend="jax", dtype="float64")
    conv.step(jnp.ones((1, 1)))
    before = np.asarray(conv.state_dict()["buffer"])
    fn = {
        "jit": jax.jit(lambda x: conv.step(x)),
        "grad": jax.grad(lambda x: conv.step(x).sum()),
        "vmap": jax.vmap(lambda x: conv.step(x[None, :])),
    }[transform]
    with pytest.raises(TypeError, match=r"tracer.*rollout"):
        fn(jnp.ones((1, 1)))
    assert conv.position == 1
    np.testing.assert_array_equal(np.asarray(conv.state_dict()["buffer"]), before)
    y = conv.step(jnp.ones((1, 1)))  # still usable, and exact
    np.testing.assert_allclose(np.asarray(y)[0, 0], phi[0, 0] + phi[0, 1], rtol=1e-14)


def test_compiled_rollouts_of_equal_plans_use_their_own_filters(rng) -> None:
    """The compiled program is cached per plan and shapes; its constants belong to each
    state (a second OnlineConv with other filters must not reuse the first's)."""
    L = 24
    outputs = []
    for phi in (decaying_filters(rng, 2, L), decaying_filters(rng, 2, L)):
        conv = futurefill.OnlineConv(phi, L, schedule="naive", backend="jax", dtype="float64")
        u0 = rng.standard_normal((1, 2))
        ys = np.asarray(conv.rollout(jnp.asarray(u0), jnp.tanh))
        inputs = np.concatenate([u0[..., None], np.tanh(ys[..., :-1])], -1)
        np.testing.assert_allclose(ys, oracle(inputs, phi), rtol=0, atol=1e-12)
        outputs.append(ys)
    assert not np.allclose(outputs[0], outputs[1])


@pytest.mark.parametrize("splits", [(5, None), pytest.param((5, 1500, None), marks=SLOW)])
def test_rollout_over_whole_chunks(rng, splits):
    """Past ``CHUNK`` steps the compiled rollout runs whole chunks and looks at the classes
    whose tasks only come at chunk ends (the 1024- and 2048-step levels) once per chunk:
    a rollout over a whole chunk, and rollouts stopping inside a chunk and inside blocks."""
    from futurefill_jax._program import CHUNK

    length, prompt = 2 * CHUNK + 77, 3
    phi = contractive_filters(np.random.default_rng(7), 2, prompt + length)
    up = rng.standard_normal((1, 2, prompt))
    u0 = rng.standard_normal((1, 2))
    conv = make_conv(phi, length, "continuous", prompt, batch=1, prompt_u=up, direct_below=16)
    ys = split_rollouts(conv, u0, splits)
    assert ys.shape == (1, 2, length)
    u = np.concatenate([up, inputs_of(u0, ys)], axis=-1)
    assert rel_err(ys, oracle(u, phi)[..., prompt:]) <= RTOL64


@pytest.mark.parametrize(
    ("radix", "direct_below", "splits"),
    [
        pytest.param(4, 32, (None,), marks=SLOW),  # the split runs below cover it
        (4, 32, (1, 700, 131, None)),
        (8, 16, (300, 1111, None)),
        # the register of inputs 0..1023 is written after step 1023 and read after step 2047:
        # rollouts starting right after the one and at the other transform it again
        (8, 16, (1024, None)),
        (8, 16, (2047, None)),
        pytest.param(3, 64, (2000, None), marks=SLOW),
    ],
)
def test_compiled_rollout_shares_transforms(rng, radix, direct_below, splits):
    """The reuse schedule's large levels run from spectrum registers carried by the compiled
    loop (forward transforms once per input block, one inverse per output block); rollouts
    that start anywhere first transform again the registers alive there."""
    from futurefill_jax._spectral import spectral_runner

    length, prompt = 3000, 5
    phi = contractive_filters(np.random.default_rng(11), 2, prompt + length)
    up = rng.standard_normal((1, 2, prompt))
    u0 = rng.standard_normal((1, 2))
    conv = make_conv(
        phi, length, "reuse", prompt, batch=1, prompt_u=up, radix=radix, direct_below=direct_below
    )
    runner = spectral_runner(conv.plan, direct_below)
    assert runner is not None and runner.handles.any() and not runner.handles.all()
    ys = split_rollouts(conv, u0, splits)
    assert ys.shape == (1, 2, length)
    u = np.concatenate([up, inputs_of(u0, ys)], axis=-1)
    assert rel_err(ys, oracle(u, phi)[..., prompt:]) <= RTOL64


def test_compiled_rollout_of_a_plan_whose_registers_never_outlive_their_step(rng):
    """``deadline`` shares one forward transform between two tiles run after the same step:
    no register is alive across a rollout's start, and the program still builds and is exact."""
    from futurefill_jax._spectral import spectral_runner

    length = 2000
    phi = contractive_filters(np.random.default_rng(5), 2, length)
    conv = make_conv(phi, length, "deadline", 0, batch=1, direct_below=16, slack_from=256)
    runner = spectral_runner(conv.plan, 16)
    assert runner is not None and all(s.reload_rows.shape[0] == 0 for s in runner.sizes)
    u0 = rng.standard_normal((1, 2))
    ys = split_rollouts(conv, u0, (700, None))
    assert rel_err(ys, oracle(inputs_of(u0, ys), phi)) <= RTOL64


def test_matrix_products_run_at_full_float32_precision(rng, monkeypatch) -> None:
    """On GPUs JAX multiplies float32 matrices in TF32 by default: every matrix product of the
    compiled programs (the window sums of the naive schedule's stepwise rollout; the decode
    loop's window sums and the model's layers) is pinned to ``HIGHEST``."""
    from futurefill.models import ConvLM
    from futurefill_jax._program import MAX_GROUP, build_program
    from futurefill_jax.decode import greedy

    L = 2 * MAX_GROUP  # one window block longer than MAX_GROUP: the stepwise program
    conv = futurefill.OnlineConv(decaying_filters(rng, 2, L), L, schedule="naive",
                                 backend="jax", dtype="float32")  # fmt: skip
    program, consts = build_program(conv._state, feedback)
    u0 = jnp.ones((1, 2), jnp.float32)
    texts = [program.lower(conv._state.buffer, u0, 0, L, *consts).as_text()]
    compile_ = jax.stages.Lowered.compile

    def recorded(self, *args, **kwargs):
        texts.append(self.as_text())
        return compile_(self, *args, **kwargs)

    monkeypatch.setattr(jax.stages.Lowered, "compile", recorded)
    model = ConvLM(mixer="hyena", dim=16, layers=2, vocab_size=32, max_len=96, seed=3)
    greedy(model, np.arange(5)[None, :], 6, executor=conv.backend, schedule="naive")
    dots = [re.findall(r"stablehlo\.dot_general .*", text) for text in texts]
    assert len(texts) == 3 and all(dots)  # the rollout, the prompt pass, the decode loop
    for found in dots:
        assert all("precision = [HIGHEST, HIGHEST]" in d for d in found), found
