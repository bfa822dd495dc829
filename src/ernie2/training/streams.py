"""Example streams over a corpus: one task's examples, seeded, sharded by rank, resumable.

Held-out documents (a deterministic hash of their index k in the corpus) are never trained on;
the j-th training document of an epoch goes to rank j mod world. Each document's draws come from
its own generator seeded by (seed, task id, epoch, k), so the examples do not depend on how many
ranks share the work: when every document yields an example, rank r's stream holds exactly the
examples j = r, r + world, ... of the single-process stream. A stream's whole state is a corpus
position, an epoch, the training-document count and the task's own state (if any).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Iterator

from ernie2.tasks.base import Example


class DocumentStream:
    def __init__(self, task, corpus: Any, *, seed: int, task_id: int, rank: int = 0,
                 world: int = 1, heldout: float = 0.0, split: str = "train",
                 name: str | None = None):
        from ernie2.corpus.spec import CorpusSpec
        if split not in ("train", "eval"):
            raise ValueError(f"split must be train or eval, got {split!r}")
        self.task = task
        self.spec = CorpusSpec.from_dict(corpus)
        self.seed, self.task_id = seed, task_id
        self.rank, self.world = rank, world
        self.heldout, self.split = heldout, split
        self.name = name or getattr(task, "name", "task")
        self.epoch = 0
        self.position: dict | None = None
        self.built_this_epoch = 0
        self.ordinal = 0  # training documents seen this epoch (all ranks' shares)
        self.stats: Counter = Counter()
        self._it: Iterator[Example] | None = None

    def _mine(self, k: int) -> bool:
        from ernie2.corpus.spec import is_heldout
        held = is_heldout(k, self.heldout, self.seed)
        if self.split == "eval":
            return held  # evaluation sets are read whole by every rank, then sharded
        if held:
            return False
        j = self.ordinal
        self.ordinal += 1
        return j % self.world == self.rank

    def _generate(self) -> Iterator[Example]:
        from ernie2.corpus.spec import iter_positioned, mix_seed
        while True:
            for doc, pos in iter_positioned(self.spec, start=self.position, stats=self.stats):
                k = pos["doc"] - 1
                self.position = pos
                if not self._mine(k):
                    continue
                rng = random.Random(mix_seed(self.seed, self.task_id, self.epoch, k))
                ex = self.task.build(doc, rng)
                if ex is None:
                    self.stats["no_example"] += 1
                    continue
                self.built_this_epoch += 1
                yield ex
            if self.built_this_epoch == 0:
                raise ValueError(
                    f"task {self.name}: not one {self.split} example could be built from "
                    f"{self.spec.path} (rank {self.rank} of {self.world}); the corpus may be "
                    f"too small or not suit this task ({dict(self.stats)})")
            self.epoch += 1
            self.position = None
            self.built_this_epoch = 0
            self.ordinal = 0

    def __iter__(self):
        return self

    def __next__(self) -> Example:
        if self._it is None:
            self._it = self._generate()
        return next(self._it)

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "position": self.position,
                 "built_this_epoch": self.built_this_epoch, "ordinal": self.ordinal}
        if hasattr(self.task, "state_dict"):
            state["task"] = self.task.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.position = state["position"]
        self.built_this_epoch = int(state.get("built_this_epoch", 0))
        self.ordinal = int(state.get("ordinal", 0))
        if "task" in state and hasattr(self.task, "load_state_dict"):
            self.task.load_state_dict(state["task"])
        self._it = None
