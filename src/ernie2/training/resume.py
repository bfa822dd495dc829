"""Saving and resuming a run, the same way for every recipe (pre-training, fine-tuning): a
checkpoint holds the trainer's model, optimizer, scheduler, loss scaler and loop counters, the
recipe's own `meta`, and each rank's data-order state and random state; a resume takes the
newest intact checkpoint, refuses one written for other settings or data, and restores the
trainer and the data order into the run, the random state last.

A recipe's data order is any object with `state_dict()` / `load_state_dict()` (the stage
feeder of pre-training, the fine-tuning steps).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ernie2.training.loop import Trainer
from ernie2.training.snapshots import CheckpointManager, Loaded, rng_state, set_rng_state

logger = logging.getLogger(__name__)


class DataOrder(Protocol):
    """Where a run is in its data, as JSON-safe state."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def save(ckpt: CheckpointManager, step: int, trainer: Trainer, data: DataOrder,
         meta: dict[str, Any]) -> None:
    """A checkpoint of step `step`: the trainer's module, optimizer and the rest of its state
    (scheduler, scaler, loop counters), `meta`, and this rank's data order and random state."""
    state = trainer.state_dict()
    optimizer = state.pop("optimizer")
    ckpt.save(step, trainer.module.state_dict(), optimizer, {**meta, "trainer": state},
              {"rng": rng_state(), "data": data.state_dict()})


def newest(ckpt: CheckpointManager) -> Loaded | None:
    """The newest checkpoint that loads (damaged newer ones are named and skipped), or None,
    said in a warning, when there is none: the run starts afresh."""
    loaded = ckpt.newest_intact()
    if loaded is None:
        logger.warning("--resume: no checkpoint in %s; starting afresh", ckpt.directory)
    return loaded


def check_written_for(loaded: Loaded, key: str, now: Any, what: str) -> None:
    """Refuse a checkpoint whose `meta[key]` is not this run's `now` (its settings or data)."""
    saved = loaded.meta.get(key)
    if saved != now:
        raise ValueError(f"{loaded.path} was written for {what} ({saved}, now {now}); start a "
                         "new output directory")


def restore(loaded: Loaded, trainer: Trainer, data: DataOrder, *, optimizer: bool = True,
            schedule: bool = True) -> None:
    """Into a trainer and its data order: the optimizer (unless the recipe has mapped it onto
    new parameters itself, `optimizer=False`), the scheduler and loss scaler (unless the
    checkpoint ended a part of the run whose successor starts its own, `schedule=False`), the
    loop counters and the data order; then, last, every random state, so that nothing draws
    between here and the first step."""
    state = dict(loaded.meta["trainer"])
    if optimizer:
        state["optimizer"] = loaded.optimizer
    if not schedule:
        state.pop("scheduler")
        state.pop("scaler", None)
    trainer.load_state_dict(state)
    data.load_state_dict(loaded.rank["data"])
    set_rng_state(loaded.rank["rng"])


__all__ = ["DataOrder", "check_written_for", "newest", "restore", "save"]
