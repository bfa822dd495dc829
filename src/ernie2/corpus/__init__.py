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


__getattr__, __all__ = lazy_exports(__name__, {
    "ernie2.corpus.annotate": "AnnotationOptions Annotator Lexicon segment_zh",
    "ernie2.corpus.demo": "build_demo",
    "ernie2.corpus.document": "Document Sentence Span",
    "ernie2.corpus.prepare": "prepare_corpus read_prepared",
    "ernie2.corpus.readers": "BadInput document_from_json document_to_json read_jsonl "
                             "read_segmented read_text",
    "ernie2.corpus.spec": "CorpusSpec is_heldout iter_documents iter_positioned mix_seed READERS "
                          "sniff_format write_jsonl",
    "ernie2.corpus.text": "detect_lang make_sentences split_sentences",
})
