"""A model's whole token step captured per step pattern (torch), checked without a GPU.

:mod:`futurefill_torch._decode_graphs` decides on the host which token-step graphs a decode
gets (one per ``(window width, step pattern)`` of the steps still to run), when they are
captured (all before the first decode step, after the prompt), that they share the pool of
the state's pattern graphs, and how the static inputs and outputs are bound. Here the torch
executor on the CPU gets a stand-in recorder that replays the captured bodies eagerly (the
body runs with the slot, window start and task row read from device integers, exactly as it
is captured on CUDA), and the graphed generation is compared with the eager one: greedy tokens
identical, logits equal to float64 rounding. On a CUDA device (the ``torch_cuda_graphs``
variant, deselected elsewhere) the same comparison runs with real graphs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import futurefill
from futurefill.models import ConvLM, GenerationOptions, generate

from .conftest import selected_backends

torch = pytest.importorskip("torch")
if not {"torch", "torch_cuda", "torch_cuda_graphs"} & set(selected_backends()):
    pytest.skip("torch is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)

from futurefill_torch import TorchExecutor  # noqa: E402
from futurefill_torch._decode_graphs import MAX_DECODE_GRAPHS, decode_steps  # noqa: E402

from .test_backend_torch_graphs import StandInRecorder  # noqa: E402


class Recorder(StandInRecorder):
    """The stand-in recorder of the pattern graphs' tests (one per state, so one pool), its
    warm-ups counted for token-step bodies too; a "graph" replays its body eagerly."""

    def __init__(self) -> None:
        super().__init__()
        self.warm_ups = 0

    def warm_up(self, body) -> None:
        self.warm_ups += 1
        body()


class StandInGraphs(TorchExecutor):
    """The torch executor on the CPU with the stand-in recorder: graphs as on CUDA."""

    def __init__(self) -> None:
        super().__init__("cpu")
        self.recorders: list[Recorder] = []

    def recorder(self, state):
        self.recorders.append(Recorder())
        return self.recorders[-1]


def first_keys(plan: futurefill.Plan, start: int) -> dict[tuple[int, int], int]:
    """The oracle of :func:`decode_steps`: a plain loop over the steps."""
    found: dict[tuple[int, int], int] = {}
    pattern = np.asarray(plan.step_patterns.pattern_of_step)
    for t in range(start, plan.length):
        key = (int(plan.slot[t] - plan.window_slot[t]), int(pattern[t]))
        found.setdefault(key, t)
    return found


@pytest.mark.parametrize(
    ("schedule", "params", "start"),
    [("continuous", {}, 0), ("reuse", {}, 7), ("epoched", {"epoch": 8}, 3), ("naive", {}, 0)],
)
def test_decode_steps_names_each_key_at_its_first_step(schedule, params, start) -> None:
    plan = futurefill.make_plan(100, schedule, prompt=5, **params)
    steps = decode_steps(plan, start)
    assert steps == first_keys(plan, start)
    assert list(steps.values()) == sorted(steps.values())


def test_more_keys_than_the_cap_capture_nothing() -> None:
    plan = futurefill.make_plan(MAX_DECODE_GRAPHS + 1, "naive")  # a new width every step
    assert len(first_keys(plan, 0)) == MAX_DECODE_GRAPHS + 1
    assert decode_steps(plan) is None
    assert decode_steps(plan, 1) is not None  # one step fewer: within the cap


def _generate(model: ConvLM, prompt: Any, n: int, schedule: str, ex: TorchExecutor):
    spec = futurefill.PlanSpec(schedule, direct_below=2)  # tasks from the first steps on
    options = GenerationOptions(schedule=spec, backend=ex, return_logits=True)
    return generate(model, prompt, n, options)


CASES = [
    ("hyena", "continuous", 0, "float64"),
    ("hyena", "reuse", 9, "float64"),
    ("stu", "continuous", 6, "float64"),
    ("hyena", "continuous", 5, "float32"),
]


def _compare(mixer, schedule, prompt_len, dtype, eager_ex, graphed_ex):
    """Greedy generation with ``eager_ex`` and ``graphed_ex``: tokens identical, logits
    equal to rounding (the same operations; a reduction may be reassociated). Returns the
    graphed generation's decoder."""
    n = 40
    model = ConvLM(
        mixer=mixer, dim=8, layers=3, vocab_size=32, max_len=prompt_len + n, stu_k=4,
        dtype=dtype, seed=3,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, 32, size=(2, prompt_len)) if prompt_len else None
    eager = _generate(model, prompt, n, schedule, eager_ex)
    graphed = _generate(model, prompt, n, schedule, graphed_ex)
    decoder = graphed.decoder
    assert decoder is not None and decoder.program is not None
    np.testing.assert_array_equal(graphed.tokens, eager.tokens)
    scale = np.abs(eager.logits).max()
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert np.abs(graphed.logits - eager.logits).max() <= tol * scale
    return decoder


@pytest.mark.parametrize("backend", ["torch_cuda_graphs"], indirect=True)
@pytest.mark.parametrize(("mixer", "schedule", "prompt_len", "dtype"), CASES)
def test_cuda_graphed_token_steps_give_the_eager_tokens(
    backend, mixer, schedule, prompt_len, dtype
) -> None:
    eager = TorchExecutor(backend.device)
    decoder = _compare(mixer, schedule, prompt_len, dtype, eager, backend)
    assert backend.workspace_size(decoder.conv.state)["cuda_graphs_bytes"] > 0


@pytest.mark.parametrize(("mixer", "schedule", "prompt_len", "dtype"), CASES)
def test_graphed_token_steps_give_the_eager_tokens(mixer, schedule, prompt_len, dtype) -> None:
    ex = StandInGraphs()
    decoder = _compare(mixer, schedule, prompt_len, dtype, TorchExecutor(), ex)
    (recorder,) = ex.recorders
    plan = decoder.conv.plan
    keys = first_keys(plan, 0)
    patterns = len(set(np.asarray(plan.step_patterns.pattern_of_step).tolist()) - {0})
    # every graph (the pattern graphs, then one token step per key) captured once, inside
    # the device guard, before the first decode step: the decode captured nothing more
    assert recorder.recorded == recorder.warm_ups == patterns + len(keys)
    assert recorder.outside_guard == 0
    assert set(decoder.program.replays) == set(keys)
    assert decoder.conv.position == plan.length  # every step ran (and was counted)
    size = ex.workspace_size(decoder.conv.state)["cuda_graphs_bytes"]
    # the one pool of the state, measured again after the token-step captures (with their
    # two device integers beside the pattern graphs' offsets and row)
    assert size == 4096 + 8 * (plan.num_tasks + 1 + 2)


def test_a_graphed_decoder_refuses_a_step_past_its_plan_like_the_eager_one() -> None:
    model = ConvLM(mixer="hyena", dim=4, layers=1, vocab_size=8, max_len=8, seed=0)
    messages = []
    spec = futurefill.PlanSpec("continuous", direct_below=1)
    for ex in (TorchExecutor(), StandInGraphs()):
        decoder = futurefill.models.Decoder(model, prompt_len=0, steps=8, schedule=spec, backend=ex)
        assert (decoder.program is None) == (type(ex) is TorchExecutor)
        for _ in range(8):
            decoder.step(np.zeros(1, np.int64))
        with pytest.raises(RuntimeError) as info:
            decoder.step(np.zeros(1, np.int64))
        messages.append(str(info.value))
        assert decoder.conv.position == 8
    assert messages[0] == messages[1]


@pytest.mark.parametrize(
    ("schedule", "options"),
    [("continuous", {"timed": True}), ("naive", {}), ("continuous", {"steps": None})],
)
def test_no_token_step_graphs_when_timed_open_ended_or_without_tasks(schedule, options) -> None:
    model = ConvLM(mixer="hyena", dim=4, layers=1, vocab_size=8, max_len=16, seed=0)
    ex = StandInGraphs()
    kwargs = {"prompt_len": 0, "steps": 16, "schedule": schedule, "backend": ex, **options}
    decoder = futurefill.models.Decoder(model, **kwargs)
    assert decoder.program is None
    assert all(r.recorded == r.warm_ups for r in ex.recorders)


def test_a_restored_snapshot_is_copied_into_the_captured_buffer_and_states() -> None:
    model = ConvLM(mixer="hyena", dim=6, layers=2, vocab_size=16, max_len=24, seed=2)
    tokens = np.random.default_rng(1).integers(0, 16, size=(24, 1))
    spec = futurefill.PlanSpec("continuous", direct_below=2)
    logits = []
    for ex in (TorchExecutor(), StandInGraphs()):
        decoder = futurefill.models.Decoder(
            model, prompt_len=0, steps=24, schedule=spec, backend=ex
        )
        out = []
        for t in [*range(11), *range(6, 24)]:  # back to step 6 after step 10
            if t == 6 and decoder.conv.position == 6:
                snapshot = decoder.conv.state_dict()
                states = [tuple(a.clone() for a in s) for s in decoder.states]
            elif t == 6:  # the restored state gets a new buffer, the decoder new states
                decoder.conv.load_state_dict(snapshot)
                decoder.states = states
            out.append(decoder.step(tokens[t]).numpy())
        logits.append(np.stack(out))
    np.testing.assert_allclose(logits[1], logits[0], rtol=0, atol=1e-12 * np.abs(logits[0]).max())
