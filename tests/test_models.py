"""Reference models: generation with every schedule reproduces the full-sequence forward pass.

Every test runs on every model variant of :data:`VARIANTS`: STU-T and the full STU (both
branches with the standard Hankel matrix, and the positive branch alone with ``Z_L``) and the
Hyena-style mixer.

Tolerance: logits are compared relative to their largest magnitude, at 1e-9 in float64. The two
paths differ only in how the causal convolutions are summed (one FFT of the whole sequence vs
prefill FFT + FutureFill blocks + direct windows); each FFT level contributes ~1e-16 relative
error, there are ~log2(L) of them, and norms/gates of a few layers amplify that by at most a few
hundred, far below 1e-9 (measured: at most a few 1e-15 for every variant). A full STU layer sums
``2 K D`` convolution outputs per output channel through its projections, which adds a factor
of about ``sqrt(2 K D)`` (~14 here) to the rounding, still far below. A wrong tap, block,
offset or sign of the negative branch changes logits by O(1e-3) or more.
"""

from __future__ import annotations

import numpy as np
import pytest

import futurefill
from futurefill import PlanSpec
from futurefill.models import (
    ConvLM,
    Decoder,
    GenerationOptions,
    ModelConfig,
    decode_state_size,
)

SCHEDULES = futurefill.SCHEDULES
RTOL = 1e-9
#: Model variants: a name and the configuration fields that make it.
VARIANTS: dict[str, dict[str, str]] = {
    "stu": {"mixer": "stu"},
    "stu-plus-L": {"mixer": "stu", "stu_branches": "plus", "stu_hankel": "L"},
    "stu_full": {"mixer": "stu_full"},
    "stu_full-plus-L": {"mixer": "stu_full", "stu_branches": "plus", "stu_hankel": "L"},
    "hyena": {"mixer": "hyena"},
}


def small_model(variant: str, max_len: int = 256, **kw: object) -> ConvLM:
    """A small random model of the variant ``variant`` (a key of :data:`VARIANTS`)."""
    args: dict[str, object] = {
        "dim": 8,
        "layers": 2,
        "vocab_size": 32,
        "stu_k": 6,
        "seed": 6,
        "mlp_ratio": 2.0,
        **VARIANTS[variant],
    }
    args.update(kw)
    return ConvLM(max_len=max_len, **args)


@pytest.fixture(scope="module", params=list(VARIANTS))
def model(request: pytest.FixtureRequest) -> ConvLM:
    return small_model(request.param)


#: Seeds (default 6) whose random model does not fall into a short cycle of greedy tokens.
LONG_SEEDS = {"stu_full": 8}


@pytest.fixture(scope="module", params=list(VARIANTS))
def long_model(request: pytest.FixtureRequest) -> ConvLM:
    seed = LONG_SEEDS.get(request.param, 6)
    return small_model(request.param, max_len=2048 + 128, seed=seed)


def full_sequence(prompt: np.ndarray | None, tokens: np.ndarray, bos: int) -> np.ndarray:
    """The positions fed to the network: prompt (or the start token) then all but the last."""
    start = np.full((tokens.shape[0], 1), bos) if prompt is None else np.atleast_2d(prompt)
    return np.concatenate([start, tokens[:, :-1]], axis=1)


def assert_logits_match_forward(
    model: ConvLM, prompt: np.ndarray | None, tokens: np.ndarray, logits: np.ndarray
) -> None:
    seq = full_sequence(prompt, tokens, model.config.bos)
    ref = np.asarray(model.forward(seq, backend="numpy"))
    first = 0 if prompt is None else np.atleast_2d(prompt).shape[1] - 1
    ref = ref[:, first:]
    assert ref.shape == logits.shape
    err = np.abs(logits - ref).max(axis=-1) / np.abs(ref).max(axis=-1)
    assert err.max() <= RTOL, err.max()


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prompt_len", [0, 1, 37])
def test_generate_logits_equal_forward(model: ConvLM, schedule: str, prompt_len: int) -> None:
    rng = np.random.default_rng(prompt_len)
    prompt = rng.integers(0, 32, size=prompt_len) if prompt_len else None
    tokens, logits = model.generate(prompt, 70, schedule=schedule, return_logits=True)
    assert tokens.shape == (1, 70) and tokens.dtype == np.int64
    np.testing.assert_array_equal(tokens, logits.argmax(axis=-1))
    assert_logits_match_forward(model, prompt, tokens, logits)


@pytest.mark.parametrize("prompt_len", [0, 100])
def test_greedy_2048_tokens_identical_across_schedules(long_model: ConvLM, prompt_len: int) -> None:
    prompt = np.arange(prompt_len) % 32 if prompt_len else None
    runs = {}
    for schedule in SCHEDULES:
        runs[schedule] = long_model.generate(prompt, 2048, schedule=schedule, return_logits=True)
    tokens, logits = runs["continuous"]
    for schedule in SCHEDULES:
        np.testing.assert_array_equal(runs[schedule][0], tokens)
    # The random model (seed chosen for it) must not collapse into a short cycle, else equal
    # tokens would prove little: the last 500 tokens still use several ids.
    assert len(np.unique(tokens[:, -500:])) > 4
    assert_logits_match_forward(long_model, prompt, tokens, logits)


def test_schedule_parameters_are_passed_through(model: ConvLM) -> None:
    prompt = np.arange(9)
    base = model.generate(prompt, 40, schedule="naive", return_logits=True)[1]
    for spec in (PlanSpec("epoched", epoch=3), PlanSpec("continuous", direct_below=8)):
        logits = model.generate(prompt, 40, return_logits=True, schedule=spec)[1]
        np.testing.assert_allclose(logits, base, rtol=0, atol=RTOL * np.abs(base).max())


def test_batch_rows_are_independent(model: ConvLM) -> None:
    prompts = np.array([[1, 2, 3, 4], [9, 8, 7, 6]])
    both = model.generate(prompts, 20)
    for row in range(2):
        np.testing.assert_array_equal(both[row], model.generate(prompts[row], 20)[0])
    assert model.generate(None, 5, batch=3).shape == (3, 5)


def test_generation_options_are_one_value(model: ConvLM) -> None:
    options = GenerationOptions(schedule="naive", temperature=1.0, seed=3)
    by_value = model.generate([3, 1], 12, options)
    np.testing.assert_array_equal(
        by_value, model.generate([3, 1], 12, schedule="naive", temperature=1.0, seed=3)
    )
    tokens, logits = model.generate([3, 1], 12, options, return_logits=True)
    np.testing.assert_array_equal(tokens, by_value)
    assert logits.shape == (1, 12, 32)
    with pytest.raises(TypeError, match="colour"):
        model.generate([1], 3, colour="red")
    with pytest.raises(TypeError, match="GenerationOptions"):
        model.generate([1], 3, "naive")
    with pytest.raises(TypeError, match="seed"):
        GenerationOptions(seed="zzz")
    with pytest.raises(ValueError, match="batch"):
        GenerationOptions(batch=0)


def test_sampling_is_seeded_and_schedule_independent(model: ConvLM) -> None:
    a = model.generate([3, 1], 30, temperature=1.0, seed=11, schedule="naive")
    b = model.generate([3, 1], 30, temperature=1.0, seed=11, schedule="continuous")
    c = model.generate([3, 1], 30, temperature=1.0, seed=12, schedule="continuous")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


def test_one_token_after_a_full_length_prompt() -> None:
    model = small_model("hyena", max_len=16)
    prompt = np.arange(16) % 32
    _, logits = model.generate(prompt, 1, return_logits=True)
    ref = np.asarray(model.forward(prompt[None]))[:, -1:]
    np.testing.assert_allclose(logits, ref, rtol=0, atol=RTOL * np.abs(ref).max())
    with pytest.raises(ValueError, match="max_len"):
        model.generate(prompt, 2)


@pytest.mark.parametrize(
    ("prompt", "error"),
    [([[]], ValueError), ([0, 99], ValueError), ([0.5, 1.0], TypeError), ([-1], ValueError)],
)
def test_generate_rejects_bad_prompts(model: ConvLM, prompt: object, error: type) -> None:
    with pytest.raises(error):
        model.generate(prompt, 3)


def test_generate_rejects_bad_arguments(model: ConvLM) -> None:
    with pytest.raises(ValueError):
        model.generate([1], 0)
    with pytest.raises(ValueError):
        model.generate([1], 3, temperature=-1.0)
    with pytest.raises(ValueError):
        model.generate([1, 2], 3, batch=2)
    with pytest.raises(ValueError, match="unknown schedule"):
        model.generate([1], 3, schedule="fast")


def test_forward_accepts_one_sequence_and_checks_length(model: ConvLM) -> None:
    seq = np.arange(10) % 32
    np.testing.assert_array_equal(
        np.asarray(model.forward(seq)), np.asarray(model.forward(seq[None]))[0]
    )
    with pytest.raises(ValueError, match="max_len"):
        model.forward(np.zeros((1, model.config.max_len + 1), dtype=np.int64))


# ---------------------------------------------------------------------- every backend
@pytest.mark.slow_on("jax")  # a compiled whole-model program per schedule and prompt
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_generation_on_every_backend(backend: futurefill.executor.Executor, variant: str) -> None:
    model = small_model(variant, max_len=64)
    ref_tokens = model.generate([5, 6, 7], 24, backend="numpy")
    for schedule in SCHEDULES:
        for prompt in ([5, 6, 7], None):
            tokens, logits = model.generate(
                prompt, 24, schedule=schedule, backend=backend, return_logits=True
            )
            assert_logits_match_forward(
                model, None if prompt is None else np.array(prompt), tokens, logits
            )
            if prompt is not None:
                np.testing.assert_array_equal(tokens, ref_tokens)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_on_every_backend(backend: futurefill.executor.Executor, variant: str) -> None:
    model = small_model(variant, max_len=64)
    seq = np.random.default_rng(0).integers(0, 32, size=(2, 50))
    out = model.forward(seq, backend=backend)
    assert backend.is_native(out)
    ref = np.asarray(model.forward(seq, backend="numpy"))
    np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=0, atol=1e-12 * np.abs(ref).max())


# ---------------------------------------------------------------------- files
def test_save_load_round_trip(model: ConvLM, tmp_path) -> None:
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = ConvLM.load(path)
    assert loaded.config == model.config
    assert set(loaded.params) == set(model.params)
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)
    np.testing.assert_array_equal(loaded.generate([1, 2], 16), model.generate([1, 2], 16))


def test_load_rejects_foreign_files(tmp_path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a futurefill model"):
        ConvLM.load(path)
    model = small_model("stu", max_len=32)
    params = dict(model.params)
    params.pop("head")
    with pytest.raises(ValueError):
        ConvLM(model.config, params)


def test_config_validation_and_json() -> None:
    cfg = ModelConfig(mixer="hyena", dim=4, max_len=10)
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError):
        ModelConfig(mixer="mamba")
    with pytest.raises(ValueError):
        ModelConfig(dim=0)
    with pytest.raises(ValueError):
        ModelConfig(dtype="float16")
    with pytest.raises(ValueError):
        ModelConfig.from_json('{"dim": 4, "colour": 1}')


# ---------------------------------------------------------------------- memory
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prompt_len", [0, 40])
def test_decode_state_size_matches_the_decoder(
    model: ConvLM, schedule: str, prompt_len: int
) -> None:
    new = 50
    size = model.decode_state_size(prompt_len, new, schedule=schedule, batch=2)
    steps = new - 1 if prompt_len else new
    decoder = Decoder(model, prompt_len=prompt_len, steps=steps, schedule=schedule, batch=2)
    if prompt_len:
        decoder.prefill(np.ones((2, prompt_len), dtype=np.int64))
    held = decoder.state_size()
    assert held["conv_buffer"] == size.conv_buffer
    assert held["window_taps"] == size.window_taps
    assert held["spectra"] == size.spectra
    assert held["short_conv"] == size.short_conv
    cfg = model.config
    channels = model.mixer.long_channels(cfg) * cfg.layers
    assert size.naive_buffer == 2 * channels * (prompt_len + steps)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("schedule", ["continuous", "epoched"])
def test_decode_state_is_order_new_tokens(variant: str, schedule: str) -> None:
    P, K, D = 65536, 4096, 256
    # Only the configuration is needed: no (C, P + K) filters are built.
    cfg = ModelConfig(dim=D, layers=4, vocab_size=16, max_len=P + K, **VARIANTS[variant])
    size = decode_state_size(cfg, P, K, GenerationOptions(schedule=schedule))
    per_layer = size.per_layer()
    C = size.channels_per_layer  # D, or 2 K D for the full STU with both branches
    assert per_layer["conv_state"] <= 1.1 * K * C
    assert per_layer["conv_buffer"] <= K * C
    assert per_layer["naive_buffer"] == (P + K - 1) * C
    assert "naive" in str(size)


def test_decoder_rejects_too_long_generation(model: ConvLM) -> None:
    with pytest.raises(ValueError, match="max_len"):
        Decoder(model, prompt_len=200, steps=100)


# ---------------------------------------------------------------------- token ids
BAD_TOKENS = [([[0, -1]], ValueError), ([[3, 32]], ValueError), ([[99]], ValueError)]


@pytest.mark.parametrize(("tokens", "error"), BAD_TOKENS)
def test_forward_checks_token_ids_on_every_backend(
    backend: futurefill.executor.Executor, tokens: list, error: type
) -> None:
    model = small_model("hyena", max_len=16)
    with pytest.raises(error, match=r"token ids .*0\.\.31"):
        model.forward(tokens, backend=backend)
    native = backend.asarray(np.array(tokens, dtype=np.int64))
    with pytest.raises(error, match=r"token ids .*0\.\.31"):
        model.forward(native, backend=backend)


def test_forward_refuses_non_integer_tokens(backend: futurefill.executor.Executor) -> None:
    model = small_model("hyena", max_len=16)
    with pytest.raises(TypeError, match="integer"):
        model.forward([[0.5, 1.0]], backend=backend)
    with pytest.raises(TypeError, match="integer"):
        model.forward(backend.asarray(np.array([[1.0, 2.0]])), backend=backend)


@pytest.mark.parametrize("prompt", [[-1], [0, 32], [[1, 2], [3, 99]]])
def test_generate_checks_prompt_ids_on_every_backend(
    backend: futurefill.executor.Executor, prompt: list
) -> None:
    model = small_model("stu", max_len=16)
    with pytest.raises(ValueError, match=r"0\.\.31"):
        model.generate(prompt, 2, backend=backend)


def test_decoder_checks_the_tokens_it_is_fed(backend: futurefill.executor.Executor) -> None:
    model = small_model("hyena", max_len=16)
    decoder = Decoder(model, prompt_len=2, steps=3, backend=backend)
    with pytest.raises(ValueError, match=r"0\.\.31"):
        decoder.prefill(backend.asarray(np.array([[1, 32]])))
    with pytest.raises(ValueError, match=r"shape"):
        decoder.prefill(backend.asarray(np.array([[1, 2, 3]])))
    decoder.prefill(backend.asarray(np.array([[1, 2]])))
    with pytest.raises(ValueError, match=r"0\.\.31"):
        decoder.step(backend.asarray(np.array([-1])))
    with pytest.raises(ValueError, match=r"shape"):
        decoder.step(backend.asarray(np.array([1, 2])))
    assert decoder.step(backend.asarray(np.array([31]))).shape == (1, 32)


# ---------------------------------------------------------------------- stop token
# On JAX each segment of the open-ended convolution compiles its own kernels: naive and
# deadline there run in ``nox -s tests_deep`` (the code path is every schedule's).
@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param(s, marks=pytest.mark.slow_on("jax")) if s in ("naive", "deadline") else s
        for s in SCHEDULES
    ],
)
def test_generation_stops_at_the_stop_token(
    backend: futurefill.executor.Executor, schedule: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens up to the last row's stop token equal those of a full generation; rows that
    stopped earlier are padded; the open-ended convolution crosses segments on the way."""
    from futurefill import open_length

    monkeypatch.setattr(open_length, "FIRST_SEGMENT", 8)
    model = small_model("hyena", max_len=128)
    prompt = np.array([[5, 6, 7], [1, 2, 3]])
    full = model.generate(prompt, 100, schedule=schedule, backend="numpy")
    # a token both rows produce, the latest first appearance (to cross a few segments)
    both = [tok for tok in range(32) if all((full[r] == tok).any() for r in range(2))]
    assert both, "the random model must produce a token in both rows"
    late = max(both, key=lambda tok: max(_first(full[r], tok) for r in range(2)))
    stops = [_first(full[r], late) for r in range(2)]
    tokens, logits = model.generate(
        prompt, 100, schedule=schedule, backend=backend, stop_token=late, return_logits=True
    )
    n = max(stops) + 1
    assert tokens.shape == (2, n) and logits.shape[:2] == (2, n)
    for r, stop in enumerate(stops):
        np.testing.assert_array_equal(tokens[r, : stop + 1], full[r, : stop + 1])
        assert (tokens[r, stop:] == late).all()
    seq = full_sequence(prompt, full[:, :n], model.config.bos)
    ref = np.asarray(model.forward(seq, backend="numpy"))[:, 2:]
    row = int(np.argmax(stops))  # the row that ran to the end: its logits are the forward's
    err = np.abs(logits[row] - ref[row]).max() / np.abs(ref[row]).max()
    assert err <= RTOL


def _first(tokens: np.ndarray, token: int) -> int:
    hits = np.flatnonzero(tokens == token)
    return int(hits[0]) if hits.size else len(tokens)


def test_stop_token_is_checked(model: ConvLM) -> None:
    with pytest.raises(ValueError, match="stop_token"):
        model.generate([1], 3, stop_token=32)
    with pytest.raises(ValueError, match="stop_token"):
        GenerationOptions(stop_token=-1)
