"""The ERNIE encoder, its heads, its config and its checkpoint formats. The package exports
lazily: importing the heads does not load the checkpoint converters."""

from ernie2.utils import lazy_exports


__getattr__, __all__ = lazy_exports(__name__, {
    "ernie2.model.checkpoint": "convert read_checkpoint",
    "ernie2.model.config": "ErnieConfig NAMED_SIZES",
    "ernie2.model.heads": "IGNORE_INDEX MaskedLMHead SequenceHead SpanHead TokenHead",
    "ernie2.model.modeling": "ErnieModel",
})
