"""Token-document relation (ERNIE 2.0): does a token of a segment occur in the other segments of
its document."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

from ernie2.corpus.annotate import read_word_list, resource_path
from ernie2.corpus.text import is_punctuation
from ernie2.tasks.base import IGNORE_INDEX, Document, Example, register
from ernie2.tasks.common import (TaskStats, as_tokenizer, sentence_window, token_example,
                                 token_make_head, token_task_compute, token_words,
                                 tokenize_sentences, vocab_info)


def default_stop_words() -> set[str]:
    return read_word_list(resource_path("stopwords_en.txt")) | \
        read_word_list(resource_path("stopwords_zh.txt"))


def sentence_counts(tok, doc: Document) -> Counter:
    """word -> number of the document's sentences containing it (cached on the document)."""
    cache = doc.__dict__.setdefault("_ernie2_sentence_counts", {})
    counts = cache.get(id(tok))
    if counts is None:
        counts = Counter()
        for ts in tokenize_sentences(tok, doc.sentences):
            counts.update(set(token_words(tok, ts)))
        cache[id(tok)] = counts
    return counts


@register("token_document_relation")
class TokenDocumentRelation:
    """Segment: a window of consecutive sentences (at most half the document's). Label per
    token: 1 if its word also occurs in the rest of the document, else 0. Words are corpus or
    jieba words when known, WordPiece words otherwise, compared lower-cased. Special tokens,
    punctuation and stop words are not scored (IGNORE_INDEX) and never count as occurring.

    stop_words: "default" (the shipped English and Chinese lists), "none", a file path (white
    space separated words) or an iterable of words.
    """

    kind = "token"
    num_classes = 2
    description = "per token of a segment: does it also occur in the document's other segments"

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0,
                 stop_words: str | Iterable[str] = "default",
                 name: str = "token_document_relation"):
        self.tok = as_tokenizer(tokenizer)
        self.max_len, self.task_id, self.name = max_len, task_id, name
        if isinstance(stop_words, str):
            stop_words = (default_stop_words() if stop_words == "default" else set()
                          if stop_words == "none" else read_word_list(stop_words))
        self.stop_words = {w.lower() for w in stop_words}
        self.info = vocab_info(self.tok)
        self.stats = TaskStats()

    def _excluded(self, tid: int, word: str) -> bool:
        return (tid in self.info.special or bool(self.info.punctuation[tid])
                or is_punctuation(word) or word in self.stop_words)

    def build(self, doc: Document, rng: random.Random) -> Example | None:
        sents = doc.sentences
        if not sents:
            self.stats.skip("empty")
            return None
        if len(sents) < 2:
            self.stats.skip("one_sentence")
            return None
        start = rng.randrange(len(sents))
        window = sentence_window(self.tok, sents, start, self.max_len - 2,
                                 max_sentences=max(1, len(sents) // 2))
        doc_counts = sentence_counts(self.tok, doc)
        window_words = [token_words(self.tok, ts) for ts in window]
        window_counts = Counter()
        for words in window_words:
            window_counts.update(set(words))
        ids, labels = [], []
        for ts, words in zip(window, window_words):
            for tid, word in zip(ts.ids, words):
                ids.append(tid)
                labels.append(IGNORE_INDEX if self._excluded(tid, word)
                              else int(doc_counts[word] > window_counts[word]))
        return token_example(self, ids, labels)

    make_head = token_make_head
    compute = token_task_compute
