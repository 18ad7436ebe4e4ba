"""The JAX backend's compiled greedy generation: the same tokens as the NumPy reference.

``ConvLM.generate`` on the JAX backend runs the prompt pass and the whole decode loop as two
compiled programs; the tokens must equal the NumPy backend's (same float64 arithmetic up to
rounding: logits within 1e-12 of the largest, so no argmax can flip unless two logits tie to
that precision — the random models here have no such ties).
"""

from __future__ import annotations

import numpy as np
import pytest

import futurefill
from futurefill import PlanSpec
from futurefill.models import ConvLM
from futurefill.plan import Tiling, register_schedule

from .conftest import selected_backends

if "jax" not in selected_backends():
    pytest.skip("jax is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)
jax = pytest.importorskip("jax")
if not jax.config.read("jax_enable_x64"):
    pytest.skip("these float64 tests need JAX_ENABLE_X64=1", allow_module_level=True)

from futurefill_jax import JaxExecutor, decode  # noqa: E402
from futurefill_jax.decode import greedy  # noqa: E402


@register_schedule("uneven_blocks", replace=True)
def uneven_blocks(length: int, prompt: int) -> Tiling:
    """Window blocks of 3, 5, 2, 3, 5, 2, ... steps; each finished block fills every later
    output (no aligned block size: the decode loop reads and writes the state per position)."""
    sizes = np.resize([3, 5, 2], length)
    firsts = np.concatenate([[0], np.cumsum(sizes)])
    firsts = firsts[firsts < length]
    ends = firsts[1:]
    tasks = {
        "after_step": ends - 1,
        "src_start": prompt + firsts[:-1],
        "src_stop": prompt + ends,
        "dst_start": prompt + ends,
        "dst_stop": np.full_like(ends, prompt + length),
    }
    blocks = np.repeat(firsts, np.diff(np.concatenate([firsts, [length]])))
    return Tiling(window_start=prompt + blocks, tasks=tasks)


CASES = [
    pytest.param("naive", 0, marks=pytest.mark.slow),  # deep suite; naive runs with a prompt
    ("naive", 7),  # windows reach back into the prompt
    ("continuous", 7),
    ("epoched", 0),
    ("continuous", 0),
    (PlanSpec("continuous", direct_below=4), 3),  # blocks of 4 and a partial last one
    (PlanSpec("reuse", direct_below=2), 0),
    ("deadline", 5),
    ("uneven_blocks", 4),
]


@pytest.fixture(scope="module", params=["hyena", "stu"])
def model(request: pytest.FixtureRequest) -> ConvLM:
    return ConvLM(mixer=request.param, dim=16, layers=2, vocab_size=32, max_len=96, stu_k=8,
                  seed=3)  # fmt: skip


@pytest.mark.parametrize(("schedule", "prompt_len"), CASES)
def test_compiled_generation_equals_the_numpy_reference(model, schedule, prompt_len) -> None:
    prompt = (np.arange(prompt_len) * 5 % 32)[None, :] if prompt_len else None
    want, want_logits = model.generate(
        prompt, 30, schedule=schedule, backend="numpy", return_logits=True
    )
    got, logits = model.generate(prompt, 30, schedule=schedule, backend="jax", return_logits=True)
    np.testing.assert_array_equal(got, want)
    scale = np.abs(want_logits).max()
    np.testing.assert_allclose(logits, want_logits, rtol=0, atol=1e-12 * scale)


def test_chunks_and_their_rare_classes(model, monkeypatch) -> None:
    """Chunks of 8 positions (instead of 1024): the classes whose tasks all come at the end
    of a chunk run once per chunk, then the blocks after the last whole chunk, then the
    partial block."""
    monkeypatch.setattr(decode, "CHUNK", 8)
    schedule = PlanSpec("continuous", direct_below=2)
    want = model.generate(None, 29, schedule=schedule, backend="numpy")
    np.testing.assert_array_equal(model.generate(None, 29, schedule=schedule, backend="jax"), want)


def test_shared_transforms_in_the_decode_loop(model, monkeypatch) -> None:
    """The reuse schedule's shared transforms (spectrum registers carried by the loop) from
    FFT size 4 on (instead of 256), so that a short generation has them."""
    from futurefill_jax import _spectral, _tasks, functional

    caches = (_spectral.spectral_runner, _tasks.task_runner, functional.layout_for)
    monkeypatch.setattr(_tasks, "FFT_FROM", 2)
    monkeypatch.setattr(_spectral, "FFT_FROM", 2)
    for cache in caches:  # (runners built with the usual sizes)
        cache.cache_clear()
    schedule = PlanSpec("reuse", direct_below=2, radix=4)
    plan = futurefill.make_plan(28, schedule)
    try:
        assert _spectral.spectral_runner(plan, plan.window_block_size) is not None
        want = model.generate(None, 29, schedule=schedule, backend="numpy")
        got = model.generate(None, 29, schedule=schedule, backend="jax")
    finally:
        for cache in caches:  # (runners built with these sizes)
            cache.cache_clear()
    np.testing.assert_array_equal(got, want)


def test_timings_are_reported_apart_and_the_rest_runs(model) -> None:
    ex = JaxExecutor()
    run = greedy(model, np.arange(5)[None, :], 12, executor=ex, schedule="continuous")
    assert run.tokens.shape == (1, 12)
    assert run.compile_seconds > 0 and run.decode_seconds > 0 and run.prefill_seconds > 0
    rest = greedy(model, np.arange(5)[None, :], 12, executor=ex, long_conv=False)
    assert rest.tokens.shape == (1, 12)  # the model without its long convolution


def test_a_batch_without_prompt(model) -> None:
    want = model.generate(None, 9, batch=2, backend="numpy")
    np.testing.assert_array_equal(model.generate(None, 9, batch=2, backend="jax"), want)
