"""Sentiment knowledge for pre-training: a word-polarity lexicon mined from unlabeled text.

SKEP (Baidu's sentiment-knowledge pre-training on ERNIE, Tian et al. 2020) masks sentiment words
and trains the model to predict their polarity from the context around them. Its lexicon is mined
without labels: a few seed words of known polarity, and every other word's semantic orientation
by pointwise mutual information (Turney 2002, SO-PMI) with the positive seeds against the
negative ones. `mine_lexicon` does that over segmented documents; the co-occurrence window is
the document (a review is a few sentences). No sentiment label is read: the fine-tuning demo's
review labels never reach pre-training.

Lexicon file (tab-separated, UTF-8, one word a line): `word<TAB>polarity[<TAB>score<TAB>count]`,
polarity `1` (positive) or `0` (negative); lines starting with `#` and blank lines are skipped.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ernie2.corpus.document import Document

# Seed words (Chinese product and hotel reviews): common, unambiguous polarity.
SEEDS_ZH: dict[int, tuple[str, ...]] = {
    1: ("好", "不错", "满意", "喜欢", "推荐", "值得", "精致", "舒适", "方便", "漂亮", "干净",
        "实惠", "划算", "超值", "完美", "优秀", "赞", "棒", "开心", "很快"),
    0: ("差", "失望", "后悔", "垃圾", "糟糕", "退货", "难用", "太慢", "脏", "坏", "烂", "骗",
        "投诉", "郁闷", "恶心", "不满", "麻烦", "慢", "贵", "破"),
}

# jieba dictionary tags of the words that can carry an opinion: adjectives, verbs, adverbs,
# idioms and set phrases, status words (nouns and names are topics, not opinions).
OPINION_TAGS = frozenset({"a", "ad", "an", "ag", "v", "vd", "vn", "d", "i", "l", "z"})

# A word right after one of these has its polarity flipped (不 好, 没有 意思).
NEGATORS_ZH = frozenset({"不", "没", "没有", "不是", "不太", "不够", "不会", "别", "无", "并不",
                         "不怎么"})


class LexiconError(ValueError):
    """A lexicon file line that is not `word<TAB>polarity...`."""


@dataclass(frozen=True)
class LexiconEntry:
    polarity: int  # 1 positive, 0 negative
    score: float = 0.0  # semantic orientation (log odds, positive above 0)
    count: int = 0  # documents it occurs in


def _tags() -> dict[str, str]:
    """word -> jieba dictionary tag, for every word of jieba's dictionary."""
    import jieba

    out = {}
    with open(Path(jieba.__file__).with_name("dict.txt"), encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3:
                out[parts[0]] = parts[2]
    return out


def mine_lexicon(docs: Iterable[Document], seeds: Mapping[int, Iterable[str]] = SEEDS_ZH,
                 min_count: int = 10, threshold: float = 0.7,
                 tags: Mapping[str, str] | None = None,
                 opinion_tags: Iterable[str] = OPINION_TAGS) -> dict[str, LexiconEntry]:
    """Words whose semantic orientation is at least `threshold` in size, with their polarity.

    For a word w occurring in n_w documents, of which p_w hold a positive seed and q_w a
    negative one: SO(w) = log((p_w + 1) (Q + 2) / ((q_w + 1) (P + 2))), P and Q the documents
    holding any positive / negative seed (PMI with the positive seeds minus PMI with the negative
    ones, add-one smoothed). Candidates: words in at least `min_count` documents whose jieba
    dictionary tag is in `opinion_tags` (`tags`: word -> tag; jieba's dictionary when None).
    The seeds are always in, with their own polarity, and their score is clipped to at least the
    threshold in their direction. Documents need words (`Sentence.words`)."""
    seeds = {int(k): set(v) for k, v in seeds.items()}
    if set(seeds) != {0, 1} or not seeds[0] or not seeds[1]:
        raise ValueError("seeds need positive (1) and negative (0) words")
    if seeds[0] & seeds[1]:
        raise ValueError(f"seed words with both polarities: {sorted(seeds[0] & seeds[1])}")
    tags = _tags() if tags is None else tags
    keep_tags = frozenset(opinion_tags)
    df, with_pos, with_neg = Counter(), Counter(), Counter()
    n_pos = n_neg = 0
    for doc in docs:
        words = {w for s in doc.sentences for w in (s.words or ())}
        if not words:
            continue
        has_pos, has_neg = bool(words & seeds[1]), bool(words & seeds[0])
        n_pos += has_pos
        n_neg += has_neg
        for w in words:
            df[w] += 1
            with_pos[w] += has_pos
            with_neg[w] += has_neg
    if not n_pos or not n_neg:
        raise ValueError(f"the documents hold {n_pos} with a positive seed and {n_neg} with a "
                         "negative one: SO-PMI needs both (are the documents segmented?)")
    out = {}
    for w, n in df.items():
        seed = 1 if w in seeds[1] else 0 if w in seeds[0] else None
        if seed is None and (n < min_count or tags.get(w) not in keep_tags):
            continue
        so = math.log((with_pos[w] + 1) * (n_neg + 2) / ((with_neg[w] + 1) * (n_pos + 2)))
        if seed is not None:
            so = max(so, threshold) if seed else min(so, -threshold)
        if abs(so) >= threshold:
            out[w] = LexiconEntry(1 if so > 0 else 0, round(so, 4), n)
    return dict(sorted(out.items(), key=lambda kv: (-abs(kv[1].score), kv[0])))


def write_lexicon(lexicon: Mapping[str, LexiconEntry], path: str | os.PathLike) -> Path:
    from ernie2.utils import atomic_write_text

    lines = ["# word\tpolarity (1 positive, 0 negative)\tscore (SO-PMI)\tdocuments"]
    lines += [f"{w}\t{e.polarity}\t{e.score}\t{e.count}" for w, e in lexicon.items()]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)


def read_lexicon(path: str | os.PathLike) -> dict[str, LexiconEntry]:
    """A lexicon file (module docstring) as word -> LexiconEntry; a bad line is a LexiconError
    naming the file, the line and what was expected."""
    out: dict[str, LexiconEntry] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            where = f"{path}:{n}"
            if len(parts) < 2 or not parts[0].strip():
                raise LexiconError(f"{where}: expected 'word<TAB>polarity', got {line!r}")
            word, pol = parts[0].strip(), parts[1].strip()
            if pol not in ("0", "1"):
                raise LexiconError(f"{where}: polarity must be 1 (positive) or 0 (negative), "
                                   f"got {pol!r}")
            try:
                score = float(parts[2]) if len(parts) > 2 and parts[2].strip() else 0.0
                count = int(parts[3]) if len(parts) > 3 and parts[3].strip() else 0
            except ValueError:
                raise LexiconError(f"{where}: score must be a number and count an integer, "
                                   f"got {parts[2:4]!r}") from None
            if word in out and out[word].polarity != int(pol):
                raise LexiconError(f"{where}: {word!r} is listed before with the other polarity")
            out[word] = LexiconEntry(int(pol), score, count)
    if not out:
        raise LexiconError(f"{path}: no lexicon entries (expected 'word<TAB>polarity' lines)")
    return out
