"""The STU mixers (:mod:`futurefill.models.stu`) against their definitions, written out here.

Every layer is checked against an independent reference built with ``numpy.convolve`` and the
sign flips of the definition, in float64. The reference sums directly, the layer by FFT (or by
an online schedule), so they differ by rounding only: relative to the largest output, ~1e-16
per FFT level and ~1e-16 * sqrt(2 K D) through the projections; 1e-12 leaves three orders of
magnitude. A wrong sign, filter or channel order changes outputs by O(1).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import futurefill
from futurefill import OnlineConv
from futurefill.filters import stu_filters
from futurefill.models import ConvLM, ModelConfig
from futurefill.models.mixers import get_mixer
from futurefill.models.params import init_params
from futurefill.models.stu import alternating_sign

from .conftest import decaying_filters, oracle, run_online

RTOL = 1e-12
SCHEDULES = ("naive", "epoched", "continuous")
OPTIONS = [(b, h) for b in ("both", "plus") for h in ("standard", "L")]


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def alt(x: np.ndarray) -> np.ndarray:
    """``(-1)^t x[..., t]`` along the last axis."""
    return x * (-1.0) ** np.arange(x.shape[-1])


def conv_by_definition(x: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``(phi * x)[t] = sum_{s <= t} phi[t - s] x[s]`` over the last axis of ``x`` (T,)."""
    return np.convolve(x, phi)[: x.shape[-1]]


def full_stu_by_definition(
    h: np.ndarray, phi: np.ndarray, m_plus: np.ndarray, m_minus: np.ndarray | None
) -> np.ndarray:
    """The full STU layer ``(B, T, D) -> (B, T, D)``: both branches written out, loop by loop."""
    B, T, D = h.shape
    y = np.zeros((B, T, m_plus.shape[-1]))
    for b in range(B):
        for k in range(phi.shape[0]):
            for d in range(D):
                plus = conv_by_definition(h[b, :, d], phi[k])
                y[b] += plus[:, None] * m_plus[k, d][None, :]
                if m_minus is not None:
                    minus = alt(conv_by_definition(alt(h[b, :, d]), phi[k]))
                    y[b] += minus[:, None] * m_minus[k, d][None, :]
    return y


def stu_t_by_definition(
    h: np.ndarray, phi: np.ndarray, m_in: np.ndarray, m_filt: np.ndarray, both: bool
) -> np.ndarray:
    """STU-T: ``x~ = h M_in``, ``phi~ = Phi^T M_filt``; ``x~ * phi~`` (+ the negative branch)."""
    x = h @ m_in
    projected = m_filt.T @ phi  # (D, N)
    y = np.zeros_like(x)
    for b in range(x.shape[0]):
        for d in range(x.shape[2]):
            y[b, :, d] = conv_by_definition(x[b, :, d], projected[d])
            if both:
                y[b, :, d] += alt(conv_by_definition(alt(x[b, :, d]), projected[d]))
    return y


def layer_setup(mixer: str, branches: str, hankel: str, max_len: int = 40):
    cfg = ModelConfig(
        mixer=mixer, dim=3, layers=1, vocab_size=4, max_len=max_len, stu_k=4, seed=1,
        stu_branches=branches, stu_hankel=hankel,
    )  # fmt: skip
    mx = get_mixer(mixer)
    w = {k.removeprefix("layers.0."): v for k, v in init_params(cfg).items() if "mixer." in k}
    return cfg, mx, w


def sequence_layer(mx, w, filters: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The mixer on a whole sequence, its long convolution offline (FFT)."""
    xp = futurefill.get_backend("numpy").xp
    u, aux, _ = mx.sequence_inputs(w, h, xp)
    y = np.transpose(futurefill.causal_conv(np.transpose(u, (0, 2, 1)), filters), (0, 2, 1))
    return np.asarray(mx.outputs(w, y, u, aux, xp))


# ---------------------------------------------------------------------- definitions
@pytest.mark.parametrize(("branches", "hankel"), OPTIONS)
def test_full_stu_layer_is_its_definition(branches: str, hankel: str) -> None:
    cfg, mx, w = layer_setup("stu_full", branches, hankel)
    h = np.random.default_rng(0).standard_normal((2, cfg.max_len, cfg.dim))
    phi = stu_filters(cfg.max_len, cfg.stu_k, hankel=hankel)
    want = full_stu_by_definition(h, phi, w["mixer.m_plus"], w.get("mixer.m_minus"))
    got = sequence_layer(mx, w, mx.long_filters(cfg, w), h)
    assert relative_error(got, want) <= RTOL
    assert ("mixer.m_minus" in w) == (branches == "both")


@pytest.mark.parametrize(("branches", "hankel"), OPTIONS)
def test_stu_t_layer_is_its_definition(branches: str, hankel: str) -> None:
    cfg, mx, w = layer_setup("stu", branches, hankel)
    h = np.random.default_rng(1).standard_normal((2, cfg.max_len, cfg.dim))
    phi = stu_filters(cfg.max_len, cfg.stu_k, hankel=hankel)
    want = stu_t_by_definition(h, phi, w["mixer.m_in"], w["mixer.m_filt"], both=branches == "both")
    got = sequence_layer(mx, w, mx.long_filters(cfg, w), h)
    assert relative_error(got, want) <= RTOL


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prompt", [0, 5, 6])
@pytest.mark.parametrize("branches", ["both", "plus"])
def test_full_stu_layer_streams_its_definition(schedule: str, prompt: int, branches: str) -> None:
    # Prompt by prefill, then one position at a time with the mixer's sign state; an odd
    # prompt starts the online part at an odd position.
    cfg, mx, w = layer_setup("stu_full", branches, "standard")
    xp = futurefill.get_backend("numpy").xp
    T = cfg.max_len
    h = np.random.default_rng(2).standard_normal((2, T, cfg.dim))
    conv = OnlineConv(
        mx.long_filters(cfg, w), T - prompt, schedule=schedule, prompt=prompt, batch=2
    )
    outputs = []
    state = mx.initial_state(w, 2, xp, "cpu")
    if prompt:
        u, aux, state = mx.sequence_inputs(w, h[:, :prompt], xp)
        y = np.transpose(conv.prefill(np.ascontiguousarray(np.transpose(u, (0, 2, 1)))), (0, 2, 1))
        outputs.append(mx.outputs(w, y, u, aux, xp))
    for t in range(prompt, T):
        u, aux, state = mx.position_inputs(w, h[:, t], state, xp)
        outputs.append(mx.outputs(w, conv.step(u), u, aux, xp)[:, None, :])
    got = np.concatenate(outputs, axis=1)
    phi = stu_filters(T, cfg.stu_k)
    want = full_stu_by_definition(h, phi, w["mixer.m_plus"], w.get("mixer.m_minus"))
    assert relative_error(got, want) <= RTOL


# ---------------------------------------------------------------------- the negative branch
def test_negative_branch_is_a_causal_convolution() -> None:
    # (-1)^t (phi * alt(u))[t] = (alt(phi) * u)[t]: sign flips on input and output amount to
    # convolving with the sign-alternated filter, so the branch is causal and time-invariant.
    rng = np.random.default_rng(3)
    u, phi = rng.standard_normal(50), rng.standard_normal(50)
    np.testing.assert_allclose(
        alt(conv_by_definition(alt(u), phi)), conv_by_definition(u, alt(phi)), rtol=0, atol=1e-13
    )


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prompt", [0, 7])
def test_negative_branch_needs_no_schedule_of_its_own(
    backend: futurefill.executor.Executor, rng: np.random.Generator, schedule: str, prompt: int
) -> None:
    # The negative branch runs as ordinary channels of the same OnlineConv, with the *same*
    # filters as the positive one: only its inputs and outputs are multiplied by (-1)^t.
    B, C, L = 2, 3, 40
    phi = decaying_filters(rng, C, prompt + L)
    u = rng.standard_normal((B, C, prompt + L))
    conv = OnlineConv(
        np.concatenate([phi, phi]), L, schedule=schedule, prompt=prompt, batch=B,
        backend=backend, dtype="float64",
    )  # fmt: skip
    out = run_online(conv, np.concatenate([u, alt(u)], axis=1))
    assert relative_error(out[:, :C], oracle(u, phi)) <= RTOL
    assert relative_error(alt(out[:, C:]), oracle(u, alt(phi))) <= RTOL


def test_full_stu_channels_share_the_spectral_filters() -> None:
    model = ConvLM(mixer="stu_full", dim=3, layers=2, vocab_size=8, max_len=32, stu_k=4)
    phi = stu_filters(32, 4)
    KD = 4 * 3
    for filters in model.host_filters():
        assert filters.shape == (2 * KD, 32)
        np.testing.assert_array_equal(filters[KD:], filters[:KD])  # same filters, both branches
        np.testing.assert_array_equal(filters[:KD], np.repeat(phi, 3, axis=0))  # k * D + d


def test_hankel_l_negative_branch_repeats_the_positive_one() -> None:
    # Z_L filters vanish at every other lag, so alt(phi) = +-phi: with both branches the full
    # STU is the positive branch alone with M+ +- M- (why the authors use Z_L with "plus").
    cfg, mx, w = layer_setup("stu_full", "both", "L")
    phi = stu_filters(cfg.max_len, cfg.stu_k, hankel="L")
    signs = np.where(np.abs(phi[:, 1::2]).max(axis=1) == 0, 1.0, -1.0)  # even: +1, odd: -1
    merged = {"mixer.m_plus": w["mixer.m_plus"] + signs[:, None, None] * w["mixer.m_minus"]}
    h = np.random.default_rng(4).standard_normal((1, cfg.max_len, cfg.dim))
    both = sequence_layer(mx, w, mx.long_filters(cfg, w), h)
    plus_cfg = ModelConfig(**{**json.loads(cfg.to_json()), "stu_branches": "plus"})
    plus = sequence_layer(mx, merged, mx.long_filters(plus_cfg, merged), h)
    assert relative_error(plus, both) <= RTOL


def test_alternating_sign() -> None:
    xp = futurefill.get_backend("numpy").xp
    sign = alternating_sign(5, np.zeros(1, dtype=np.float32), xp)
    assert sign.shape == (5, 1) and sign.dtype == np.float32
    np.testing.assert_array_equal(sign[:, 0], [1, -1, 1, -1, 1])


# ---------------------------------------------------------------------- configuration
def test_stu_options_are_checked_and_round_trip() -> None:
    cfg = ModelConfig(mixer="stu_full", dim=4, max_len=16, stu_k=2, stu_hankel="L")
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    for field, bad in (("stu_branches", "minus"), ("stu_hankel", "l"), ("mixer", "stu-full")):
        with pytest.raises(ValueError, match=field):
            ModelConfig(**{field: bad})
    with pytest.raises(ValueError, match="stu_k"):
        ModelConfig(mixer="stu_full", stu_k=20, max_len=10)
    # A configuration written before these options existed reads as the defaults.
    old = json.loads(ModelConfig(dim=4, max_len=16, stu_k=2).to_json())
    del old["stu_branches"], old["stu_hankel"]
    cfg_old = ModelConfig.from_json(json.dumps(old))
    assert (cfg_old.stu_branches, cfg_old.stu_hankel) == ("both", "standard")


@pytest.mark.parametrize(("branches", "weights", "channels", "state"), [
    ("both", {"mixer.m_plus", "mixer.m_minus"}, 2 * 5 * 3, 1),
    ("plus", {"mixer.m_plus"}, 5 * 3, 0),
])  # fmt: skip
def test_full_stu_sizes(branches: str, weights: set, channels: int, state: int) -> None:
    cfg = ModelConfig(mixer="stu_full", dim=3, max_len=16, stu_k=5, stu_branches=branches)
    mx = get_mixer("stu_full")
    assert set(mx.shapes(cfg)) == weights
    assert all(shape == (5, 3, 3) for shape in mx.shapes(cfg).values())
    assert mx.long_channels(cfg) == channels
    assert mx.state_values(cfg, batch=7) == state  # the sign (-1)^t, whatever the batch


@pytest.mark.parametrize("mixer", ["stu", "stu_full"])
def test_float32_generation_matches_forward(
    backend: futurefill.executor.Executor, mixer: str
) -> None:
    # float32: the same comparison as in float64 at 2e-4 of the largest logit. The online and
    # offline convolutions round differently (~1e-7 relative per FFT level, ~log2(L) levels,
    # sums of 2 K D terms in the full STU's projections), and norms amplify it a little.
    model = ConvLM(
        mixer=mixer, dim=8, layers=2, vocab_size=32, stu_k=6, seed=6, max_len=96,
        dtype="float32",
    )  # fmt: skip
    prompt = np.arange(7) % 32
    tokens, logits = model.generate(prompt, 40, backend=backend, return_logits=True)
    seq = np.concatenate([prompt[None], tokens[:, :-1]], axis=1)
    ref = np.asarray(model.forward(seq, backend="numpy"), dtype=np.float64)[:, 6:]
    err = np.abs(logits - ref).max(axis=-1) / np.abs(ref).max(axis=-1)
    assert err.max() <= 2e-4, err.max()
