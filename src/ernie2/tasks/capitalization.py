"""Capitalization prediction (ERNIE 2.0): was each word capitalized in the original text."""

from __future__ import annotations

import random

from ernie2.corpus.document import Document
from ernie2.model.heads import IGNORE_INDEX
from ernie2.tasks.tokens import sentence_window
from ernie2.tasks.protocol import Example, TokenTask
from ernie2.tasks.registry import register


def capitalization_labels(text: str, starts: list[int], word_ids: list[int]) -> list[int]:
    """Per token: 1 at the first token of a word whose first character is upper-case, 0 at the
    first token of a word starting with a lower-case letter, IGNORE_INDEX elsewhere (word
    pieces after the first, and words starting with no cased letter: digits, marks, CJK)."""
    out, prev = [], None
    for s, w in zip(starts, word_ids):
        ch = text[s] if s < len(text) else ""
        if w == prev or not (ch.isupper() or ch.islower()):
            out.append(IGNORE_INDEX)
        else:
            out.append(1 if ch.isupper() else 0)
        prev = w
    return out


@register("capitalization")
class Capitalization(TokenTask):
    """Input: a window of consecutive sentences, lower-cased (the tokenizer lower-cases; a cased
    vocab gets lower-cased text). Label: per word, 1 if it was capitalized."""

    num_classes = 2
    skip_languages = ("zh",)  # no case to predict
    description = "per word: was it capitalized in the original text (model reads lower case)"

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0,
                 name: str = "capitalization"):
        super().__init__(tokenizer, max_len, task_id, name)
        self.lower = not getattr(self.tok, "lower_case", True)

    def build(self, doc: Document, rng: random.Random) -> Example | None:
        sents = doc.sentences
        if not sents or not any(s.text for s in sents):
            self.stats.skip("empty" if not sents else "no_text")
            return None
        if doc.lang in self.skip_languages:
            self.stats.skip("uncased_language")
            return None
        start = rng.randrange(len(sents))
        window = sentence_window(self.tok, sents, start, self.max_len - 2, lower=self.lower)
        ids, labels = [], []
        for k, ts in enumerate(window):
            # Labels come from the original text at the token offsets (lower-casing keeps them).
            labels.extend(capitalization_labels(sents[start + k].text, ts.starts, ts.word_ids))
            ids.extend(ts.ids)
        return self.example(ids, labels)
