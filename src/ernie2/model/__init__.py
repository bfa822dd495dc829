"""The ERNIE encoder, its heads, its config and its checkpoint formats. The package exports
lazily: importing the heads does not load the checkpoint converters."""

from ernie2.utils import lazy_exports

__all__ = ["ErnieConfig", "ErnieModel", "IGNORE_INDEX", "MaskedLMHead", "NAMED_SIZES",
           "SequenceHead", "SpanHead", "TokenHead", "convert", "read_checkpoint"]

__getattr__ = lazy_exports(__name__, {
    "convert": "ernie2.model.checkpoint", "read_checkpoint": "ernie2.model.checkpoint",
    "NAMED_SIZES": "ernie2.model.config", "ErnieConfig": "ernie2.model.config",
    "IGNORE_INDEX": "ernie2.model.heads", "MaskedLMHead": "ernie2.model.heads",
    "SequenceHead": "ernie2.model.heads", "SpanHead": "ernie2.model.heads",
    "TokenHead": "ernie2.model.heads", "ErnieModel": "ernie2.model.modeling"})
