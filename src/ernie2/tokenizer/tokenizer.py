"""ErnieTokenizer: BERT basic tokenization + WordPiece over an ERNIE vocab, on `tokenizers`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from ernie2.tokenizer.vocab import SPECIAL_TOKENS, read_vocab, write_vocab


@dataclass
class Encoding:
    """One encoded text or pair. `offsets[i]` is the (start, end) character span of token i in
    its own text (text_a or text_b, told by `sent_ids[i]`); special tokens have (0, 0)."""

    input_ids: list[int]
    sent_ids: list[int]
    offsets: list[tuple[int, int]]
    special_mask: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


class ErnieTokenizer:
    """`ids, sent_ids = tokenizer.encode(text_a, text_b=None, max_len=512)` as in ERNIE's Quick Tour.

    Lower-casing and accent stripping follow the vocab (both on by default, as in every released
    ERNIE vocab). Chinese characters become one token each.
    """

    def __init__(self, vocab: dict[str, int] | str | os.PathLike, lower_case: bool = True,
                 strip_accents: bool | None = None, unk_token: str = "[UNK]",
                 max_input_chars_per_word: int = 100):
        if not isinstance(vocab, dict):
            self.vocab_file = str(vocab)
            vocab = read_vocab(vocab)
        else:
            self.vocab_file = None
        self.vocab = vocab
        self.inv_vocab = {i: t for t, i in vocab.items()}
        for tok in SPECIAL_TOKENS:
            if tok not in vocab:
                raise ValueError(f"vocab {self.vocab_file or '<dict>'} has no {tok} token")
        self.lower_case = lower_case
        self.unk_token = unk_token
        self.pad_id, self.cls_id, self.sep_id = vocab["[PAD]"], vocab["[CLS]"], vocab["[SEP]"]
        self.mask_id, self.unk_id = vocab["[MASK]"], vocab[unk_token]
        tok = Tokenizer(models.WordPiece(vocab, unk_token=unk_token,
                                         max_input_chars_per_word=max_input_chars_per_word))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True,
            strip_accents=lower_case if strip_accents is None else strip_accents,
            lowercase=lower_case)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self._tok = tok

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> ErnieTokenizer:
        """A directory holding `vocab.txt`, or the vocab file itself (or a known model name)."""
        p = Path(path)
        if not p.exists():
            from ernie2.model.checkpoint import resolve_pretrained
            p = resolve_pretrained(str(path))
        if p.is_dir():
            p = p / "vocab.txt"
            if not p.exists():
                raise FileNotFoundError(f"{path}: no vocab.txt in this directory")
        return cls(p, **kwargs)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        write_vocab(self.vocab, Path(path) / "vocab.txt")

    @property
    def vocab_size(self) -> int:
        return max(self.vocab.values()) + 1

    def __len__(self) -> int:
        return self.vocab_size

    # ------------------------------------------------------------------ tokenizing
    def tokenize(self, text: str) -> list[str]:
        return self._tok.encode(text, add_special_tokens=False).tokens

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.vocab.get(t, self.unk_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.inv_vocab.get(int(i), self.unk_token) for i in ids]

    def _pieces(self, texts: Sequence[str]):
        return self._tok.encode_batch(list(texts), add_special_tokens=False)

    def encode(self, text_a: str, text_b: str | None = None, max_len: int = 512):
        """Return numpy int64 arrays `(ids, sent_ids)` laid out [CLS] a [SEP] (b [SEP])."""
        enc = self.encode_batch([text_a], None if text_b is None else [text_b], max_len)[0]
        return np.asarray(enc.input_ids, dtype=np.int64), np.asarray(enc.sent_ids, dtype=np.int64)

    def encode_batch(self, texts_a: Sequence[str], texts_b: Sequence[str] | None = None,
                     max_len: int = 512) -> list[Encoding]:
        """Encode many texts (or pairs) at once, with character offsets for each token.

        Pairs that do not fit are truncated longest-first; single texts are cut at the end.
        """
        if texts_b is not None and len(texts_b) != len(texts_a):
            raise ValueError(f"{len(texts_a)} first texts but {len(texts_b)} second texts")
        enc_a = self._pieces(texts_a)
        enc_b = self._pieces(texts_b) if texts_b is not None else [None] * len(enc_a)
        out = []
        for ea, eb in zip(enc_a, enc_b):
            a_ids, a_off = ea.ids, ea.offsets
            b_ids, b_off = (eb.ids, eb.offsets) if eb is not None else ([], [])
            n_special = 3 if eb is not None else 2
            if max_len < n_special + (1 if eb is None else 2):
                raise ValueError(f"max_len {max_len} leaves no room for text")
            la, lb = truncate_pair(len(a_ids), len(b_ids), max_len - n_special)
            ids = [self.cls_id, *a_ids[:la], self.sep_id]
            offsets = [(0, 0), *a_off[:la], (0, 0)]
            sent = [0] * len(ids)
            if eb is not None:
                ids += [*b_ids[:lb], self.sep_id]
                offsets += [*b_off[:lb], (0, 0)]
                sent += [1] * (lb + 1)
            special = [1] + [0] * la + [1] + ([0] * lb + [1] if eb is not None else [])
            out.append(Encoding(ids, sent, offsets, special))
        return out

    def pad(self, encodings: Sequence[Encoding], pad_to: int | None = None) -> dict[str, np.ndarray]:
        """Stack encodings into padded arrays: input_ids, sent_ids, attention_mask."""
        width = max(len(e) for e in encodings) if pad_to is None else pad_to
        n = len(encodings)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        sent = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for i, e in enumerate(encodings):
            k = len(e)
            ids[i, :k], sent[i, :k], mask[i, :k] = e.input_ids, e.sent_ids, 1
        return {"input_ids": ids, "sent_ids": sent, "attention_mask": mask}

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        specials = {self.pad_id, self.cls_id, self.sep_id} if skip_special else set()
        words: list[str] = []
        for tok in self.convert_ids_to_tokens(i for i in ids if int(i) not in specials):
            if tok.startswith("##") and words:
                words[-1] += tok[2:]
            else:
                words.append(tok)
        return " ".join(words)


def truncate_pair(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Longest-first truncation: drop from the longer side until both fit in `budget`
    (ties drop from the first text), in closed form."""
    excess = len_a + len_b - budget
    if excess <= 0:
        return len_a, len_b
    d = min(excess, abs(len_a - len_b))
    if len_a >= len_b:
        len_a -= d
    else:
        len_b -= d
    excess -= d
    len_a -= (excess + 1) // 2
    len_b -= excess // 2
    return max(len_a, 0), max(len_b, 0)
