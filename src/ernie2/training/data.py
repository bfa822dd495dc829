"""Feeding a stage: which examples of which tasks make each optimizer step, split into micro-batches.

The trainer reads examples through a small interface, one stream per task: an iterator of
`Example`s with `state_dict()` / `load_state_dict()` (its position, JSON-safe). Each step is
built only from the stage's allocation, the step's index and the streams, so a resumed run that
restores the streams' states builds exactly the same steps.

Two ways to mix tasks (`mix`):
- "step": every optimizer step trains one task; the stage's allocation says how many steps each
  task gets, spread evenly over the stage (`compositions` with one slot per step);
- "batch": every step's batch holds examples of all tasks in play, in proportion to the
  allocation (the encoder runs once over the mixed batch, each head on its own rows).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from ernie2.model.batch import length_batches, rank_of
from ernie2.model.heads import IGNORE_INDEX
from ernie2.tasks.protocol import Example, collate


class ExampleSource(Protocol):
    """Examples of one task, in a fixed order for a given seed, rank and world size."""

    def __iter__(self) -> Iterator[Example]: ...

    def __next__(self) -> Example: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def compositions(counts: dict[str, int], steps: int, slots: int) -> list[dict[str, int]]:
    """For each of `steps` steps, how many of its `slots` each task fills, so that over the
    stage task t fills exactly `counts[t] * slots` slots (counts sum to `steps`).

    Each step rounds every task's running quota by largest remainder, carrying what it owes
    to the next step; deficits stay within one slot, so the totals come out exact and every
    task's share is spread evenly. With one slot per step this is stride scheduling: each task
    runs once every steps/counts[t] steps or so, never long absent."""
    if sum(counts.values()) != steps:
        raise ValueError(f"allocation {counts} does not add up to {steps} steps")
    names = list(counts)
    owed = {n: 0.0 for n in names}
    rate = {n: counts[n] * slots / steps for n in names} if steps else {}
    out = []
    for _ in range(steps):
        target = {n: owed[n] + rate[n] for n in names}
        take = {n: max(0, math.floor(target[n] + 1e-9)) for n in names}
        left = slots - sum(take.values())
        order = sorted(names, key=lambda n: (-(target[n] - take[n]), -counts[n], names.index(n)))
        for n in order[:max(0, left)]:
            take[n] += 1
        for n in names:
            owed[n] = target[n] - take[n]
        out.append({n: k for n, k in take.items() if k})
    return out


def scored_units(batch: dict[str, torch.Tensor]) -> int:
    """Labels that are scored (not IGNORE_INDEX): masked tokens, labelled examples."""
    return int((batch["labels"] != IGNORE_INDEX).sum())


def units_of(micro: dict[str, dict[str, torch.Tensor]]) -> dict[str, tuple[float, float]]:
    """The loop's units_fn for multi-task micro-batches {task: batch}."""
    return {name: (float(scored_units(b)), float(b["input_ids"].shape[0]))
            for name, b in micro.items()}


@dataclass
class Batching:
    """Global batch and micro-batch sizes, in examples or in tokens (token budget)."""

    batch_size: int = 32  # examples per optimizer step, over all ranks
    micro_batch_size: int | None = None  # examples per forward pass (None: the whole share)
    batch_tokens: int | None = None  # if set: tokens per optimizer step, over all ranks
    micro_batch_tokens: int | None = None  # if set: padded tokens per forward pass

    def rank_share(self, world: int) -> tuple[int | None, int | None]:
        """(examples, tokens) one rank draws per step."""
        if self.batch_tokens:
            return None, math.ceil(self.batch_tokens / world)
        return self.batch_size // world, None


class StageFeeder:
    """Iterator over optimizer steps of one stage: each item is this rank's micro-batches,
    each micro-batch a dict {task name: collated batch}."""

    def __init__(self, counts: dict[str, int], steps: int, streams: dict[str, ExampleSource],
                 batching: Batching, mix: str = "step", rank: int = 0, world: int = 1,
                 pad_id: int = 0, start: int = 0, task_ids: dict[str, int] | None = None,
                 consumed: dict[str, int] | None = None):
        if mix not in ("step", "batch"):
            raise ValueError(f"mix must be 'step' or 'batch', got {mix!r}")
        missing = [t for t in counts if t not in streams]
        if missing:
            raise KeyError(f"no example stream for {', '.join(missing)}")
        self.streams = streams
        self.batching = batching
        self.mix = mix
        self.rank, self.world = rank, world
        self.pad_id = pad_id
        self.task_ids = task_ids
        slots = 1 if mix == "step" else max(1, batching.batch_size)
        self.slots = slots
        self.plan = compositions(counts, steps, slots)
        self.position = start  # index of the next step
        # Examples of each task drawn so far over all ranks (shared across stages): each rank
        # takes its global examples of the task (`rank_of`), so ranks together draw what one
        # process would (given streams sharded the same way).
        self.consumed = consumed if consumed is not None else {}

    def __iter__(self):
        return self

    def _draw(self, name: str, first: int, k: int) -> list[Example]:
        """This rank's examples of one task for one step: the task fills slots
        [first, first + k) of the step's `slots` (or that share of the token budget); its
        global examples are dealt over ranks by their running index (`rank_of`)."""
        _, n_tokens = self.batching.rank_share(self.world)
        stream = self.streams[name]
        out: list[Example] = []
        if n_tokens is not None:
            budget = max(1, round(n_tokens * k / self.slots))
            used = 0
            while used < budget:  # the last example may cross the budget: nothing is held back
                ex = next(stream)
                out.append(ex)
                used += len(ex.input_ids)
        else:
            size = self.batching.batch_size
            n = (first + k) * size // self.slots - first * size // self.slots
            done = self.consumed.get(name, 0)
            for j in range(done, done + n):
                if rank_of(j, self.world) == self.rank:
                    out.append(next(stream))
            self.consumed[name] = done + n
        return out

    def __next__(self) -> list[dict[str, dict[str, torch.Tensor]]]:
        if self.position >= len(self.plan):
            raise StopIteration
        comp = self.plan[self.position]
        self.position += 1
        drawn: list[tuple[str, Example]] = []
        first = 0
        for name, k in comp.items():
            drawn.extend((name, ex) for ex in self._draw(name, first, k))
            first += k
        groups = length_batches([len(e.input_ids) for _, e in drawn],
                                self.batching.micro_batch_size or None,
                                self.batching.micro_batch_tokens or None)
        micro = []
        for idx in groups:
            by_task: dict[str, list[Example]] = {}
            for i in sorted(idx):
                name, ex = drawn[i]
                by_task.setdefault(name, []).append(ex)
            # Each task's rows get the plan's fixed task-embedding row, whatever the task set.
            micro.append({t: collate(exs, self.pad_id,
                                     None if self.task_ids is None else self.task_ids[t])
                          for t, exs in by_task.items()})
        return micro

    def state_dict(self) -> dict:
        return {"position": self.position, "consumed": dict(self.consumed),
                "streams": {n: s.state_dict() for n, s in self.streams.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
        self.consumed.clear()
        self.consumed.update({k: int(v) for k, v in state.get("consumed", {}).items()})
        for n, s in state["streams"].items():
            if n in self.streams:
                self.streams[n].load_state_dict(s)
