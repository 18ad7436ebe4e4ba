"""The network passes: a sequence run in chunks (continuing from the mixers' states) equals
the whole sequence at once.

Oracle: ``sequence_pass`` of the whole sequence (offline FFT convolution); the chunks' long
convolution is the exact convolution of all inputs so far (float64 FFT), as a pool's chunked
``prefill`` gives. Tolerance 1e-12 of the largest logit: the chunks compute the same sums,
with matrix products of other shapes (BLAS rounding, ~1e-16 per product) and FFTs of other
sizes.
"""

from __future__ import annotations

import numpy as np
import pytest

from futurefill import causal_conv, get_backend
from futurefill.models.network import sequence_pass

from .test_models import VARIANTS, small_model


@pytest.mark.parametrize("cuts", [(1,), (13, 14), (5, 6, 7, 30)], ids=str)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_sequence_in_chunks_equals_it_whole(variant: str, cuts: tuple[int, ...]) -> None:
    model = small_model(variant, max_len=64)
    w = model.backend_weights(get_backend("numpy"))
    tokens = np.random.default_rng(3).integers(0, 32, (2, 40))
    whole = sequence_pass(w, tokens)
    seen: dict[int, np.ndarray] = {}  # per layer, the long-convolution inputs so far

    def continuing(layer: int, u: np.ndarray) -> np.ndarray:
        before = seen.get(layer, u[..., :0])
        seen[layer] = np.concatenate([before, u], axis=-1)
        return causal_conv(seen[layer], w.filters[layer])[..., before.shape[-1] :]

    logits, states = [], None
    for a, b in zip((0, *cuts), (*cuts, 40), strict=True):
        chunk = sequence_pass(w, tokens[:, a:b], long_conv=continuing, states=states)
        logits.append(chunk.logits)
        states = chunk.states
    got = np.concatenate(logits, axis=1)
    scale = float(np.abs(whole.logits).max())
    np.testing.assert_allclose(got, whole.logits, rtol=0, atol=1e-12 * scale)
    for after, want in zip(states, whole.states, strict=True):
        for a, b in zip(after, want, strict=True):  # the states agree (shapes broadcast)
            np.testing.assert_allclose(*np.broadcast_arrays(a, b), rtol=0, atol=1e-12 * scale)


def test_continuing_needs_a_continuing_convolution() -> None:
    model = small_model("hyena", max_len=16)
    w = model.backend_weights(get_backend("numpy"))
    first = sequence_pass(w, np.ones((1, 4), np.int64))
    with pytest.raises(ValueError, match="long_conv"):
        sequence_pass(w, np.ones((1, 4), np.int64), states=first.states)
