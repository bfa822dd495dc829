"""The tasks' example streams as the trainer reads them: a persistent iterator with a state, and
the two ways of sharding them over ranks.

- "documents": each rank streams its own documents (tasks.stream shards by document index);
  cheap, and a W-process run trains on different (equally distributed) examples than a
  1-process run.
- "examples": every rank streams the whole corpus and keeps its global examples (`rank_of`);
  each rank builds every example, and a W-process run trains on exactly the
  global batches of a 1-process run with the same seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import zlib
from dataclasses import fields
from typing import Any

from ernie2.corpus.prepare import cached_corpus, corpus_cache, corpus_fingerprint, formats
from ernie2.corpus.readers import document_to_json
from ernie2.corpus.spec import CorpusSpec, is_heldout, iter_positioned
from ernie2.model.batch import rank_of
from ernie2.tasks.protocol import Example, concat_examples, require_token_labels
from ernie2.tasks.stream import ExampleStream, stream_examples
from ernie2.training import distributed as dist_util
from ernie2.training.snapshots import random_state_from_json, random_state_to_json
from ernie2.utils import atomic_open

logger = logging.getLogger(__name__)

SHARDING = ("documents", "examples")


_EXAMPLE_FIELDS = fields(Example)


def _example_state(ex: Example) -> dict[str, Any]:
    """An example as JSON-safe state: dataclasses.asdict without its item-by-item deep copy (a
    checkpoint holds thousands of buffered examples; their fields are ints and lists of ints)."""
    return {f.name: (list(v) if isinstance(v := getattr(ex, f.name), list) else v)
            for f in _EXAMPLE_FIELDS}


class TaskStream:
    """`next(stream)` -> Example; `state_dict()` / `load_state_dict()` resume exactly.

    shuffle: the size of a shuffle buffer (0: none). A stream yields a document's examples one
    after another (up to 16 from a long document); without a buffer a batch of 32 holds two or
    three documents, and its gradient is far noisier than that of 32 independent examples.
    The buffer holds `shuffle` examples and answers each `next` with a random one of them,
    refilled from the stream. Its contents and random state are part of the state, so a
    resumed run draws the same examples. With example sharding the buffer sits before the
    rank's share (same seed on every rank), so N processes still see the batches of 1.

    pack: a token budget (0: off). Consecutive examples (after the shuffle buffer, before the
    rank's share) are joined into one, [CLS] a [SEP] b [SEP] ..., while they fit in `pack`
    tokens (`concat_examples`); the example that did not fit opens the next one and is part of
    the state. Token-level tasks only: a short document's example (a review of 30 characters in
    a batch padded to 96) otherwise trains mostly on padding."""

    def __init__(self, stream: ExampleStream, rank: int = 0, world: int = 1,
                 shuffle: int = 0, seed: int = 0, pack: int = 0):
        if shuffle < 0:
            raise ValueError(f"shuffle buffer size must be >= 0, got {shuffle}")
        if pack < 0:
            raise ValueError(f"pack must be a token budget >= 0, got {pack}")
        self.stream = stream
        self.rank, self.world = rank, world  # example-level sharding (stream sees every doc)
        # Examples pulled from the stream so far, the index of the next one: the rank that index
        # falls to takes it. Only its remainder by `world` matters, so a state keeps whether
        # this rank took an example yet (then it is rank + 1, modulo world).
        self.pulled = 0
        self._it = None
        self.shuffle = shuffle
        self.buffer: list[Example] = []
        self.rng = random.Random(seed)
        self.pack = pack
        self.pending: Example | None = None  # packing: the example that opens the next one

    def __iter__(self):
        return self

    def _pull(self) -> Example:
        if self._it is None:
            self._it = iter(self.stream)
        if not self.shuffle:
            return next(self._it)
        while len(self.buffer) < self.shuffle:
            self.buffer.append(next(self._it))
        k = self.rng.randrange(len(self.buffer))
        example, self.buffer[k] = self.buffer[k], self.buffer[-1]
        self.buffer.pop()
        return example

    def _packed(self) -> Example:
        if not self.pack:
            return self._pull()
        first, self.pending = self.pending or self._pull(), None
        require_token_labels(first)
        parts, total = [first], len(first.input_ids)
        while total < self.pack:
            ex = self._pull()
            if total + len(ex.input_ids) - 1 > self.pack:  # its [CLS] is dropped when joined
                self.pending = ex
                break
            parts.append(ex)
            total += len(ex.input_ids) - 1
        return concat_examples(parts) if len(parts) > 1 else first

    def __next__(self) -> Example:
        while True:
            example = self._packed()
            index, self.pulled = self.pulled, self.pulled + 1
            if rank_of(index, self.world) == self.rank:
                return example

    def state_dict(self) -> dict[str, Any]:
        state = {"stream": self.stream.state_dict(), "started": self.pulled > 0}
        if self.shuffle:
            state["shuffle"] = {"size": self.shuffle,
                                "rng": random_state_to_json(self.rng.getstate()),
                                "buffer": [_example_state(ex) for ex in self.buffer]}
        if self.pack:
            state["pack"] = {"size": self.pack,
                             "pending": _example_state(self.pending) if self.pending else None}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("shuffle")
        if (saved["size"] if saved else 0) != self.shuffle:
            raise ValueError(f"the checkpoint's shuffle buffer holds "
                             f"{saved['size'] if saved else 0} examples, this run's "
                             f"{self.shuffle}: resume with the same train.shuffle_buffer")
        packed = state.get("pack")
        if (packed["size"] if packed else 0) != self.pack:
            raise ValueError(f"the checkpoint's stream packs examples into "
                             f"{packed['size'] if packed else 0} tokens (0: no packing), this "
                             f"run's into {self.pack}: resume with the same tasks' pack and "
                             f"model.max_len")
        self.stream.load_state_dict(state["stream"])
        self.pulled = self.rank + 1 if state["started"] else 0
        self.pending = Example(**packed["pending"]) if packed and packed["pending"] else None
        self._it = None
        if saved:
            self.rng.setstate(random_state_from_json(saved["rng"]))
            self.buffer = [Example(**ex) for ex in saved["buffer"]]


def train_stream(task, corpus: dict, *, seed: int, heldout: float, rank: int, world: int,
                 sharding: str = "documents", shuffle: int = 0, pack: int = 0) -> TaskStream:
    if sharding not in SHARDING:
        raise ValueError(f"sharding must be one of {', '.join(SHARDING)}, got {sharding!r}")
    by_doc = sharding == "documents"
    stream = stream_examples(task, corpus, seed=seed, rank=rank if by_doc else 0,
                             world_size=world if by_doc else 1, split="train", heldout=heldout,
                             heldout_seed=seed)
    # Documents sharding: each rank shuffles its own examples; examples sharding: every rank
    # shuffles the global stream alike, then keeps its share.
    buffer_seed = zlib.crc32(f"{seed}/{task.name}/{rank if by_doc else 0}".encode())
    return TaskStream(stream, 0 if by_doc else rank, 1 if by_doc else world, shuffle=shuffle,
                      seed=buffer_seed, pack=pack)


def shared_corpus(spec: dict, *, progress: bool = True) -> CorpusSpec:
    """The corpus every task of a run reads, segmented and annotated once (corpus.cached_corpus):
    rank 0 prepares it while the other ranks wait, then they all read the same copy."""
    rank = dist_util.rank()
    if rank != 0:
        dist_util.barrier()
    prepared = cached_corpus(spec, progress=progress and rank == 0)
    if rank == 0:
        dist_util.barrier()
    return prepared


# A training document in a held-out view: one short sentence, parsed in microseconds.
_STAND_IN = json.dumps({"lang": "en", "paragraphs": [["-"]]}) + "\n"


def heldout_view(corpus: dict | CorpusSpec, heldout: float, seed: int) -> CorpusSpec:
    """The corpus with every training document replaced by a one-word stand-in, written once to
    the corpus cache: the held-out documents keep their indices, and so their examples, while a
    pass over them parses a small file instead of the whole corpus (a held-out set of a few
    hundred examples from a dozen documents takes tens of passes). ERNIE 1.0 id files, whose
    documents JSON does not hold, are read as they are."""
    spec = CorpusSpec.from_dict(corpus)
    if "ernie1" in formats(spec):
        return spec
    key = json.dumps([corpus_fingerprint(spec), heldout, seed], sort_keys=True)
    path = corpus_cache() / "heldout" / f"{hashlib.sha1(key.encode('utf-8')).hexdigest()}.jsonl"
    if not path.is_file():
        with atomic_open(path, "w", encoding="utf-8") as fh:
            for doc, pos in iter_positioned(spec):
                fh.write(json.dumps(document_to_json(doc), ensure_ascii=False) + "\n"
                         if is_heldout(pos["doc"] - 1, heldout, seed) else _STAND_IN)
    return CorpusSpec(str(path), format="jsonl", lang=spec.lang, annotate=False)


def heldout_examples(task, corpus: dict | CorpusSpec, *, seed: int, heldout: float, n: int,
                     name: str, progress: bool = False) -> list[Example]:
    """The first `n` examples of the documents set aside for evaluation (same on every rank),
    one per document per pass (further passes draw new ones), so that the set spreads over as
    many documents as it can rather than taking a few documents' many examples.

    Examples are not deduplicated: a task whose labels differ in how many distinct examples a
    document gives (one title/lead pair, many unrelated leads) would otherwise be scored on a
    skewed label mix. Chance is measured on the same set."""
    stream = iter(stream_examples(task, heldout_view(corpus, heldout, seed), seed=seed,
                                  split="eval", heldout=heldout, heldout_seed=seed,
                                  max_builds_per_doc=1))
    out = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc=f"held-out examples of {name}", unit=" ex", leave=False,
                   dynamic_ncols=True)
    try:
        for ex in stream:
            out.append(ex)
            if bar is not None:
                bar.update()
            if len(out) >= n:
                break
    except ValueError as exc:
        raise ValueError(f"task {name}: no held-out example ({exc}); raise eval.heldout or "
                         "give the corpus more documents") from None
    finally:
        if bar is not None:
            bar.close()
    logger.info("task %s: %d held-out examples", name, len(out))
    return out
