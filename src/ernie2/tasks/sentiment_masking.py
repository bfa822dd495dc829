"""Sentiment masking with word-polarity prediction (SKEP, on the ERNIE 2.0 framework).

A window of consecutive sentences; the sentiment words in it (a lexicon's words, found among the
corpus's word segmentation) are masked, each with probability `mask_prob` and at least one, and
the model predicts each masked word's polarity (positive / negative) from the context around it.
A word right after a negator (不, 没有, ...) counts with its polarity flipped. It teaches what
the knowledge-masking tasks only reach slowly at small scale: which contexts carry an opinion,
and which way. The lexicon comes without labels (`ernie2.corpus.sentiment.mine_lexicon`: seed
words and SO-PMI over the unlabeled corpus; `ernie2 data demo` writes one for the reviews).
"""

from __future__ import annotations

import os
import random
from bisect import bisect_left
from collections.abc import Iterable, Mapping

from ernie2.corpus.document import Document, Sentence
from ernie2.corpus.sentiment import NEGATORS_ZH, SEEDS_ZH, LexiconEntry, read_lexicon
from ernie2.model.heads import IGNORE_INDEX
from ernie2.tasks.protocol import Example, TokenTask
from ernie2.tasks.registry import register
from ernie2.tasks.tokens import sentence_window, vocab_info


def word_offsets(sentence: Sentence) -> list[tuple[int, int]] | None:
    """Character ranges [start, end) of the sentence's words, or None when its words do not
    match its text in order (or it has none)."""
    if not sentence.words:
        return None
    out, pos, text = [], 0, sentence.text
    for w in sentence.words:
        s = text.find(w, pos)
        if s < 0:
            return None
        out.append((s, s + len(w)))
        pos = s + len(w)
    return out


def polar_words(sentence: Sentence, lexicon: Mapping[str, LexiconEntry],
                negators: Iterable[str] = NEGATORS_ZH) -> list[tuple[int, int, int]]:
    """(start, end, polarity) of the sentence's lexicon words, in characters; a word after a
    negator gets the other polarity."""
    offsets = word_offsets(sentence)
    if offsets is None:
        return []
    neg = frozenset(negators)
    out = []
    for i, (w, (a, b)) in enumerate(zip(sentence.words, offsets)):
        entry = lexicon.get(w)
        if entry is None:
            continue
        flip = i > 0 and sentence.words[i - 1] in neg
        out.append((a, b, entry.polarity ^ flip))
    return out


@register("sentiment_masking")
class SentimentMasking(TokenTask):
    """Mask sentiment words, predict each one's polarity at its tokens (2 classes: 0 negative,
    1 positive). Options: `lexicon` (a lexicon file, relative to the config's data_dir;
    corpus.sentiment), `mask_prob` (the share of a window's sentiment words masked, at least
    one), `replace` (of a masked word's tokens: the share turned to [MASK], then to a random
    token; the rest stay), `lang` (the lexicon's language: documents in others are skipped).
    Without a lexicon file the task reads the Chinese seed words alone
    (corpus.sentiment.SEEDS_ZH)."""

    num_classes = 2
    skip_languages: tuple[str, ...] = ("en",)  # with the default lang, zh
    path_options = ("lexicon",)  # resolved against data_dir by the trainer
    description = "predict the polarity of masked sentiment words from their context (SKEP)"

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0,
                 lexicon: str | os.PathLike | Mapping[str, LexiconEntry] | None = None,
                 mask_prob: float = 0.5, replace: tuple[float, float] = (0.8, 0.1),
                 lang: str = "zh", name: str = "sentiment_masking"):
        super().__init__(tokenizer, max_len, task_id, name)
        if lexicon is None:
            lexicon = {w: LexiconEntry(pol) for pol, words in SEEDS_ZH.items() for w in words}
        self.lexicon = dict(lexicon) if isinstance(lexicon, Mapping) else read_lexicon(lexicon)
        self.lang = lang
        self.skip_languages = tuple(x for x in ("zh", "en") if x != lang)
        if not 0 < mask_prob <= 1:
            raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
        p_mask, p_random = (float(x) for x in replace)
        if p_mask < 0 or p_random < 0 or p_mask + p_random > 1:
            raise ValueError(f"replace must be two non-negative shares summing to at most 1, "
                             f"got {replace}")
        self.mask_prob, self.replace = float(mask_prob), (p_mask, p_random)
        self.info = vocab_info(self.tok)

    def build(self, doc: Document, rng: random.Random) -> Example | None:
        sents = doc.sentences
        if not sents or not any(s.text for s in sents):
            self.stats.skip("empty")
            return None
        if doc.lang != self.lang:
            self.stats.skip("other_language")
            return None
        start = rng.randrange(len(sents))
        window = sentence_window(self.tok, sents, start, self.max_len - 2)
        ids: list[int] = []
        units: list[tuple[int, int, int]] = []  # token range and polarity of each sentiment word
        for k, ts in enumerate(window):
            off = len(ids)
            if ts.starts is not None:
                for a, b, pol in polar_words(sents[start + k], self.lexicon):
                    ta, tb = bisect_left(ts.starts, a), bisect_left(ts.starts, b)
                    if ta < tb and off + tb <= self.max_len - 2:
                        units.append((off + ta, off + tb, pol))
            ids.extend(ts.ids)
        if not units:
            self.stats.skip("no_sentiment_word")
            return None
        chosen = [u for u in units if rng.random() < self.mask_prob] or [rng.choice(units)]
        labels = [IGNORE_INDEX] * len(ids)
        p_mask, p_random = self.replace
        rand_ids = self.info.random_ids
        for a, b, pol in chosen:
            r = rng.random()
            for t in range(a, b):
                labels[t] = pol
                if r < p_mask:
                    ids[t] = self.tok.mask_id
                elif r < p_mask + p_random:
                    ids[t] = rand_ids[rng.randrange(len(rand_ids))]
            self.stats[f"polarity_{pol}"] += 1
        return self.example(ids, labels)
