"""The fine-tuning recipe (`FinetuneRun`) on the shared training loop: a seeded batch order per
epoch, this rank's share of each batch as micro-batches, dev evaluation on a cadence, resumable
checkpoints (`training.resume`, as pre-training's), shared logs."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ernie2.finetune.model import FinetuneModel
from ernie2.finetune.settings import FinetuneSettings
from ernie2.model.batch import Feature, collate, length_batches, rank_of
from ernie2.training import distributed as dist_util
from ernie2.training import resume
from ernie2.training.fit import Cadence, fit
from ernie2.training.loop import LoopState, Trainer
from ernie2.training.optim import (WarmupLinear, base_lrs, encoder_hold, layerwise_scales,
                                   make_optimizer, warmup_steps)
from ernie2.training.precision import measure_peak_flops
from ernie2.training.reporting import MetricLogger
from ernie2.training.snapshots import CheckpointManager, Loaded

logger = logging.getLogger(__name__)


def shuffled_batches(features: Sequence[Feature], batch_size: int, seed: int = 0,
                     epoch: int = 0) -> Iterator[list[int]]:
    """Indices of training batches: a fresh shuffle per epoch, the last batch may be short."""
    order = list(range(len(features)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    for i in range(0, len(order), batch_size):
        yield order[i:i + batch_size]


class FeatureSteps:
    """Iterator over optimizer steps. Step s is batch s % steps_per_epoch of epoch
    s // steps_per_epoch of a shuffle seeded by (seed, epoch), so any step can be rebuilt
    from its index alone (that is the whole data state of a resume). Each rank takes its
    examples of the global batch (`rank_of`) and splits its share into micro-batches of at most
    `micro_batch_size` examples, longest first so little is padded."""

    def __init__(self, features: Sequence[dict], batch_size: int, micro_batch_size: int | None,
                 seed: int, pad_id: int, rank: int = 0, world: int = 1):
        if batch_size < world:
            raise ValueError(f"batch size {batch_size} is smaller than the {world} processes: "
                             "every process needs examples in every step")
        if len(features) < world:
            raise ValueError(f"{len(features)} training examples for {world} processes")
        if micro_batch_size is not None and micro_batch_size < 1:
            raise ValueError(f"micro batch size must be at least 1, got {micro_batch_size}")
        self.features = features
        self.batch_size, self.micro_batch_size = batch_size, micro_batch_size
        self.seed, self.pad_id = seed, pad_id
        self.rank, self.world = rank, world
        self.position = 0
        self._cache: tuple[int, list[list[int]]] = (-1, [])
        self.steps_per_epoch = len(self.epoch_batches(0))

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        if self._cache[0] != epoch:
            batches = list(shuffled_batches(self.features, self.batch_size, self.seed, epoch))
            # A last batch too short to give every process an example joins the one before.
            if len(batches) > 1 and len(batches[-1]) < self.world:
                tail = batches.pop()
                batches[-1] = batches[-1] + tail
            self._cache = (epoch, batches)
        return self._cache[1]

    def share(self, step: int) -> list[int]:
        """This rank's feature indices of optimizer step `step` (0-based)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        batch = self.epoch_batches(epoch)[k]
        return [i for j, i in enumerate(batch) if rank_of(j, self.world) == self.rank]

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])

    def __iter__(self):
        return self

    def __next__(self) -> list[dict[str, Any]]:
        idx = self.share(self.position)
        self.position += 1
        groups = length_batches([len(self.features[i]["input_ids"]) for i in idx],
                                self.micro_batch_size)
        # On the host: the step moves each micro-batch to the model's device (FinetuneModel).
        return [collate([self.features[idx[j]] for j in sorted(g)], self.pad_id) for g in groups]


class Evaluator(Protocol):
    """Dev evaluation that keeps the best model; its state goes into checkpoints."""

    def __call__(self, step: int, epoch: int) -> dict[str, float]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class TrainOutcome:
    steps: int  # optimizer steps done
    total: int  # optimizer steps planned
    completed: bool  # False when `stop` ended the run early
    records: list[dict]  # what the logger wrote: train and dev records


class FinetuneRun:
    """The fine-tuning recipe, in the shape of pre-training's (`PretrainRun`): `setup()` builds
    the optimizer, schedule and logger; `resume_from(loaded)` takes a checkpoint's model and
    evaluation; `train()` fits with its cadence (dev evaluation on rank 0 after each epoch and
    every `eval_every` steps, a checkpoint every `checkpoint_every` steps), restoring the
    trainer, data order and random state of a resume (`training.resume`); `save_checkpoint(step)`
    writes one. `run()` does them in order. `stop(step)` ends the run after that step without
    saving (a test hook for resume)."""

    def __init__(self, model: FinetuneModel, features: Sequence[dict],
                 settings: FinetuneSettings, evaluator: Evaluator, *, out_dir: Path,
                 device: torch.device, precision: str, pad_id: int,
                 fingerprint: dict[str, Any], stop: Callable[[int], bool] | None = None):
        self.model, self.settings, self.evaluator = model, settings, evaluator
        self.out, self.device, self.precision = out_dir, device, precision
        self.stop = stop
        self.rank, self.world = dist_util.rank(), dist_util.world_size()
        self.steps = FeatureSteps(features, settings.batch_size, settings.micro_batch_size,
                                  settings.seed, pad_id, self.rank, self.world)
        self.total = settings.max_steps or self.steps.steps_per_epoch * settings.epochs
        self.fingerprint = {**fingerprint, "train_features": len(features),
                            "batch_size": settings.batch_size, "total_steps": self.total,
                            "seed": settings.seed}
        self.ckpt = CheckpointManager(out_dir / "checkpoints", settings.keep_checkpoints)
        self.resumed: Loaded | None = None

    def run(self) -> TrainOutcome:
        loaded = self._resumable()
        self.setup()
        if loaded is not None:
            self.resume_from(loaded)
        return self.train()

    def _resumable(self) -> Loaded | None:
        """With `resume`, the newest checkpoint, written for this run's settings and data;
        without, refuse checkpoints of an earlier run and start the logs empty."""
        if self.settings.resume:
            loaded = resume.newest(self.ckpt)
            if loaded is not None:
                resume.check_written_for(loaded, "fingerprint", self.fingerprint,
                                         "other settings or data")
            return loaded
        if self.ckpt.latest() is not None:
            raise ValueError(f"{self.ckpt.directory} holds checkpoints of an earlier run: "
                             "resume it (--resume) or use another output directory")
        if self.rank == 0:
            for name in ("metrics.jsonl", "metrics.csv"):
                (self.out / name).unlink(missing_ok=True)
        return None

    def setup(self) -> None:
        s = self.settings
        # Measured before the random state is seeded or restored: it draws random matrices.
        peak = s.peak_tflops * 1e12 if s.peak_tflops else None
        if peak is None and self.rank == 0:
            peak = measure_peak_flops(self.precision, str(self.device))
        # At decay 1 every scale is 1: the two groups of one rate, as without it.
        scales = layerwise_scales(self.model.encoder.config.num_hidden_layers, s.layerwise_decay)
        # LP-FT: the encoder waits this share of the steps (0: no group is held)
        hold = encoder_hold(int(self.total * s.head_only_proportion))
        self.optimizer = make_optimizer(self.model, s.learning_rate, s.weight_decay,
                                        device=self.device, lr_scale_of=scales, hold_of=hold)
        self.scheduler = WarmupLinear(self.optimizer, base_lrs(self.optimizer, s.learning_rate),
                                      warmup_steps(self.total, None, s.warmup_proportion),
                                      self.total)
        self.logger = MetricLogger(self.out, s.log_every, tensorboard=s.tensorboard,
                                   flops_per_token=self.model.encoder.flops_per_token,
                                   peak_flops=peak)

    def resume_from(self, loaded: Loaded) -> None:
        """The model and the evaluation so far (best score, history) of a checkpoint; the
        trainer, data order and random state are restored when training starts."""
        self.model.load_state_dict(loaded.model)
        self.evaluator.load_state_dict(loaded.meta["evaluation"])
        self.resumed = loaded

    def train(self) -> TrainOutcome:
        s, task = self.settings, self.model.task.name
        self.trainer = Trainer(self.model, FinetuneModel.step_fn, self.model.units_fn, [task],
                               self.optimizer, self.scheduler, device=self.device,
                               precision=self.precision, grad_clip=s.grad_clip,
                               state=LoopState())
        if self.resumed is not None:
            resume.restore(self.resumed, self.trainer, self.steps)
            logger.info("resuming from %s (step %d of %d)", self.resumed.path,
                        self.trainer.state.step, self.total)
        else:
            # Dropout draws differ across processes; everything else is seeded explicitly.
            torch.manual_seed(s.seed * 1_000_003 + self.rank)
        logger.info("fine-tuning %s: %d steps (%d per epoch), batch %d%s, %s on %s%s", task,
                    self.total, self.steps.steps_per_epoch, s.batch_size,
                    f" in micro-batches of {s.micro_batch_size}" if s.micro_batch_size else "",
                    self.precision, self.device,
                    f", {self.world} processes" if self.world > 1 else "")
        fit(self.trainer, self.steps, self.total, self._cadence(), logger=self.logger,
            progress=s.progress, desc=f"fine-tune {task}")
        self.logger.close()
        step = self.trainer.state.step
        return TrainOutcome(step, self.total, step >= self.total, self.logger.records)

    def _cadence(self) -> Cadence:
        s, spe, total = self.settings, self.steps.steps_per_epoch, self.total
        return Cadence(
            evaluate=self.evaluate,
            evaluate_at=lambda step: ((s.eval_each_epoch and step % spe == 0) or step == total
                                      or bool(s.eval_every and step % s.eval_every == 0)),
            save=self.save_checkpoint,
            save_at=lambda step: bool(s.checkpoint_every and step % s.checkpoint_every == 0
                                      and step < total),
            stop_at=lambda step: bool(self.stop and self.stop(step)))

    def evaluate(self, step: int) -> None:
        """Dev scores on rank 0 (the others wait), logged."""
        with self.logger.untimed():
            if self.rank == 0:
                epoch = (step - 1) // self.steps.steps_per_epoch
                scores = self.evaluator(step, epoch)
                if scores:
                    self.logger.write({"step": step, "epoch": epoch + 1,
                                       "tasks": {self.model.task.name: scores}}, "dev")
            dist_util.barrier()

    def save_checkpoint(self, step: int) -> None:
        """The trainer, the data order, the evaluation so far and the fingerprint a resume
        checks."""
        with self.logger.untimed():
            resume.save(self.ckpt, step, self.trainer, self.steps,
                        {"fingerprint": self.fingerprint,
                         "evaluation": self.evaluator.state_dict()})


__all__ = ["Evaluator", "FeatureSteps", "FinetuneRun", "TrainOutcome"]
