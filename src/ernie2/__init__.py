"""ernie2: ERNIE 2.0 continual multi-task pre-training and fine-tuning on PyTorch."""

from ernie2.utils import lazy_exports

__version__ = "0.1.0"
__all__ = ["ErnieConfig", "ErnieModel", "ErnieTokenizer", "__version__"]

# Loaded on first use: `ernie2 --help` and light sub-modules do not import torch.
__getattr__ = lazy_exports(__name__, {"ErnieConfig": "ernie2.model", "ErnieModel": "ernie2.model",
                                      "ErnieTokenizer": "ernie2.tokenizer"})
