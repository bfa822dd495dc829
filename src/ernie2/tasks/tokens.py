"""Sentences as tokens for the tasks: per-vocab facts, tokenized sentences and their words, an
explicit cache of them, and windows of consecutive sentences within a token budget."""

from __future__ import annotations

import os
import weakref
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ernie2.corpus.document import Sentence
from ernie2.corpus.text import is_punctuation
from ernie2.utils import IdentityCache

_UNBOUNDED = 1 << 30


def as_tokenizer(tokenizer):
    """An ErnieTokenizer, from itself or a vocab path."""
    if tokenizer is None:
        raise ValueError("pre-training tasks need tokenizer=ErnieTokenizer(vocab) or a vocab path")
    if isinstance(tokenizer, (str, os.PathLike)):
        from ernie2.tokenizer import ErnieTokenizer
        return ErnieTokenizer(tokenizer)
    return tokenizer


class TokSent:
    """A sentence as tokens: ids, character offsets (None for pre-tokenized input), and the
    word each token belongs to (corpus/jieba words when known, else WordPiece words)."""

    __slots__ = ("ids", "starts", "ends", "word_ids")

    def __init__(self, ids, starts, ends, word_ids):
        self.ids, self.starts, self.ends, self.word_ids = ids, starts, ends, word_ids

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class VocabInfo:
    """Per-id facts about a vocab, computed once per tokenizer."""

    special: frozenset[int]
    continuation: bytearray  # 1 for "##" pieces
    punctuation: bytearray  # 1 for tokens made of punctuation/symbols
    random_ids: list[int]  # replacement candidates: real tokens, no special or [unused] ones
    # Tokenized sentences of this tokenizer, each {lower: TokSent}, kept while the Sentence lives.
    cache: IdentityCache = field(default_factory=IdentityCache)


_INFO: weakref.WeakKeyDictionary[Any, VocabInfo] = weakref.WeakKeyDictionary()


def vocab_info(tok) -> VocabInfo:
    info = _INFO.get(tok)
    if info is None:
        size = tok.vocab_size
        cont, punct = bytearray(size), bytearray(size)
        special = {i for t, i in tok.vocab.items() if t.startswith("[") and t.endswith("]")}
        for t, i in tok.vocab.items():
            if t.startswith("##"):
                cont[i] = 1
            elif is_punctuation(t):
                punct[i] = 1
        rand = sorted(i for i in tok.vocab.values() if i not in special)
        info = VocabInfo(frozenset(special), cont, punct, rand or [tok.unk_id])
        _INFO[tok] = info
    return info


def _word_ids_from_words(sentence: Sentence, starts: list[int]) -> list[int] | None:
    text = sentence.text
    word_starts, pos = [], 0
    for w in sentence.words:
        s = text.find(w, pos)
        if s < 0:
            return None
        word_starts.append(s)
        pos = s + len(w)
    return [max(bisect_right(word_starts, s) - 1, 0) for s in starts]


def _from_encoding(sentence: Sentence, enc, info: VocabInfo) -> TokSent:
    ids = enc.input_ids[1:-1]
    offs = enc.offsets[1:-1]
    starts = [o[0] for o in offs]
    ends = [o[1] for o in offs]
    word_ids = _word_ids_from_words(sentence, starts) if sentence.words else None
    if word_ids is None:
        cont = info.continuation
        word_ids, w = [], -1
        for i in ids:
            if not cont[i] or w < 0:
                w += 1
            word_ids.append(w)
    return TokSent(ids, starts, ends, word_ids)


def _pretokenized(sentence: Sentence) -> TokSent:
    word_ids, w = [], -1
    for s in sentence.seg_labels or [0] * len(sentence.token_ids):
        if s != 1 or w < 0:
            w += 1
        word_ids.append(w)
    return TokSent(list(sentence.token_ids), None, None, word_ids)


def tokenize_sentences(tok, sentences: Sequence[Sentence], lower: bool = False) -> list[TokSent]:
    """Tokenize sentences in one batch; each is tokenized once per tokenizer and casing while it
    lives (VocabInfo.cache).

    `lower=True` tokenizes the lower-cased text (for a tokenizer that keeps case)."""
    info = vocab_info(tok)
    cache = info.cache
    out: list[TokSent | None] = []
    todo = []
    for k, s in enumerate(sentences):
        ts = cache.get(s, {}).get(lower)
        if ts is None and s.token_ids is not None:
            ts = _pretokenized(s)
        out.append(ts)
        if ts is None:
            todo.append(k)
    if todo:
        texts = [sentences[k].text.lower() if lower else sentences[k].text for k in todo]
        for k, enc in zip(todo, tok.encode_batch(texts, max_len=_UNBOUNDED)):
            ts = _from_encoding(sentences[k], enc, info)
            cache.setdefault(sentences[k], dict)[lower] = ts
            out[k] = ts
    return out  # type: ignore[return-value]


def encode_text(tok, text: str) -> list[int]:
    """Token ids of a plain string (no special tokens)."""
    return tok.encode_batch([text], max_len=_UNBOUNDED)[0].input_ids[1:-1]


def sentence_window(tok, sents: Sequence[Sentence], start: int, budget: int,
                    max_sentences: int | None = None, chunk: int = 6,
                    lower: bool = False) -> list[TokSent]:
    """Consecutive sentences from `start` whose tokens fit `budget` (at least one sentence,
    which layout truncates when it alone is too long)."""
    out: list[TokSent] = []
    total, i, n = 0, start, len(sents)
    limit = n if max_sentences is None else min(n, start + max_sentences)
    while i < limit:
        batch = tokenize_sentences(tok, sents[i:min(limit, i + chunk)], lower)
        for ts in batch:
            if out and total + len(ts) > budget:
                return out
            out.append(ts)
            total += len(ts)
            i += 1
            if total >= budget:
                return out
    return out
