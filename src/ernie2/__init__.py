"""ernie2: ERNIE 2.0 continual multi-task pre-training and fine-tuning on PyTorch."""

from ernie2.model import ErnieConfig, ErnieModel
from ernie2.tokenizer import ErnieTokenizer

__version__ = "0.1.0"
__all__ = ["ErnieConfig", "ErnieModel", "ErnieTokenizer", "__version__"]
