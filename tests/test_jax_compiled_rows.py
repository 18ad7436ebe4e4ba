"""The server's compiled position pass on JAX (``futurefill.models.compiled_rows``).

Tested against the eager :func:`~futurefill.models.network.position_pass` on the same
backend (float64: the same operations, fused differently, so agreement to rounding, 1e-12 of
the largest value): the logits and the stored states of any set of stepped rows, padded or
not; the states untouched until ``store()`` and outside the stepped rows; no new program once
each padded row count was seen; a prompt's pass through the compiled programs, whole and
continuing from states; and a server stepping three and more slots at once on JAX
gives every request the tokens of ``generate`` alone.
"""

from __future__ import annotations

import numpy as np
import pytest

import futurefill
from futurefill.models import Request, serve
from futurefill.models.compiled_rows import CompiledRows
from futurefill.models.network import position_pass, sequence_pass
from futurefill.models.slot_states import SlotStates

from .conftest import selected_backends
from .test_models import small_model
from .test_serving import alone

if "jax" not in selected_backends():
    pytest.skip("jax is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)
jax = pytest.importorskip("jax")
if not jax.config.read("jax_enable_x64"):
    pytest.skip("these float64 tests need JAX_ENABLE_X64=1", allow_module_level=True)

CAPACITY = 6
RTOL = 1e-12


def _setup(variant: str) -> tuple:
    model = small_model(variant, max_len=32)
    ex = futurefill.get_backend("jax")
    weights = model.backend_weights(ex)
    rng = np.random.default_rng(3)
    states = SlotStates(ex, CAPACITY)
    for row in range(CAPACITY):  # every slot some state of its own
        first = [model.mixer.initial_state(lw, 1, ex.xp, weights.device) for lw in weights.layers]
        random = [
            tuple(ex.asarray(rng.standard_normal(tuple(a.shape))) for a in layer) for layer in first
        ]
        states.put(row, random)
    return model, ex, weights, states, rng


def _host(states: SlotStates, layers: int) -> list[list[np.ndarray]]:
    return [[np.asarray(a) for a in states.layer(i)] for i in range(layers)]


def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=0, atol=RTOL * max(1.0, float(np.max(np.abs(b)))))


@pytest.mark.parametrize("variant", ["hyena", "stu_full", "stu"])
@pytest.mark.parametrize("rows", [[2], [1, 3, 4], [0, 1, 2, 3, 4]])
def test_compiled_rows_equal_the_eager_position_pass(variant: str, rows: list[int]) -> None:
    """Row counts 1, 3 (padded to 4) and 5 (padded to 8); mixers with two state arrays, one
    and none."""
    model, ex, weights, states, rng = _setup(variant)
    layers = len(weights.layers)
    rows_a = np.asarray(rows, np.int64)
    tokens = rng.integers(0, model.config.vocab_size, rows_a.size)
    seen: list[int] = []

    def long_conv(layer: int, u: object) -> object:
        seen.append(int(u.shape[0]))  # the pool sees the real rows only
        return 0.5 * u + 0.25 * layer

    before = _host(states, layers)
    eager_logits, eager_states = position_pass(
        weights, ex.asarray(tokens), states.take(rows_a), long_conv
    )
    logits, store = CompiledRows(weights, ex)(tokens, rows_a, states, long_conv)
    assert seen == [rows_a.size] * (2 * layers)
    _close(np.asarray(logits), np.asarray(eager_logits))
    for a, b in zip(_host(states, layers), before, strict=True):  # nothing stored yet
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    store()
    after = _host(states, layers)
    others = np.setdiff1d(np.arange(CAPACITY), rows_a)
    for i in range(layers):
        for k, new in enumerate(eager_states[i]):
            _close(after[i][k][rows_a], np.asarray(new))
            np.testing.assert_array_equal(after[i][k][others], before[i][k][others])


def test_no_new_program_once_each_padded_row_count_was_seen() -> None:
    model, ex, weights, states, rng = _setup("hyena")
    compiled = CompiledRows(weights, ex)
    p = compiled._programs
    programs = (p.position.enter, p.before, p.position.outputs, p.position.head, p.store)

    def step(rows: list[int]) -> None:
        tokens = rng.integers(0, model.config.vocab_size, len(rows))
        _, store = compiled(tokens, np.asarray(rows, np.int64), states, lambda i, u: u)
        store()

    for rows in ([0], [1, 2], [0, 1, 2], [0, 1, 2, 3, 4]):  # padded to 1, 2, 4, 8
        step(rows)
    sizes = [p._cache_size() for p in programs]
    for rows in ([5], [3, 4], [1, 4, 5, 0], [2, 3, 4, 5, 0, 1]):
        step(sorted(rows))
    assert [p._cache_size() for p in programs] == sizes


@pytest.mark.parametrize("variant", ["hyena", "stu_full"])
def test_the_compiled_prompt_pass_equals_the_eager_one(variant: str) -> None:
    """A prompt in two chunks (the second continuing from the mixers' states), through
    ``sequence_pass`` with the compiled programs and without; same long convolution."""
    model = small_model(variant, max_len=32)
    ex = futurefill.get_backend("jax")
    weights = model.backend_weights(ex)
    tokens = ex.asarray(np.random.default_rng(5).integers(0, model.config.vocab_size, (1, 7)))

    def long_conv(layer: int, u: object) -> object:
        return 0.5 * u + 0.25 * layer

    runs = []
    for programs in (None, CompiledRows(weights, ex).sequence):
        first = sequence_pass(weights, tokens[:, :4], long_conv=long_conv, programs=programs)
        second = sequence_pass(
            weights, tokens[:, 4:], long_conv=long_conv, states=first.states, programs=programs
        )
        runs.append([first.logits, second.logits, *(a for s in second.states for a in s)])
    for compiled, eager in zip(runs[1], runs[0], strict=True):
        _close(np.asarray(compiled), np.asarray(eager))


def test_a_server_stepping_several_slots_on_jax_gives_the_tokens_of_generate() -> None:
    """Five requests, four slots: steps of 1 to 4 rows (3 padded to 4). (Prompts of two
    lengths: each new prompt length compiles the eager prompt pass again.)"""
    model = small_model("hyena", max_len=16)
    rng = np.random.default_rng(8)
    requests = [
        Request(rng.integers(0, model.config.vocab_size, p), n)
        for p, n in ((2, 6), (0, 9), (2, 4), (2, 7), (0, 5))
    ]
    results = serve(model, requests, capacity=4, backend="jax")
    for r, res in zip(requests, results, strict=True):
        np.testing.assert_array_equal(res.tokens, alone(model, r))
