"""Raw corpora to annotated Documents: readers, sentence splitting, segmentation, spans, demo data.

API (what the trainer and the CLI call):

    spec = CorpusSpec.from_dict({"path": "data/demo/corpus_zh.jsonl", "format": "auto",
                                 "lang": "auto", "lexicons": [], "on_error": "raise"})
    for doc in iter_documents(spec): ...              # Documents, annotated, in corpus order
    for doc, pos in iter_positioned(spec, start=None): ...
        # pos = {"file", "reader", "doc"}: pass it back as `start` to resume after that document
    is_heldout(doc_index, fraction, seed=0) -> bool   # deterministic train/eval split by index
    prepare_corpus(spec, out_dir, workers=4, max_docs=None) -> manifest path
        # sharded, cached annotation with several processes; the directory reads back as a corpus
    build_demo(out_dir="data/demo", max_docs_zh=None, max_docs_en=None) -> summary dict

Formats (READERS): text (a paragraph a line, blank line between documents), segmented (the same,
space-separated words), jsonl ({"title", "paragraphs"}, sentences may carry words and spans),
pos (word/tag, People's Daily), ernie1 (ERNIE 1.0 five-field gzip lines, read as they are),
wiki (MediaWiki XML dumps), prepared (a directory written by prepare_corpus). Bad input raises
ValueError naming file and line, or is skipped and counted with on_error="skip".
"""

# The Document types live in ernie2.tasks.base, and the task modules use corpus helpers: loading
# the tasks package first keeps that import order the same whichever package a user imports.
import ernie2.tasks  # noqa: F401,I001
from ernie2.corpus import ernie1, tagged, wiki  # noqa: F401  (register their readers)
from ernie2.corpus.annotate import AnnotationOptions, Annotator, Lexicon, segment_zh
from ernie2.corpus.demo import build_demo
from ernie2.corpus.prepare import prepare_corpus, read_prepared
from ernie2.corpus.readers import (READERS, BadInput, document_from_json, document_to_json,
                                   read_jsonl, read_segmented, read_text)
from ernie2.corpus.spec import (CorpusSpec, is_heldout, iter_documents, iter_positioned,
                                mix_seed, sniff_format, write_jsonl)
from ernie2.corpus.text import detect_lang, make_sentences, split_sentences

__all__ = ["AnnotationOptions", "Annotator", "BadInput", "CorpusSpec", "Lexicon", "READERS",
           "build_demo", "detect_lang", "document_from_json", "document_to_json", "is_heldout",
           "iter_documents", "iter_positioned", "make_sentences", "mix_seed", "prepare_corpus",
           "read_jsonl", "read_prepared", "read_segmented", "read_text", "segment_zh",
           "sniff_format", "split_sentences", "write_jsonl"]
