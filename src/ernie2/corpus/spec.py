"""CorpusSpec (where a corpus is, its format, language and annotation) and reading Documents from
it with resumable positions; the deterministic held-out split."""

from __future__ import annotations

import dataclasses
import glob
import gzip
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ernie2.corpus import ernie1, tagged, wiki  # noqa: F401  (their readers join READERS)
from ernie2.corpus.annotate import AnnotationOptions, Annotator
from ernie2.corpus.document import Document
from ernie2.corpus.readers import READERS, Position, open_binary

MANIFEST = "manifest.json"


def corpus_formats() -> list[str]:
    return ["auto", *sorted(READERS), "prepared"]


@dataclass
class CorpusSpec:
    """A corpus: files (globs allowed) or a prepared directory, read with one format.

    format: auto | text | segmented | jsonl | pos | ernie1 | wiki | prepared ("auto" looks at
        names and the first line). lang: auto | zh | en ("auto" decides per document).
    on_error: "raise" (stop at the first bad line, naming file and line) or "skip" (skip and
        count it). annotate: run the Annotator (segmentation and spans) on documents as they
        are read (prepared directories are annotated already). reader_options: passed to the
        reader, e.g. {"headlines": true} for the People's Daily text.
    """

    path: str | list[str]
    format: str = "auto"
    lang: str = "auto"
    on_error: str = "raise"
    annotate: bool = True
    segment: bool = True
    jieba_tags: bool = True
    capitalized_names: bool = True
    lexicons: list[str] = field(default_factory=list)
    reader_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in corpus_formats():
            raise ValueError(f"unknown corpus format {self.format!r}; known: "
                             f"{', '.join(corpus_formats())}")
        if self.lang not in ("auto", "zh", "en"):
            raise ValueError(f"lang must be auto, zh or en, got {self.lang!r}")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | str | CorpusSpec) -> CorpusSpec:
        """From a config mapping (unknown keys are an error), a bare path, or a spec."""
        if isinstance(raw, CorpusSpec):
            return raw
        if isinstance(raw, (str, Path)):
            return cls(str(raw))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown corpus option(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        if "path" not in raw:
            raise ValueError("a corpus needs a 'path'")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def annotation(self) -> AnnotationOptions:
        return AnnotationOptions(self.segment, self.jieba_tags, self.capitalized_names,
                                 tuple(self.lexicons))

    def files(self) -> list[Path]:
        paths = [self.path] if isinstance(self.path, (str, Path)) else list(self.path)
        out: list[Path] = []
        for p in paths:
            matches = sorted(glob.glob(str(p))) if any(c in str(p) for c in "*?[") else [p]
            if not matches:
                raise FileNotFoundError(f"corpus path {p} matches no file")
            for m in matches:
                if not Path(m).exists():
                    raise FileNotFoundError(f"corpus file {m} not found")
                out.append(Path(m))
        return out


def sniff_format(path: Path) -> str:
    """Guess a file's format from its name, then from its first non-blank line."""
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return "prepared"
        raise ValueError(f"{path} is a directory without {MANIFEST}: give files, or prepare it "
                         "with `ernie2 data prepare`")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json")):
        return "jsonl"
    if ".xml" in name:
        return "wiki"
    if name.endswith(".filelist"):
        return "ernie1"
    with open_binary(path) as fh:
        first = ""
        for raw in fh:
            first = raw.decode("utf-8", "replace").strip()
            if first:
                break
    if first.startswith("{"):
        return "jsonl"
    if first.startswith("<mediawiki"):
        return "wiki"
    if first.count(";") == 4 and all(c.isdigit() or c in " ;-" for c in first):
        return "ernie1"
    tokens = first.split()
    if tokens and sum("/" in t[1:] for t in tokens) >= 0.9 * len(tokens):
        return "pos"
    return "text"


def iter_positioned(spec: CorpusSpec | dict | str, start: Position | None = None,
                    stats: Counter | None = None, shared: bool = False
                    ) -> Iterator[tuple[Document, Position]]:
    """Documents of a corpus, each with the position after it: {"file": i, "reader": {...},
    "doc": number of documents read so far}. Pass a position back as `start` to resume right
    after that document. Empty documents are skipped and counted.

    shared=True: a small file's documents may come from this process's memory (read once,
    see MEMORY_MB_DEFAULT), the same objects on every pass and for every caller that asks
    for them shared: the caller must not change them (the tasks' streams only read)."""
    spec = CorpusSpec.from_dict(spec)
    stats = stats if stats is not None else Counter()
    files = spec.files()
    start = start or {}
    first_file = int(start.get("file", 0))
    n_docs = int(start.get("doc", 0))
    annotator = None
    for k in range(first_file, len(files)):
        path = files[k]
        fmt = spec.format if spec.format != "auto" else sniff_format(path)
        if fmt == "prepared":
            from ernie2.corpus.prepare import read_prepared as read
        else:
            read = READERS[fmt]
            if spec.annotate and annotator is None:
                annotator = Annotator(spec.annotation())
        reader_start = start.get("reader") if k == first_file else None
        if shared and annotator is None and \
                (kept := _in_memory(path, fmt, spec, read)) is not None:
            docs = _resumed(kept, reader_start)
        else:
            docs = read(path, lang=spec.lang, on_error=spec.on_error, stats=stats,
                        start=reader_start, **spec.reader_options)
        for doc, pos in docs:
            if not doc.paragraphs or not any(p for p in doc.paragraphs):
                stats["skipped_empty_documents"] += 1
                continue
            if fmt != "prepared" and annotator is not None:
                annotator(doc)
            n_docs += 1
            yield doc, {"file": k, "reader": pos, "doc": n_docs}
        # The next file starts from its beginning.
        start = {}


# Files (or prepared directories) up to this many MB are read once per process and their documents
# kept in memory: every task's stream and every pass then reads the same Document objects, and
# each sentence is tokenized once (tasks.tokens caches by sentence). ERNIE2_CORPUS_MEMORY_MB
# sets it; 0 turns it off. A file is kept only when a whole pass reads it without skipping a
# line, so a replay counts what a reading would.
MEMORY_MB_DEFAULT = 64


@dataclass
class _Kept:
    docs: list[tuple[Document, Position]]
    size: int  # the file's bytes
    index: dict[str, int] | None = None  # position (as JSON) -> the document it follows


# Oldest first; the files kept hold at most twice the limit together (a long-lived process that
# reads many files, or one file rewritten again and again, does not grow without bound).
_KEPT: dict[tuple, _Kept | None] = {}


def memory_limit_mb() -> float:
    raw = os.environ.get("ERNIE2_CORPUS_MEMORY_MB", str(MEMORY_MB_DEFAULT))
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"ERNIE2_CORPUS_MEMORY_MB must be a number of MB, got {raw!r}") from None


def _size(path: Path) -> tuple[int, int]:
    """Bytes and the newest modification time of a file, or of a directory's files."""
    if path.is_dir():
        stats = [p.stat() for p in sorted(path.iterdir()) if p.is_file()]
        return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _in_memory(path: Path, fmt: str, spec: CorpusSpec, read) -> _Kept | None:
    limit = memory_limit_mb()
    if limit <= 0:
        return None
    size, mtime = _size(path)
    if size > limit * 2 ** 20:
        return None
    key = (str(path.resolve()), size, mtime, fmt, spec.lang, spec.on_error,
           json.dumps(spec.reader_options, sort_keys=True, default=str))
    if key not in _KEPT:
        read_stats: Counter = Counter()
        docs = list(read(path, lang=spec.lang, on_error=spec.on_error, stats=read_stats,
                         **spec.reader_options))
        _KEPT[key] = None if +read_stats else _Kept(docs, size)
        budget = 2 * limit * 2 ** 20
        while sum(k.size for k in _KEPT.values() if k) > budget:
            del _KEPT[next(iter(_KEPT))]
    return _KEPT[key]


def _resumed(kept: _Kept, start: Position | None) -> Iterator[tuple[Document, Position]]:
    first = 0
    if start is not None:
        if kept.index is None:
            kept.index = {json.dumps(pos, sort_keys=True): i for i, (_, pos) in
                          enumerate(kept.docs)}
        at = kept.index.get(json.dumps(start, sort_keys=True))
        if at is None:
            raise ValueError(f"resume position {start} is not the end of a document of this "
                             "file: was it changed since the checkpoint?")
        first = at + 1
    for i in range(first, len(kept.docs)):
        yield kept.docs[i]


def iter_documents(spec: CorpusSpec | dict | str, stats: Counter | None = None
                   ) -> Iterator[Document]:
    """The Documents of a corpus, in order, annotated as the spec asks."""
    for doc, _ in iter_positioned(spec, stats=stats):
        yield doc


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def mix_seed(*parts: int) -> int:
    """A 64-bit seed from integers, well mixed (the seed of one document's draws)."""
    h = 0
    for p in parts:
        h = _splitmix64(h ^ (p & 0xFFFFFFFFFFFFFFFF))
    return h


def is_heldout(doc_index: int, fraction: float, seed: int = 0) -> bool:
    """Deterministically set aside about `fraction` of the documents (by a hash of their index
    in the corpus, 0-based) for evaluation: train and eval never share a document."""
    if fraction <= 0:
        return False
    return mix_seed(seed, 0x4E1D, doc_index) < fraction * 2.0 ** 64


def write_jsonl(docs, path, gz: bool | None = None) -> int:
    """Write Documents as JSON lines (gzip when the name ends in .gz); returns the count."""
    from ernie2.corpus.readers import document_to_json
    from ernie2.utils import atomic_open

    path = Path(path)
    gz = path.suffix == ".gz" if gz is None else gz
    n = 0
    with atomic_open(path, "wb") as raw:
        fh = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if gz else raw
        for doc in docs:
            fh.write(json.dumps(document_to_json(doc), ensure_ascii=False).encode("utf-8"))
            fh.write(b"\n")
            n += 1
        if gz:
            fh.close()
    return n
