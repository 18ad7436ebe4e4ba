"""Choosing one sequence's next token on the host: greedy, or seeded temperature / top-k.

The draws are those of :func:`futurefill.models.generate` for a batch of one: Gumbel-max
sampling of ``logits / temperature`` with one ``gumbel(size=(1, V))`` draw of the sequence's
own NumPy generator per token, so a request served among others samples the tokens it would
sample alone with the same seed. Top-k keeps the ``k`` largest logits (the draw is made for
every token all the same, so the generator advances as without top-k).
"""

from __future__ import annotations

import numpy as np

__all__ = ["choose_token"]


def choose_token(
    logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator
) -> int:
    """The next token from one sequence's ``logits`` ``(V,)``.

    Parameters
    ----------
    logits : ndarray, shape (V,)
    temperature : float
        0: greedy (``argmax``; ``rng`` is not used).
    top_k : int or None
        Sample among the ``top_k`` largest logits only (with ``temperature > 0``).
    rng : numpy.random.Generator
        The sequence's own generator.
    """
    if temperature == 0:
        return int(np.argmax(logits))
    scores = logits / temperature + rng.gumbel(size=(1, logits.shape[-1]))[0]
    if top_k is not None and top_k < logits.shape[-1]:
        keep = np.argpartition(logits, logits.shape[-1] - top_k)[-top_k:]
        return int(keep[np.argmax(scores[keep])])
    return int(np.argmax(scores))
