"""The position pass of a server's stepped slots as compiled programs.

Eagerly, one position of the network is about fifteen array operations per layer plus a
gather and a scatter of every mixer state; on a backend that dispatches each operation
separately (JAX outside ``jit``) that dispatch, not the arithmetic, sets the cost of a
serving step, and every new number of stepped slots compiles each operation again. Where the
executor compiles functions (:meth:`futurefill.executor.Executor.compile_function`), a
:class:`CompiledRows` runs the same functions as :func:`~futurefill.models.network.position_pass`
as five programs: the embedding; per layer, the gather of the stepped slots' mixer states
and the work before the long convolution; per layer, the work after it; the head; and, once
the caller has advanced the pool, the scatter of every layer's new states (the state arrays
donated: updated in place), so that a step that fails leaves the states as they were. The
long convolution between them is the pool's :meth:`~futurefill.StreamPool.emit`.

The stepped rows are padded to the next power of two (1, 2, 4, ...) with copies of the first,
as serving engines pad batches to captured sizes, so that programs exist per padded count
only (and are shared by every layer of equal shapes and by every server of the same model
family in the process); the pool sees the real rows alone, and a padding row computes what
the first row computes, so the scatter writes the same values twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_extra as xpx
import numpy as np

from ..executor import Executor
from .mixer_base import Mixer, State
from .network import BackendWeights, PassPrograms, layer_position_inputs
from .slot_states import SlotStates

__all__ = ["CompiledRows"]

Array = Any


def _padded(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class _Programs:
    """The compiled programs of one mixer, norm epsilon and executor."""

    def __init__(self, mixer: Mixer, eps: float, executor: Executor) -> None:
        xp = executor.xp

        def before(
            lw: dict[str, Array], x: Array, layer: State, rows: Array
        ) -> tuple[Array, Array, State]:
            state = tuple(xp.take(a, rows, axis=0) for a in layer)
            return layer_position_inputs(mixer, eps, xp, lw, x, state)

        def store(arrays: list[State], rows: Array, states: list[State]) -> list[State]:
            return [
                tuple(xpx.at(a)[rows, ...].set(s) for a, s in zip(old, new, strict=True))
                for old, new in zip(arrays, states, strict=True)
            ]

        def compiled(fn: Callable[..., Any], donate: tuple[int, ...] = ()) -> Callable[..., Any]:
            program = executor.compile_function(fn, donate=donate)
            if program is None:
                raise ValueError(f"backend {executor.name!r} does not compile functions")
            return program

        #: A prompt's pass (:func:`~futurefill.models.network.sequence_pass`), compiled per
        #: sequence length, and a lock-step position (:func:`~.network.position_pass`).
        self.sequence = PassPrograms.for_sequences(mixer, eps, xp).compiled(compiled)
        self.position = PassPrograms.for_positions(mixer, eps, xp).compiled(compiled)
        #: The gather of the stepped rows' states with the position's inputs, and the scatter
        #: of the new states (the rest of a row step is ``position``'s).
        self.before = compiled(before)
        self.store = compiled(store, donate=(0,))


#: The programs of each (mixer, norm epsilon, executor) met: shared by every server of the
#: process, so that a new server compiles nothing a former one compiled.
_CACHE: dict[tuple[int, int, float], tuple[Mixer, Executor, _Programs]] = {}


def _programs(mixer: Mixer, eps: float, executor: Executor) -> _Programs:
    key = (id(mixer), id(executor), eps)
    held = _CACHE.get(key)
    if held is None or held[0] is not mixer or held[1] is not executor:
        held = _CACHE[key] = (mixer, executor, _Programs(mixer, eps, executor))
    return held[2]


class CompiledRows:
    """The network's position pass over some slots of a :class:`SlotStates`, compiled.

    Parameters
    ----------
    weights : BackendWeights
        The model's weights on ``executor``.
    executor : Executor
        A backend whose :meth:`~futurefill.executor.Executor.compile_function` compiles
        (otherwise ``ValueError``; see :meth:`available`).
    """

    def __init__(self, weights: BackendWeights, executor: Executor) -> None:
        self.weights = weights
        self.executor = executor
        self._programs = _programs(weights.mixer, float(weights.cfg.norm_eps), executor)

    @property
    def sequence(self) -> PassPrograms:
        """The position-wise work of a prompt's pass as programs (one set per sequence length
        met: a prompt's pass is not padded, since its mixer states are those after its last
        real position)."""
        return self._programs.sequence

    @property
    def position(self) -> PassPrograms:
        """The position-wise work of a lock-step position (every row of a batch steps: no
        gather, no padding), as programs per batch size."""
        return self._programs.position

    @staticmethod
    def available(executor: Executor) -> bool:
        """Whether ``executor`` compiles functions (a :class:`CompiledRows` can run on it)."""
        return executor.compile_function(lambda x: x) is not None

    def __call__(
        self,
        tokens: np.ndarray,
        rows: np.ndarray,
        states: SlotStates,
        long_conv: Callable[[int, Array], Array],
    ) -> tuple[Array, Callable[[], None]]:
        """One position of the sequences in slot ``rows``.

        Parameters
        ----------
        tokens : ndarray of int, shape (n,)
            Each row's input token.
        rows : ndarray of int, shape (n,)
            Distinct rows of ``states`` (the stepped slots).
        states : SlotStates
            Every slot's mixer states (already holding those of ``rows``); only read.
        long_conv : callable
            ``long_conv(layer, u)``: the online convolution output ``(n, C_layer)`` of that
            layer's inputs ``u`` ``(n, C_layer)`` (the pool's ``emit``).

        Returns
        -------
        logits : array, shape (n, V)
        store : callable
            ``store()`` writes the mixer states after this position into ``states`` (call it
            once the step is accepted, as :func:`~futurefill.models.network.position_pass`'s
            caller stores the states it returns).
        """
        n = int(rows.size)
        size = _padded(n)
        ex, w, p = self.executor, self.weights, self._programs
        pad = np.zeros(size - n, np.int64)
        padded_rows = ex.asarray(np.concatenate([rows, rows[pad]]).astype(np.int64))
        x = p.position.enter(w.top["embed"], ex.asarray(np.concatenate([tokens, tokens[pad]])))
        new: list[State] = []
        for i, lw in enumerate(w.layers):
            u, aux, state = p.before(lw, x, states.layer(i), padded_rows)
            y = long_conv(i, u if size == n else u[:n, ...])
            if size != n:  # the padding rows copy the first: so do their outputs
                fill = ex.xp.broadcast_to(y[:1, ...], (size - n, *y.shape[1:]))
                y = ex.xp.concat([y, fill], axis=0)
            x = p.position.outputs(lw, x, y, u, aux)
            new.append(state)
        logits = p.position.head(w.top, x)

        def store() -> None:
            arrays = [states.layer(i) for i in range(len(new))]
            states.replace_layers(p.store(arrays, padded_rows, new))

        return (logits if size == n else logits[:n, ...]), store
