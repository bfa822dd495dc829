"""ernie2: ERNIE 2.0 continual multi-task pre-training and fine-tuning on PyTorch."""

from ernie2.utils import lazy_exports

__version__ = "0.1.0"

# Loaded on first use: `ernie2 --help` and light sub-modules do not import torch.
__getattr__, _LAZY = lazy_exports(__name__, {
    "ernie2.model": "ErnieConfig ErnieModel",
    "ernie2.tokenizer": "ErnieTokenizer",
})
__all__ = [*_LAZY, "__version__"]
