"""The GPU table (:mod:`futurefill.measure.gpu_table`) as Markdown and as plain data."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from .gpu_table import LayerRow, ModelRow

__all__ = ["LAYER_HEADERS", "MODEL_HEADERS", "as_json", "markdown"]


def as_json(layers: Sequence[LayerRow], models: Sequence[ModelRow]) -> dict[str, Any]:
    """The table as plain data: ``{"layer": [...], "model": [...]}``."""
    return {"layer": [asdict(r) for r in layers], "model": [asdict(r) for r in models]}


def _cell(value: Any, spec: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return format(value, spec)


def _mib(nbytes: int | None) -> str:
    return _cell(None if nbytes is None else nbytes / 2**20, ".1f")


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


LAYER_HEADERS = (
    "backend", "D", "L", "method", "µs/token", "x naive", "/ floor", "peak MiB",
    "end µs/token", "note",
)  # fmt: skip
MODEL_HEADERS = (
    "backend", "model", "new tokens", "schedule", "total s", "long conv s", "rest s",
    "speedup", "ceiling", "identical", "peak MiB", "untimed s", "untimed speedup", "note",
)  # fmt: skip


def markdown(layers: Sequence[LayerRow], models: Sequence[ModelRow]) -> str:
    """The table in Markdown: the layer rows, then the model rows, each with a legend."""
    layer = _table(
        LAYER_HEADERS,
        (
            (
                r.backend,
                str(r.channels),
                str(r.length),
                r.method,
                _cell(r.us_per_token, ".2f"),
                _cell(r.vs_naive, ".1f"),
                _cell(r.vs_floor, ".1f"),
                _mib(r.peak_bytes),
                _cell(r.end_us_per_token, ".2f"),
                r.note,
            )
            for r in layers
        ),
    )
    model = _table(
        MODEL_HEADERS,
        (
            (
                r.backend,
                r.model,
                str(r.new_tokens),
                r.schedule,
                _cell(r.seconds, ".2f"),
                _cell(r.long_conv, ".2f"),
                _cell(r.rest, ".2f"),
                _cell(r.speedup, ".2f"),
                _cell(r.ceiling, ".2f"),
                _cell(r.identical),
                _mib(r.peak_bytes),
                _cell(r.untimed, ".2f"),
                _cell(r.untimed_speedup, ".2f"),
                r.note,
            )
            for r in models
        ),
    )
    return "\n".join(
        [
            "## One layer (feedback u[t+1] = tanh(y[t]))",
            "",
            *layer,
            "",
            "x naive: naive's time over the method's; / floor: the method's time over the "
            "offline FFT convolution of the whole sequence; peak MiB: device memory while it "
            "ran (— where the device has no statistics); end µs/token: a windowed naive row's "
            "time per step at the last positions.",
            "",
            "## Models, end to end (greedy, from the start token)",
            "",
            *model,
            "",
            "long conv: emit + advance (synchronised); rest: the generation without it; "
            "speedup: naive's total over this one's; ceiling: naive's total over this one's "
            "rest (Amdahl); untimed s (with --untimed): the same generation not timed layer by "
            "layer (no synchronisation inside a step; the executor's captured token steps "
            "where it has them), untimed speedup: naive's over this one's.",
            "",
        ]
    )
