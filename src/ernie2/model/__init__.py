"""The ERNIE encoder, its heads, its config and its checkpoint formats."""

from ernie2.model.checkpoint import convert, read_checkpoint
from ernie2.model.config import NAMED_SIZES, ErnieConfig
from ernie2.model.heads import MaskedLMHead, SequenceHead, SpanHead, TokenHead
from ernie2.model.modeling import ErnieModel

__all__ = ["ErnieConfig", "ErnieModel", "MaskedLMHead", "NAMED_SIZES", "SequenceHead",
           "SpanHead", "TokenHead", "convert", "read_checkpoint"]
