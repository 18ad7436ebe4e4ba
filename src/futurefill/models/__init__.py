"""Reference convolutional language models (STU-T, full STU, Hyena-style) with exact generation.

>>> from futurefill.models import ConvLM
>>> model = ConvLM(mixer="stu", dim=16, layers=2, max_len=128, vocab_size=32, stu_k=8)
>>> model.generate(None, 4, schedule="continuous").shape
(1, 4)
>>> from futurefill.models import MAX_LEN_LIMIT, MIXERS
>>> model.config.mixer in MIXERS, MIXERS
(True, ('stu', 'stu_full', 'hyena'))
>>> MAX_LEN_LIMIT  # the largest max_len ConvLM.load accepts unless told otherwise
131072
"""

from .config import MIXERS, ModelConfig
from .decode import DecodableModel, Decoder, Generation, generate
from .lm import ConvLM
from .options import GenerationOptions
from .params import MAX_LEN_LIMIT, ModelFileError
from .requests import ReplayClock, Request, RequestResult
from .serving import Server, serve
from .state_size import DecodeStateSize, decode_state_size

__all__ = [
    "MAX_LEN_LIMIT",
    "MIXERS",
    "ConvLM",
    "DecodableModel",
    "DecodeStateSize",
    "Decoder",
    "Generation",
    "GenerationOptions",
    "ModelConfig",
    "ModelFileError",
    "ReplayClock",
    "Request",
    "RequestResult",
    "Server",
    "decode_state_size",
    "generate",
    "serve",
]
