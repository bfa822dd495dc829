"""Fitting with evaluation and checkpoints: what every driver (pre-training, fine-tuning,
distillation) runs around `Trainer.fit`, so that each says only *when* it evaluates, saves and
stops, and the order of those after a step is the same everywhere: evaluate, save, then stop
(saving first when a stop or an interrupt comes before the end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ernie2.training.loop import StepResult, Trainer
from ernie2.training.reporting import MetricLogger


def _never(*_: Any) -> bool:
    return False


@dataclass
class Cadence:
    """What happens after an optimizer step; each `*_at(step)` says whether that step does it."""

    evaluate: Callable[[int], Any] | None = None
    evaluate_at: Callable[[int], bool] = _never
    save: Callable[[int], Any] | None = None
    save_at: Callable[[int], bool] = _never
    stop_at: Callable[[int], bool] = _never  # stop after this step (--max_steps, a hook)
    interrupted: Callable[[], bool] = _never  # Ctrl-C or SIGTERM, agreed over ranks
    save_on_stop: bool = False  # a stop at `stop_at` before the end saves the step first

    def after_step(self, result: StepResult, until: int) -> bool:
        """Run what this step calls for; True stops the fit."""
        step = result.step
        if self.evaluate is not None and self.evaluate_at(step):
            self.evaluate(step)
        if self.save is not None and self.save_at(step):
            self.save(step)
        stop = bool(self.stop_at(step))
        flag = bool(self.interrupted())
        if (flag or (stop and self.save_on_stop)) and step != until and self.save is not None:
            self.save(step)
        return stop or flag


def fit(trainer: Trainer, steps: Iterator[list[Any]], until: int, cadence: Cadence, *,
        logger: MetricLogger | None = None, progress: bool = True, desc: str = "train") -> bool:
    """Train until `trainer.state.step == until` (nothing when it is there already) with the
    cadence's evaluation, checkpoints and stops; True when `until` was reached. A logger gets
    every step's result, counts time from here and writes what is left at the end."""
    callbacks: list[Callable[[StepResult], bool | None]] = []
    if logger is not None:
        logger.restart_clock()
        callbacks.append(logger)
    callbacks.append(lambda result: cadence.after_step(result, until))
    finished = trainer.state.step >= until or trainer.fit(steps, until, callbacks,
                                                          progress=progress, desc=desc)
    if logger is not None:
        logger.flush(trainer.state.step)
    return finished
