"""Endless, seeded, sharded and resumable streams of one task's examples from a corpus."""

from __future__ import annotations

import math
import random
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from ernie2.corpus.document import Document
from ernie2.corpus.spec import CorpusSpec, is_heldout, iter_positioned, mix_seed
from ernie2.model.batch import rank_of
from ernie2.tasks.protocol import (Example, PretrainingTask, collate, load_task_state, member,
                                   task_state)

SPLITS = ("train", "eval", "all")
MAX_EMPTY_PASSES = 8  # passes in a row that build no example before a stream gives up


def estimated_tokens(doc: Document) -> float:
    """A cheap token count: one per Chinese character, one per four characters otherwise."""
    total = 0.0
    for s in doc.sentences:
        if s.token_ids is not None:
            total += len(s.token_ids)
        else:
            total += len(s.text) if doc.lang == "zh" else len(s.text) / 4.0
    return total


class ExampleStream:
    """Examples of one task, built from a corpus's documents over and over (epochs).

    Each document gives `builds` examples per epoch (about one per `max_len` tokens of it, at
    most `max_builds_per_doc`, or the task's own `builds_per_document` when it has one), each
    from its own random generator seeded by (seed, task name, epoch, document index, build
    number): the same seed gives the same examples whatever the
    sharding, and a stream resumes exactly from `state_dict()`.

    rank / world_size: this process takes the documents whose index falls to it (`rank_of`).
    split / heldout: with heldout > 0, "train" skips and "eval" keeps only the documents that
    is_heldout(index, heldout, heldout_seed) sets aside ("all" keeps every document).
    epochs: stop after that many passes (None: endless).
    """

    def __init__(self, task: PretrainingTask, corpus: CorpusSpec | dict | str, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1, split: str = "train",
                 heldout: float = 0.0, heldout_seed: int = 0, epochs: int | None = None,
                 max_builds_per_doc: int = 16, state: dict[str, Any] | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if not 0 <= heldout < 1:
            raise ValueError(f"heldout must be a fraction in [0, 1), got {heldout}")
        if split == "eval" and heldout <= 0:
            raise ValueError("split='eval' needs heldout > 0 (the fraction set aside)")
        self.task = task
        self.corpus = CorpusSpec.from_dict(corpus)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.split, self.heldout, self.heldout_seed = split, heldout, heldout_seed
        self.epochs, self.max_builds = epochs, max_builds_per_doc
        self.max_len = int(member(task, "max_len"))
        self._task_hash = zlib.crc32(task.name.encode("utf-8"))
        self.corpus_stats: Counter = Counter()
        self.counts: Counter = Counter()
        self.epoch = 0
        self._position: dict[str, Any] | None = None  # before the current document
        self._build = 0  # builds of the current document already done
        if state is not None:
            self.load_state_dict(state)

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Where the stream is: after the last example it yielded. Small and JSON-able, except
        for what the task itself keeps (e.g. a reservoir of recent documents)."""
        return {"task": self.task.name, "epoch": self.epoch, "position": self._position,
                "build": self._build, "task_state": task_state(self.task),
                "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("task") != self.task.name:
            raise ValueError(f"stream state is for task {state.get('task')!r}, "
                             f"not {self.task.name!r}")
        self.epoch, self._position, self._build = state["epoch"], state["position"], \
            state["build"]
        self.counts = Counter(state.get("counts", {}))
        load_task_state(self.task, state.get("task_state"))

    @property
    def stats(self) -> dict[str, Any]:
        task_stats = dict(member(self.task, "stats") or {})
        return {"epoch": self.epoch, **self.counts, **self.corpus_stats, **task_stats}

    # ------------------------------------------------------------------------- iteration
    def _wanted(self, index: int) -> bool:
        if rank_of(index, self.world_size) != self.rank:
            return False
        if self.split == "all" or self.heldout <= 0:
            return True
        return is_heldout(index, self.heldout, self.heldout_seed) == (self.split == "eval")

    def _builds(self, doc: Document) -> int:
        per = max(1, self.max_len - 2)
        # A task may cap it: one example per document when the document gives only one
        # distinct input (e.g. a title query).
        cap = member(self.task, "builds_per_document") or self.max_builds
        return max(1, min(self.max_builds, cap, math.ceil(estimated_tokens(doc) / per)))

    def __iter__(self) -> Iterator[Example]:
        rng = random.Random()
        empty_passes = 0
        while self.epochs is None or self.epoch < self.epochs:
            built_this_epoch = 0
            for doc, pos in iter_positioned(self.corpus, self._position, self.corpus_stats,
                                            shared=True):
                index = pos["doc"] - 1
                if self._wanted(index):
                    self.counts["documents"] += 1
                    for j in range(self._build, self._builds(doc)):
                        rng.seed(mix_seed(self.seed, self._task_hash, self.epoch, index, j))
                        example = self.task.build(doc, rng)
                        self._build = j + 1
                        if example is not None:
                            built_this_epoch += 1
                            self.counts["examples"] += 1
                            yield example
                self._position, self._build = pos, 0
            if built_this_epoch == 0 and self.counts["documents"] == 0:
                raise ValueError(f"{self.corpus.path}: no documents for rank {self.rank} of "
                                 f"{self.world_size} (split {self.split!r})")
            # Every pass draws new examples, so on a few documents (a small held-out split) one
            # pass may build none by chance after earlier ones did: give up only when nothing
            # was ever built, or after several empty passes in a row.
            empty_passes = empty_passes + 1 if built_this_epoch == 0 else 0
            if empty_passes and (self.counts["examples"] == 0
                                 or empty_passes >= MAX_EMPTY_PASSES):
                raise ValueError(
                    f"task {self.task.name!r} built no example in {empty_passes} whole "
                    f"pass(es) in a row over {self.corpus.path}; "
                    f"skips: {dict(member(self.task, 'stats') or {})}")
            self.epoch += 1
            self._position, self._build = None, 0


def stream_examples(task: PretrainingTask, corpus: CorpusSpec | dict | str,
                    **options: Any) -> ExampleStream:
    """ExampleStream(task, corpus, seed=0, rank=0, world_size=1, split="train", heldout=0.0,
    epochs=None, state=None): see ExampleStream."""
    return ExampleStream(task, corpus, **options)


def iter_batches(examples, batch_size: int, pad_id: int = 0) -> Iterator[dict]:
    """Group a stream of examples into padded batches (tasks.collate); the last partial batch
    of a finite stream is yielded too."""
    batch: list[Example] = []
    for ex in examples:
        batch.append(ex)
        if len(batch) == batch_size:
            yield collate(batch, pad_id)
            batch = []
    if batch:
        yield collate(batch, pad_id)
