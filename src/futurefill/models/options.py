"""The options of a generation, as one value: what ``ConvLM.generate`` forwards to the decoder."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._checks import check_int, check_real
from ..executor import Executor
from ..plan import PlanSpec

__all__ = ["GenerationOptions"]


@dataclass(frozen=True)
class GenerationOptions:
    """How to generate: schedule, sampling, backend and batch (checked when built).

    :meth:`futurefill.models.ConvLM.generate` and
    :meth:`~futurefill.models.ConvLM.decode_state_size` take these fields as keyword
    arguments, or a whole ``GenerationOptions`` (then keywords override its fields); they are
    documented here once.

    Attributes
    ----------
    schedule : str or PlanSpec
        Online convolution schedule and its parameters (``"naive"`` keeps every input: the
        baseline); see :func:`futurefill.make_plan`.
    temperature : float
        0 for greedy decoding; otherwise Gumbel-max sampling of ``logits / temperature`` with
        NumPy's generator seeded by ``seed`` (on the host, so the draws are the same for every
        schedule and backend).
    seed : int, optional
        Seed of the sampling.
    backend : str or Executor, optional
        Backend; the one in force by default.
    batch : int, optional
        Number of sequences without a prompt (1 by default); with a prompt it must equal the
        prompt's rows.
    return_logits : bool
        Also return the logits each new token was chosen from.
    stop_token : int, optional
        End-of-sequence token id: generation stops once every sequence has produced it
        (sequences that stopped earlier are padded with it), so fewer than ``max_new_tokens``
        may be returned. The online convolution is then open-ended (its plan grows in
        segments as tokens come), so the work done is that of the tokens generated. Runs the
        stepwise decoder (not a compiled whole-loop program).

    Examples
    --------
    >>> from futurefill.models import GenerationOptions
    >>> sampled = GenerationOptions(temperature=0.8, seed=1)
    >>> GenerationOptions.build(sampled, {"schedule": "naive"}).schedule
    'naive'
    """

    schedule: str | PlanSpec = "continuous"
    temperature: float = 0.0
    seed: int | None = None
    backend: str | Executor | None = None
    batch: int | None = None
    return_logits: bool = False
    stop_token: int | None = None

    def __post_init__(self) -> None:
        check_real("temperature", self.temperature)
        if self.seed is not None:
            check_int("seed", self.seed, 0)
        if self.batch is not None:
            check_int("batch", self.batch, 1)
        if self.stop_token is not None:
            check_int("stop_token", self.stop_token, 0)
        if not isinstance(self.return_logits, bool):
            raise TypeError(f"return_logits must be a bool, got {self.return_logits!r}")

    @classmethod
    def build(
        cls, options: GenerationOptions | None = None, overrides: Mapping[str, Any] | None = None
    ) -> GenerationOptions:
        """``options`` (the defaults if None) with the fields in ``overrides`` replaced.

        Raises
        ------
        TypeError
            For a key that is not a field (``unexpected keyword argument``).
        """
        base = cls() if options is None else options
        if not isinstance(base, cls):
            raise TypeError(f"options must be a GenerationOptions, got {type(base).__name__}")
        return dataclasses.replace(base, **overrides) if overrides else base
