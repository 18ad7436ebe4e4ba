"""What a server is asked and what it answers: :class:`Request`, :class:`RequestResult`, and
the clock of a replay (:class:`ReplayClock`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import check_int, check_real
from .decode import online_steps

__all__ = ["ReplayClock", "Request", "RequestResult"]


@dataclass(frozen=True, eq=False)
class Request:
    """One generation request (checked when built; against the model when submitted).

    Attributes
    ----------
    prompt : sequence of int or None
        Prompt token ids (stored as a read-only int64 array). Empty (or None): start from the
        model's ``bos`` token without a prompt, as ``generate(None, ...)`` does.
    max_new_tokens : int or None
        Tokens to generate (fewer if ``stop_token`` comes first); ``None``: as many as the
        model's ``max_len`` allows (see :meth:`within`), the server sets the number.
    stop_token : int, optional
        The request ends once it produced this token (the stop token is its last).
    temperature : float
        0 for greedy decoding; otherwise Gumbel-max sampling of ``logits / temperature``, as
        :class:`~futurefill.models.GenerationOptions` describes.
    top_k : int, optional
        Sample among the ``top_k`` largest logits only (needs ``temperature > 0``).
    seed : int, optional
        Seed of the request's own sampling generator.
    arrival : float, optional
        When the request arrives, in seconds on the server's clock (:func:`serve` replays
        requests at their arrival); ``None``: when it is submitted.
    return_logits : bool
        Keep the logits each token was chosen from (:attr:`RequestResult.logits`).

    Examples
    --------
    >>> from futurefill.models import Request
    >>> request = Request([1, 2, 3], max_new_tokens=4)
    >>> request.prompt_len, request.online_steps  # the last prompt position gives token 1
    (3, 3)
    >>> Request([1, 2], top_k=5)
    Traceback (most recent call last):
    ...
    ValueError: top_k needs temperature > 0 (greedy decoding takes the top 1)
    >>> Request([1, 2, 3], None, stop_token=0).within(16).max_new_tokens  # until the stop token
    14
    """

    prompt: Any = ()
    max_new_tokens: int | None = 16
    stop_token: int | None = None
    temperature: float = 0.0
    top_k: int | None = None
    seed: int | None = None
    arrival: float | None = None
    return_logits: bool = False

    def __post_init__(self) -> None:
        prompt = np.asarray(() if self.prompt is None else self.prompt)
        if prompt.ndim != 1:
            raise ValueError(
                f"prompt must be a 1-D sequence of token ids, got shape {prompt.shape}"
            )
        if prompt.size and prompt.dtype.kind not in "iu":
            raise TypeError(f"prompt must hold integer token ids, got dtype {prompt.dtype}")
        prompt = prompt.astype(np.int64)
        if prompt.size and int(prompt.min()) < 0:
            raise ValueError(f"prompt token ids must be >= 0, got {int(prompt.min())}")
        prompt.flags.writeable = False
        object.__setattr__(self, "prompt", prompt)
        if self.max_new_tokens is not None:
            object.__setattr__(
                self, "max_new_tokens", check_int("max_new_tokens", self.max_new_tokens, 1)
            )
        for name in ("stop_token", "seed"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_int(name, getattr(self, name), 0))
        object.__setattr__(self, "temperature", check_real("temperature", self.temperature))
        if self.top_k is not None:
            object.__setattr__(self, "top_k", check_int("top_k", self.top_k, 1))
            if self.temperature == 0:
                raise ValueError("top_k needs temperature > 0 (greedy decoding takes the top 1)")
        if self.arrival is not None:
            object.__setattr__(self, "arrival", check_real("arrival", self.arrival))
        if not isinstance(self.return_logits, bool):
            raise TypeError(f"return_logits must be a bool, got {self.return_logits!r}")

    @property
    def prompt_len(self) -> int:
        """Number of prompt tokens."""
        return int(self.prompt.size)

    @property
    def new_tokens(self) -> int:
        """``max_new_tokens``, which a request without one has only once :meth:`within` gave
        it its number."""
        if self.max_new_tokens is None:
            raise ValueError(
                "a request with max_new_tokens=None has no length until a model's max_len "
                "bounds it: Request.within(max_len)"
            )
        return self.max_new_tokens

    @property
    def online_steps(self) -> int:
        """Positions the request runs one at a time (see
        :func:`~futurefill.models.decode.online_steps`; needs :attr:`new_tokens`)."""
        return online_steps(self.prompt_len, self.new_tokens)

    def within(self, max_len: int) -> Request:
        """This request, with ``max_new_tokens=None`` replaced by the most tokens a model of
        ``max_len`` positions gives after its prompt (the request itself otherwise).

        Raises
        ------
        ValueError
            If the prompt leaves no new token.
        """
        if self.max_new_tokens is not None:
            return self
        # the last prompt position gives the first token, which is fed unless it is the last
        most = max_len - self.prompt_len + 1 if self.prompt_len else max_len
        if most < 1:
            raise ValueError(
                f"a prompt of {self.prompt_len} tokens leaves no new token within the model's "
                f"max_len = {max_len}"
            )
        return dataclasses.replace(self, max_new_tokens=most)


@dataclass(frozen=True)
class RequestResult:
    """What one request produced, and when (seconds on the server's clock).

    Attributes
    ----------
    request : Request
    tokens : ndarray of int64, shape (n,)
        The generated tokens (``n <= max_new_tokens``; the last is the stop token if it came).
    arrival, admitted, finish : float
        When the request arrived, got a slot (its prefill started), and produced its last
        token.
    token_times : ndarray of float64, shape (n,)
        When each token was produced.
    logits : ndarray, shape (n, V), or None
        With ``Request(return_logits=True)``: the logits each token was chosen from.

    Examples
    --------
    >>> from futurefill.models import ConvLM, Request, serve
    >>> model = ConvLM(mixer="hyena", dim=8, layers=1, max_len=32, vocab_size=16)
    >>> [result] = serve(model, [Request([1, 2, 3], 4, arrival=0.5)], backend="numpy")
    >>> result.tokens.tolist() == model.generate([1, 2, 3], 4, backend="numpy")[0].tolist()
    True
    >>> result.arrival, result.token_latencies.shape, result.time_to_first_token > 0
    (0.5, (3,), True)
    """

    request: Request
    tokens: np.ndarray
    arrival: float
    admitted: float
    finish: float
    token_times: np.ndarray
    logits: np.ndarray | None = None

    @property
    def first_token(self) -> float:
        """When the first token was produced."""
        return float(self.token_times[0])

    @property
    def time_to_first_token(self) -> float:
        """Seconds from arrival to the first token (queueing and prefill included)."""
        return self.first_token - self.arrival

    @property
    def token_latencies(self) -> np.ndarray:
        """Seconds between consecutive tokens, shape ``(n - 1,)``."""
        return np.diff(self.token_times)


class ReplayClock:
    """Seconds since creation, where waiting for the next arrival costs no real time.

    :meth:`skip_to` moves the clock forward to a later time at once: replaying a trace, an idle
    server jumps to the next arrival instead of sleeping; all other time is measured.

    Parameters
    ----------
    timer : callable
        The seconds measured: :func:`time.perf_counter` (wall clock) by default;
        :func:`time.process_time` counts this process's CPU time instead (on a shared CPU, the
        time the work took without the waits for a core; meaningful for a single-threaded
        process on a CPU backend only).

    Examples
    --------
    On a timer that stands still, only :meth:`skip_to` moves the clock:

    >>> from futurefill.models import ReplayClock
    >>> now = [100.0]
    >>> clock = ReplayClock(timer=lambda: now[0])
    >>> now[0] += 1.5
    >>> clock()
    1.5
    >>> clock.skip_to(10.0)  # waiting for an arrival at 10 s costs no time
    >>> clock()
    10.0
    """

    def __init__(self, timer: Callable[[], float] = time.perf_counter) -> None:
        self._timer = timer
        self._start = timer()

    def __call__(self) -> float:
        """The time now."""
        return self._timer() - self._start

    def restart(self) -> None:
        """Start again from 0 now.

        Examples
        --------
        >>> from futurefill.models import ReplayClock
        >>> clock = ReplayClock(timer=lambda: 7.0)
        >>> clock.skip_to(3.0)
        >>> clock.restart()
        >>> clock()
        0.0
        """
        self._start = self._timer()

    def skip_to(self, when: float) -> None:
        """Move the clock to ``when`` if that is later than now.

        Examples
        --------
        >>> from futurefill.models import ReplayClock
        >>> clock = ReplayClock(timer=lambda: 7.0)
        >>> clock.skip_to(3.0)
        >>> clock.skip_to(1.0)  # earlier than now: nothing changes
        >>> clock()
        3.0
        """
        ahead = when - self()
        if ahead > 0:
            self._start -= ahead
