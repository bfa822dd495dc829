"""WordPiece tokenization over ERNIE vocab files, and vocab training."""

from ernie2.tokenizer.tokenizer import Encoding, ErnieTokenizer, truncate_pair
from ernie2.tokenizer.vocab import SPECIAL_TOKENS, read_vocab, train_vocab, write_vocab

__all__ = ["Encoding", "ErnieTokenizer", "SPECIAL_TOKENS", "read_vocab", "train_vocab",
           "truncate_pair", "write_vocab"]
