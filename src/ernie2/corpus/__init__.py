"""Raw corpora to annotated Documents: readers, sentence splitting, segmentation, spans, demo data.

The document model (Document, Sentence, Span) is in corpus.document. The package exports lazily.

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

from ernie2.utils import lazy_exports

__all__ = ["AnnotationOptions", "Annotator", "BadInput", "CorpusSpec", "Document",
           "Lexicon", "READERS", "Sentence", "Span", "build_demo", "detect_lang",
           "document_from_json", "document_to_json", "is_heldout", "iter_documents",
           "iter_positioned", "make_sentences", "mix_seed", "prepare_corpus",
           "read_jsonl", "read_prepared", "read_segmented", "read_text", "segment_zh",
           "sniff_format", "split_sentences", "write_jsonl"]

__getattr__ = lazy_exports(__name__, {
    "AnnotationOptions": "ernie2.corpus.annotate", "Annotator": "ernie2.corpus.annotate",
    "Lexicon": "ernie2.corpus.annotate", "segment_zh": "ernie2.corpus.annotate",
    "build_demo": "ernie2.corpus.demo", "Document": "ernie2.corpus.document",
    "Sentence": "ernie2.corpus.document", "Span": "ernie2.corpus.document",
    "prepare_corpus": "ernie2.corpus.prepare", "read_prepared": "ernie2.corpus.prepare",
    "BadInput": "ernie2.corpus.readers", "document_from_json": "ernie2.corpus.readers",
    "document_to_json": "ernie2.corpus.readers", "read_jsonl": "ernie2.corpus.readers",
    "read_segmented": "ernie2.corpus.readers", "read_text": "ernie2.corpus.readers",
    "CorpusSpec": "ernie2.corpus.spec", "READERS": "ernie2.corpus.spec",
    "is_heldout": "ernie2.corpus.spec", "iter_documents": "ernie2.corpus.spec",
    "iter_positioned": "ernie2.corpus.spec", "mix_seed": "ernie2.corpus.spec",
    "sniff_format": "ernie2.corpus.spec", "write_jsonl": "ernie2.corpus.spec",
    "detect_lang": "ernie2.corpus.text", "make_sentences": "ernie2.corpus.text",
    "split_sentences": "ernie2.corpus.text"})
