"""Token-document relation (ERNIE 2.0): does a token of a segment occur in the other segments of
its document."""

from __future__ import annotations

import random
import re
import unicodedata
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable

from ernie2.corpus.annotate import read_word_list, resource_path
from ernie2.corpus.document import Document, Sentence
from ernie2.corpus.text import is_punctuation
from ernie2.model.heads import IGNORE_INDEX
from ernie2.tasks.tokens import sentence_window, vocab_info
from ernie2.tasks.protocol import Example, TokenTask
from ernie2.tasks.registry import register


def default_stop_words() -> set[str]:
    return read_word_list(resource_path("stopwords_en.txt")) | \
        read_word_list(resource_path("stopwords_zh.txt"))


# Word units on raw text, as BERT's pre-tokenizer cuts them: one CJK character, a run of letters
# and digits, or any other single character (punctuation, symbols).
_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+|\S")


def word_key(text: str) -> str:
    """Lower-cased, accents stripped (as the tokenizer normalizes)."""
    text = text.lower()
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFD", text)
                   if unicodedata.category(c) != "Mn")


def sentence_words(sentence: Sentence) -> tuple[list[int], list[str]]:
    """(start offsets, keys) of a sentence's words: its segmentation when known, else the
    pre-tokenizer's units (cached on the sentence)."""
    cached = sentence.__dict__.get("_ernie2_word_keys")
    if cached is None:
        text = sentence.text
        spans = []
        if sentence.words:
            pos = 0
            for w in sentence.words:
                start = text.find(w, pos)
                if start < 0:
                    spans = []
                    break
                spans.append((start, start + len(w)))
                pos = start + len(w)
        if not spans:
            spans = [m.span() for m in _WORD.finditer(text)]
        low = text.lower()
        if len(low) == len(text):  # the usual case: lower-case once, slice the words
            keys = [low[a:b] for a, b in spans]
            if not low.isascii():
                keys = [k if k.isascii() else word_key(k) for k in keys]
        else:
            keys = [word_key(text[a:b]) for a, b in spans]
        cached = ([a for a, _ in spans], keys)
        sentence.__dict__["_ernie2_word_keys"] = cached
    return cached


def sentence_key_set(sentence: Sentence) -> set[str]:
    """The keys of a sentence's words (what sentence_words gives, without offsets: faster)."""
    if sentence.words or "_ernie2_word_keys" in sentence.__dict__:
        return set(sentence_words(sentence)[1])
    low = sentence.text.lower()
    if len(low) != len(sentence.text):
        return set(sentence_words(sentence)[1])
    keys = set(_WORD.findall(low))
    return keys if low.isascii() else {k if k.isascii() else word_key(k) for k in keys}


def sentence_counts(doc: Document) -> Counter:
    """word -> number of the document's sentences containing it (cached on the document)."""
    counts = doc.__dict__.get("_ernie2_sentence_counts")
    if counts is None:
        counts = Counter()
        for sent in doc.sentences:
            counts.update(sentence_key_set(sent))
        doc.__dict__["_ernie2_sentence_counts"] = counts
    return counts


@register("token_document_relation")
class TokenDocumentRelation(TokenTask):
    """Segment: a window of consecutive sentences (at most half the document's). Label per
    token: 1 if its word also occurs in another sentence of the document outside the segment,
    else 0. Words are the corpus or jieba words when known, otherwise the units BERT's
    pre-tokenizer cuts (a CJK character, a run of letters and digits), compared lower-cased
    without accents. Special tokens,
    punctuation and stop words are not scored (IGNORE_INDEX) and never count as occurring.

    stop_words: "default" (the shipped English and Chinese lists), "none", a file path (white
    space separated words) or an iterable of words.
    """

    num_classes = 2
    description = "per token of a segment: does it also occur in the document's other segments"
    min_sentences = 2

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0,
                 stop_words: str | Iterable[str] = "default",
                 name: str = "token_document_relation"):
        super().__init__(tokenizer, max_len, task_id, name)
        if isinstance(stop_words, str):
            stop_words = (default_stop_words() if stop_words == "default" else set()
                          if stop_words == "none" else read_word_list(stop_words))
        self.stop_words = {w.lower() for w in stop_words}
        self.info = vocab_info(self.tok)

    def _excluded(self, tid: int, word: str) -> bool:
        return (tid in self.info.special or bool(self.info.punctuation[tid])
                or not word or is_punctuation(word) or word in self.stop_words)

    def build(self, doc: Document, rng: random.Random) -> Example | None:
        sents = doc.sentences
        if not sents:
            self.stats.skip("empty")
            return None
        if len(sents) < 2:
            self.stats.skip("one_sentence")
            return None
        if not sents[0].text:  # pre-tokenized ERNIE 1.0 lines: no words to compare
            self.stats.skip("no_text")
            return None
        start = rng.randrange(len(sents))
        window = sentence_window(self.tok, sents, start, self.max_len - 2,
                                 max_sentences=max(1, len(sents) // 2))
        doc_counts = sentence_counts(doc)
        window_sents = sents[start:start + len(window)]
        window_counts = Counter()
        for sent in window_sents:
            window_counts.update(sentence_key_set(sent))
        ids, labels = [], []
        for ts, sent in zip(window, window_sents):
            starts, keys = sentence_words(sent)
            for tid, offset in zip(ts.ids, ts.starts):
                key = keys[max(bisect_right(starts, offset) - 1, 0)] if keys else ""
                ids.append(tid)
                labels.append(IGNORE_INDEX if self._excluded(tid, key)
                              else int(doc_counts[key] > window_counts[key]))
        return self.example(ids, labels)
