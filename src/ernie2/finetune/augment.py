"""Text augmentation for distillation: new unlabeled texts near the training texts, for the teacher to
label. Three operations on words (Tang et al. 2019, arXiv 1903.12136, as ERNIE Slim used them):
masking (a word becomes [MASK]), same-part-of-speech word replacement (a word becomes another
word of its part of speech seen in the data) and n-gram sampling (the text becomes a random run
of its words)."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

MASK = "[MASK]"
# jieba's tags for punctuation, digits, stray symbols and Latin words: never swapped for each other.
_NO_REPLACE = {"x", "eng", "m", "w"}


@dataclass
class AugmentOptions:
    per_text: int = 10  # augmented texts per training text (ERNIE Slim made 10x its data)
    p_mask: float = 0.1  # per word
    p_replace: float = 0.1  # per word (not masked), same part of speech
    p_ngram: float = 0.25  # per augmented text: keep only a random run of words
    ngram_max: int = 5  # longest run kept, in words
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("p_mask", "p_replace", "p_ngram"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.per_text < 0 or self.ngram_max < 1:
            raise ValueError("per_text must be >= 0 and ngram_max >= 1")


def tag_words(texts: Iterable[str]) -> list[list[tuple[str, str]]]:
    """(word, part of speech) per text with jieba; without jieba, characters tagged "c"
    (replacement then draws from all characters). Words joined give the text back."""
    try:
        import jieba
        import jieba.posseg as pseg
    except ImportError:
        logger.warning("jieba is not installed: augmenting characters, not words "
                       "(pip install jieba)")
        return [[(c, "c") for c in t] for t in texts]
    jieba.setLogLevel(logging.WARNING)
    return [[(p.word, p.flag) for p in pseg.lcut(t)] for t in texts]


class Augmenter:
    """Augmented variants of a fixed set of texts; replacement words come from those texts."""

    def __init__(self, texts: Sequence[str], options: AugmentOptions | None = None):
        self.options = options or AugmentOptions()
        self.tagged = tag_words(texts)
        self.by_pos: dict[str, list[str]] = defaultdict(list)  # occurrences: frequent words
        for words in self.tagged:                               # are drawn more often
            for w, pos in words:
                if pos not in _NO_REPLACE and w.strip():
                    self.by_pos[pos].append(w)

    def _variant(self, words: list[tuple[str, str]], rng: random.Random) -> str:
        o = self.options
        out = []
        for w, pos in words:
            r = rng.random()
            if not w.strip():
                out.append(w)
            elif r < o.p_mask:
                out.append(MASK)
            elif r < o.p_mask + o.p_replace and pos not in _NO_REPLACE and \
                    len(self.by_pos[pos]) > 1:
                out.append(rng.choice(self.by_pos[pos]))
            else:
                out.append(w)
        if len(out) > 1 and rng.random() < o.p_ngram:
            n = rng.randint(1, min(o.ngram_max, len(out)))
            start = rng.randint(0, len(out) - n)
            out = out[start:start + n]
        return "".join(out).strip()

    def variants(self, i: int) -> list[str]:
        """Up to `per_text` distinct variants of text i, none equal to it or empty (short
        texts may have fewer)."""
        rng = random.Random(self.options.seed * 1_000_003 + i)
        original = "".join(w for w, _ in self.tagged[i]).strip()
        seen, out = {original}, []
        for _ in range(self.options.per_text * 3):  # a few tries per wanted variant
            if len(out) >= self.options.per_text:
                break
            v = self._variant(self.tagged[i], rng)
            if v and v.replace(MASK, "").strip() and v not in seen:
                seen.add(v)
                out.append(v)
        return out

    def all_variants(self) -> list[str]:
        return [v for i in range(len(self.tagged)) for v in self.variants(i)]


def encode_with_masks(tokenizer, texts: Sequence[str], max_len: int) -> list[dict]:
    """Features (input_ids, sent_ids) of single texts in which the literal "[MASK]" stands for
    the tokenizer's mask token (the tokenizer alone would split it into "[", "mask", "]")."""
    plain = [i for i, t in enumerate(texts) if MASK not in t]
    out: list[dict | None] = [None] * len(texts)
    for i, e in zip(plain, tokenizer.encode_batch([texts[i] for i in plain], max_len=max_len)):
        out[i] = {"input_ids": e.input_ids, "sent_ids": e.sent_ids}
    for i, t in enumerate(texts):
        if out[i] is None:
            ids = []
            for k, part in enumerate(t.split(MASK)):
                if k:
                    ids.append(tokenizer.mask_id)
                ids += tokenizer.convert_tokens_to_ids(tokenizer.tokenize(part))
            ids = [tokenizer.cls_id, *ids[:max_len - 2], tokenizer.sep_id]
            out[i] = {"input_ids": ids, "sent_ids": [0] * len(ids)}
    return out  # type: ignore[return-value]


__all__ = ["AugmentOptions", "Augmenter", "MASK", "encode_with_masks", "tag_words"]
