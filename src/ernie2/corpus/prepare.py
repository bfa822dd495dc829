"""Multi-process preprocessing of a corpus into sharded, cached JSONL files of annotated
documents, and the reader that streams them back in the original document order."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any

from ernie2.corpus.readers import read_jsonl
from ernie2.corpus.spec import MANIFEST, CorpusSpec, iter_positioned, sniff_format, write_jsonl
from ernie2.utils import atomic_write_text

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def corpus_fingerprint(spec: CorpusSpec) -> dict[str, Any]:
    """What a corpus's documents depend on: the spec and the source files' sizes and times (a
    prepared directory by its manifest)."""
    paths = [p / MANIFEST if p.is_dir() else p for p in spec.files()]
    files = [{"path": str(p.resolve()), "size": p.stat().st_size,
              "mtime_ns": p.stat().st_mtime_ns} for p in paths]
    return {"version": FORMAT_VERSION, "spec": spec.to_dict(), "files": files}


def _fingerprint(spec: CorpusSpec, max_docs: int | None, shards: int) -> dict[str, Any]:
    return {**corpus_fingerprint(spec), "max_docs": max_docs, "shards": shards}


def _shard_name(k: int, n: int) -> str:
    return f"docs-{k:05d}-of-{n:05d}.jsonl"


def _work(args) -> tuple[int, int, dict[str, int]]:
    """Worker: read the whole corpus, annotate and write every document whose index is k mod n
    (reading is cheap next to segmentation and annotation; no documents cross processes).
    `progress`: a bar over the documents (the in-process case; several workers get one over
    the shards instead)."""
    spec_dict, out_dir, k, n, max_docs, progress = args
    spec = CorpusSpec.from_dict(spec_dict)
    raw = CorpusSpec.from_dict({**spec_dict, "annotate": False})
    stats: Counter = Counter()
    from ernie2.corpus.annotate import Annotator

    annotate = Annotator(spec.annotation()) if spec.annotate else (lambda d: d)

    def mine():
        for doc, pos in islice(iter_positioned(raw, stats=stats), max_docs):
            if (pos["doc"] - 1) % n == k:
                yield annotate(doc)

    docs = mine()
    if progress:
        from tqdm import tqdm
        docs = tqdm(docs, desc=f"segmenting and annotating {_describe(spec)}", unit=" doc",
                    total=max_docs, dynamic_ncols=True)
    count = write_jsonl(docs, Path(out_dir) / _shard_name(k, n))
    return k, count, dict(stats) if k == 0 else {}


def _valid_manifest(spec: CorpusSpec, out: Path, max_docs: int | None, shards: int) -> bool:
    """Whether `out` holds this spec's corpus prepared from the source files as they are now."""
    try:
        old = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return old.get("fingerprint") == _fingerprint(spec, max_docs, shards) and all(
        (out / s["path"]).is_file() for s in old.get("shards", []))


def prepare_corpus(spec: CorpusSpec | dict | str, out_dir: str | os.PathLike, workers: int = 1,
                   shards: int | None = None, max_docs: int | None = None,
                   force: bool = False, progress: bool = True) -> Path:
    """Annotate a corpus into `out_dir` (shards + manifest.json) with `workers` processes.

    Nothing is redone when the manifest records the same spec, the same source files (size and
    modification time), max_docs and shard count, unless `force`. The result reads back as a
    corpus (format "prepared") with the documents in their original order, whatever the number
    of workers. Returns the manifest path.
    """
    spec = CorpusSpec.from_dict(spec)
    out = Path(out_dir)
    shards = shards or max(1, workers)
    fp = _fingerprint(spec, max_docs, shards)
    manifest = out / MANIFEST
    if not force and _valid_manifest(spec, out, max_docs, shards):
        return manifest
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(spec.to_dict(), str(out), k, shards, max_docs, progress and workers <= 1)
            for k in range(shards)]
    results = []
    if workers <= 1:
        results = [_work(j) for j in jobs]
    else:
        # fork: workers inherit the loaded modules instead of re-importing torch and jieba.
        ctx = multiprocessing.get_context("fork") if hasattr(os, "fork") else None
        with (ctx or multiprocessing).Pool(min(workers, shards)) as pool:
            it = pool.imap_unordered(_work, jobs)
            if progress:
                from tqdm import tqdm
                it = tqdm(it, total=shards, desc="prepare shards", unit="shard")
            results = list(it)
    results.sort()
    stats = results[0][2] if results else {}
    info = {"fingerprint": fp, "documents": sum(c for _, c, _ in results),
            "shards": [{"path": _shard_name(k, shards), "documents": c} for k, c, _ in results],
            "stats": stats}
    atomic_write_text(manifest, json.dumps(info, ensure_ascii=False, indent=1) + "\n")
    return manifest


def _describe(spec: CorpusSpec) -> str:
    paths = spec.path if isinstance(spec.path, list) else [spec.path]
    return Path(str(paths[0])).name + (f" (+{len(paths) - 1} more)" if len(paths) > 1 else "")


def corpus_cache() -> Path:
    """Where raw corpora are prepared for pre-training: $ERNIE2_CORPUS_CACHE, else
    $ERNIE2_HOME/corpora (default ~/.cache/ernie2/corpora)."""
    if os.environ.get("ERNIE2_CORPUS_CACHE"):
        return Path(os.environ["ERNIE2_CORPUS_CACHE"]).expanduser()
    from ernie2.hub import cache_home
    return cache_home() / "corpora"


def formats(spec: CorpusSpec) -> set[str]:
    """The formats the corpus's files are read with."""
    return {spec.format if spec.format != "auto" else sniff_format(p) for p in spec.files()}


def needs_preparing(spec: CorpusSpec) -> bool:
    """Whether reading the corpus segments or annotates (work to do once, not on every pass):
    raw files read with annotation on; prepared directories and ERNIE 1.0 id files are not."""
    return spec.annotate and bool(formats(spec) - {"prepared", "ernie1"})


def cached_corpus(spec: CorpusSpec | dict | str, *, progress: bool = True,
                  cache: str | os.PathLike | None = None) -> CorpusSpec:
    """A corpus to read many times: one that needs segmenting or annotating is prepared once
    into `cache` (default `corpus_cache()`, one directory per spec, redone only when the spec
    or a source file changes) and returned as that prepared directory; any other as it is.
    The prepared corpus yields the same documents in the same order."""
    spec = CorpusSpec.from_dict(spec)
    if not needs_preparing(spec):
        return spec
    resolved = {**spec.to_dict(), "path": [str(p.resolve()) for p in spec.files()]}
    key = hashlib.sha1(json.dumps(resolved, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    out = Path(cache or corpus_cache()) / f"{Path(resolved['path'][0]).stem}-{key}"
    if _valid_manifest(spec, out, None, 1):
        logger.info("corpus %s: reusing its prepared copy %s", _describe(spec), out)
    else:
        logger.info("corpus %s: segmenting and annotating it once into %s (reused by later "
                    "runs; `ernie2 data prepare --workers N` does it with several processes)",
                    _describe(spec), out)
    prepare_corpus(spec, out, progress=progress)
    return CorpusSpec(str(out), lang=spec.lang, on_error=spec.on_error, annotate=False)


def read_prepared(path, lang="auto", on_error="raise", stats=None, start=None, **_):
    """Documents of a prepared directory, round-robin over the shards (shard k holds documents
    k, k+n, k+2n, ...), which restores the original order. Position: every shard's offset and
    the shard whose turn is next."""
    path = Path(path)
    info = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    names = [s["path"] for s in info["shards"]]
    n = len(names)
    offsets = list((start or {}).get("shards") or [None] * n)
    turn = int((start or {}).get("next", 0))
    readers = [read_jsonl(path / name, lang=lang, on_error=on_error, stats=stats,
                          start=offsets[k]) for k, name in enumerate(names)]
    while True:
        item = next(readers[turn], None)
        if item is None:
            return
        doc, pos = item
        offsets[turn] = pos
        turn = (turn + 1) % n
        yield doc, {"shards": list(offsets), "next": turn}
