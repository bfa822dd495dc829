"""The tasks' example streams as the trainer reads them: a persistent iterator with a state, and
the two ways of sharding them over ranks.

- "documents": each rank streams its own documents (tasks.stream shards by document index);
  cheap, and a W-process run trains on different (equally distributed) examples than a
  1-process run.
- "examples": every rank streams the whole corpus and keeps the global examples n with
  n % world == rank; each rank builds every example, and a W-process run trains on exactly the
  global batches of a 1-process run with the same seed.
"""

from __future__ import annotations

from typing import Any

from ernie2.tasks.base import Example
from ernie2.tasks.stream import ExampleStream, stream_examples

SHARDING = ("documents", "examples")


class TaskStream:
    """`next(stream)` -> Example; `state_dict()` / `load_state_dict()` resume exactly."""

    def __init__(self, stream: ExampleStream, rank: int = 0, world: int = 1):
        self.stream = stream
        self.rank, self.world = rank, world  # example-level sharding (stream sees every doc)
        self.started = False
        self._it = None

    def __iter__(self):
        return self

    def __next__(self) -> Example:
        if self._it is None:
            self._it = iter(self.stream)
        skip = self.world - 1 if self.started else self.rank
        for _ in range(skip):
            next(self._it)
        self.started = True
        return next(self._it)

    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "started": self.started}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.started = bool(state["started"])
        self._it = None


def train_stream(task, corpus: dict, *, seed: int, heldout: float, rank: int, world: int,
                 sharding: str = "documents") -> TaskStream:
    if sharding not in SHARDING:
        raise ValueError(f"sharding must be one of {', '.join(SHARDING)}, got {sharding!r}")
    by_doc = sharding == "documents"
    stream = stream_examples(task, corpus, seed=seed, rank=rank if by_doc else 0,
                             world_size=world if by_doc else 1, split="train", heldout=heldout,
                             heldout_seed=seed)
    return TaskStream(stream, 0 if by_doc else rank, 1 if by_doc else world)


def heldout_examples(task, corpus: dict, *, seed: int, heldout: float, n: int,
                     name: str) -> list[Example]:
    """The first `n` examples of the documents set aside for evaluation (same on every rank)."""
    stream = iter(stream_examples(task, corpus, seed=seed, split="eval", heldout=heldout,
                                  heldout_seed=seed))
    out = []
    try:
        for ex in stream:
            out.append(ex)
            if len(out) >= n:
                break
    except ValueError as exc:
        raise ValueError(f"task {name}: no held-out example ({exc}); raise eval.heldout or "
                         "give the corpus more documents") from None
    return out
