"""ernie2: ERNIE 2.0 continual multi-task pre-training and fine-tuning on PyTorch."""

__version__ = "0.1.0"
__all__ = ["ErnieConfig", "ErnieModel", "ErnieTokenizer", "__version__"]

# Loaded on first use, so that `ernie2 --help` or a light sub-module does not import torch.
_LAZY = {"ErnieConfig": "ernie2.model", "ErnieModel": "ernie2.model",
         "ErnieTokenizer": "ernie2.tokenizer"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ernie2' has no attribute {name!r}")
