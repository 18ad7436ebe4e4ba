"""The registry of the reference models' sequence mixers.

The interface is :class:`Mixer` (:mod:`futurefill.models.mixer_base`); the mixers are STU-T
and the full STU (:mod:`futurefill.models.stu`) and a Hyena-style mixer
(:mod:`futurefill.models.hyena`).
"""

from __future__ import annotations

from .hyena import HyenaMixer
from .mixer_base import Mixer, State, Weights
from .stu import FullSTUMixer, STUMixer

__all__ = ["FullSTUMixer", "HyenaMixer", "Mixer", "STUMixer", "State", "Weights", "get_mixer"]

_MIXERS: dict[str, Mixer] = {m.name: m for m in (STUMixer(), FullSTUMixer(), HyenaMixer())}


def get_mixer(name: str) -> Mixer:
    """The mixer called ``name`` (``"stu"``, ``"stu_full"`` or ``"hyena"``)."""
    try:
        return _MIXERS[name]
    except KeyError:
        raise ValueError(f"unknown mixer {name!r}; choose one of {sorted(_MIXERS)}") from None
