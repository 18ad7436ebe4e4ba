"""Size of the decode state of a generation, per component, computed from its plan."""

from __future__ import annotations

from dataclasses import dataclass

from .._registry import get_backend
from ..plan import make_plan, resolve_spec
from .config import ModelConfig
from .decode import DecodableModel, online_steps
from .mixers import get_mixer
from .options import GenerationOptions

__all__ = ["DecodeStateSize", "decode_state_size"]


@dataclass(frozen=True)
class DecodeStateSize:
    """Decode-state size of a model for one generation, in numbers of values (all layers).

    Attributes
    ----------
    conv_buffer : int
        The online convolution's buffer: kept inputs plus future contributions.
    window_taps : int
        Reversed taps of the directly summed local windows.
    short_conv : int
        State the mixers keep outside the long convolution (Hyena: the last two projected
        positions of its short convolution; the full STU with both branches: the sign
        ``(-1)^t`` of the position, one value per layer).
    spectra : int
        Precomputed filter spectra (complex values).
    naive_buffer : int
        What a naive cache holds: every input of every layer, ``B * C * (P + steps)``.
    layers : int
        Number of layers (for per-layer figures).
    channels_per_layer : int
        Long-convolution channels of one layer.
    plan_total, plan_buffer_length : int
        Positions of the plan and buffer slots per channel.

    Examples
    --------
    >>> from futurefill.models import ConvLM
    >>> model = ConvLM(mixer="hyena", dim=8, layers=2, max_len=64, vocab_size=16)
    >>> size = model.decode_state_size(16, 32, schedule="continuous")
    >>> size.conv_state == size.conv_buffer + size.window_taps + size.short_conv
    True
    >>> size.per_layer()["naive_buffer"] == size.naive_buffer / 2
    True
    """

    conv_buffer: int
    window_taps: int
    short_conv: int
    spectra: int
    naive_buffer: int
    layers: int
    channels_per_layer: int
    plan_total: int
    plan_buffer_length: int

    @property
    def conv_state(self) -> int:
        """Real values of the decode state excluding spectra (buffer + taps + short conv)."""
        return self.conv_buffer + self.window_taps + self.short_conv

    def per_layer(self) -> dict[str, float]:
        """Every component divided by the number of layers."""
        names = ("conv_buffer", "window_taps", "short_conv", "spectra", "naive_buffer")
        out = {k: getattr(self, k) / self.layers for k in names}
        out["conv_state"] = self.conv_state / self.layers
        return out

    def __str__(self) -> str:
        rows = self.per_layer()
        lines = [f"decode state per layer ({self.channels_per_layer} long-conv channels)"]
        for k in ("conv_buffer", "window_taps", "short_conv", "conv_state", "spectra"):
            unit = " (complex)" if k == "spectra" else ""
            lines.append(f"  {k:<14s}{rows[k]:>14,.0f}{unit}")
        lines.append(f"  {'naive (P+K)·C':<14s}{rows['naive_buffer']:>14,.0f}")
        return "\n".join(lines)


def decode_state_size(
    model: DecodableModel | ModelConfig,
    prompt_len: int,
    new_tokens: int,
    options: GenerationOptions | None = None,
) -> DecodeStateSize:
    """Size of the decode state of a generation, computed from the plan (nothing allocated).

    Equals what a :class:`~futurefill.models.Decoder` for the same generation holds
    (``Decoder.state_size``). Only the configuration is needed, so a :class:`ModelConfig` can
    stand for the model.

    Parameters
    ----------
    model : DecodableModel or ModelConfig
    prompt_len, new_tokens : int
        The generation's prompt length and new tokens.
    options : GenerationOptions, optional
        Its ``schedule``, ``batch`` (1 if None) and ``backend`` are read.

    Returns
    -------
    DecodeStateSize

    Examples
    --------
    What the decoder of the same generation holds, computed without building it:

    >>> from futurefill.models import ConvLM, Decoder, decode_state_size
    >>> model = ConvLM(mixer="hyena", dim=8, layers=1, max_len=32, vocab_size=16)
    >>> size = decode_state_size(model.config, 3, 4)
    >>> decoder = Decoder(model, prompt_len=3, steps=3)
    >>> _ = decoder.prefill([[1, 2, 3]])
    >>> held = decoder.state_size()
    >>> (held["conv_buffer"], held["window_taps"]) == (size.conv_buffer, size.window_taps)
    True
    """
    opts = GenerationOptions() if options is None else options
    batch = 1 if opts.batch is None else opts.batch
    cfg = model if isinstance(model, ModelConfig) else model.config
    mixer = get_mixer(cfg.mixer)
    steps = max(online_steps(prompt_len, new_tokens), 1)
    channels = mixer.long_channels(cfg) * cfg.layers
    ex = get_backend(opts.backend)
    spec = resolve_spec(
        opts.schedule, ex, batch=batch, channels=channels, dtype=ex.resolve_dtype(cfg.dtype)
    )
    plan = make_plan(steps, spec, prompt=prompt_len)
    mixer_state = mixer.state_values(cfg, batch) * cfg.layers
    return DecodeStateSize(
        conv_buffer=batch * channels * plan.buffer_length,
        window_taps=channels * plan.window_length,
        short_conv=mixer_state,
        spectra=channels * sum(key[2] // 2 + 1 for key in plan.spectrum_keys),
        naive_buffer=batch * channels * plan.total,
        layers=cfg.layers,
        channels_per_layer=channels // cfg.layers,
        plan_total=plan.total,
        plan_buffer_length=plan.buffer_length,
    )
