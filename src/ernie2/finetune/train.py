"""Fine-tuning on the shared training loop: a seeded batch order per epoch, this rank's share of
each batch as micro-batches, dev evaluation on a cadence, resumable checkpoints, shared logs."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ernie2.finetune.model import FinetuneModel
from ernie2.model.batch import Feature, collate, length_batches, rank_of
from ernie2.training import distributed as dist_util
from ernie2.training.snapshots import CheckpointManager, rng_state, set_rng_state
from ernie2.training.fit import Cadence, fit
from ernie2.training.loop import LoopState, Trainer
from ernie2.training.optim import WarmupLinear, make_optimizer, warmup_steps
from ernie2.training.precision import measure_peak_flops
from ernie2.training.reporting import MetricLogger

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


def train(model: FinetuneModel, features: Sequence[dict], settings, evaluator: Evaluator, *,
          out_dir: Path, device: torch.device, precision: str, pad_id: int,
          fingerprint: dict[str, Any], stop: Callable[[int], bool] | None = None
          ) -> TrainOutcome:
    """Train with `ernie2.training.Trainer` (the fine-tuning recipe: set up the optimizer,
    resume, fit with its cadence, and the checkpoints it saves). Evaluates (rank 0; the others
    wait) after each
    epoch and every `settings.eval_every` steps; saves a checkpoint every
    `settings.checkpoint_every` steps; with `settings.resume`, continues from the newest one.
    `stop(step)` ends the run after that step without saving (a test hook for resume).

    Long: the recipe in order, set-up and resume then the fit; its closures (`evaluate`,
    `save`) share the run's state."""
    rank, world = dist_util.rank(), dist_util.world_size()
    steps = FeatureSteps(features, settings.batch_size, settings.micro_batch_size,
                         settings.seed, pad_id, rank, world)
    spe = steps.steps_per_epoch
    total = settings.max_steps or spe * settings.epochs
    fingerprint = {**fingerprint, "train_features": len(features),
                   "batch_size": settings.batch_size, "total_steps": total,
                   "seed": settings.seed}
    # Measured before the random state is seeded or restored: it draws random matrices.
    peak = settings.peak_tflops * 1e12 if settings.peak_tflops else None
    if peak is None and rank == 0:
        peak = measure_peak_flops(precision, str(device))
    opt = make_optimizer(model, settings.learning_rate, settings.weight_decay, device=device)
    sched = WarmupLinear(opt, [settings.learning_rate] * len(opt.param_groups),
                         warmup_steps(total, None, settings.warmup_proportion), total)
    ckpt = CheckpointManager(out_dir / "checkpoints", settings.keep_checkpoints)
    loaded = None
    if not settings.resume and ckpt.latest() is not None:
        raise ValueError(f"{ckpt.directory} holds checkpoints of an earlier run: resume it "
                         "(--resume) or use another output directory")
    if not settings.resume and rank == 0:  # a fresh run's logs start empty
        for name in ("metrics.jsonl", "metrics.csv"):
            (out_dir / name).unlink(missing_ok=True)
    if settings.resume:
        path = ckpt.latest()
        if path is None:
            logger.warning("resume: no checkpoint in %s; starting afresh", ckpt.directory)
        else:
            loaded = ckpt.load(path)
            if loaded.meta.get("fingerprint") != fingerprint:
                raise ValueError(f"{path} was written for other settings or data "
                                 f"({loaded.meta.get('fingerprint')}, now {fingerprint}); "
                                 "start a new output directory")
            model.load_state_dict(loaded.model)
    trainer = Trainer(model, FinetuneModel.step_fn, model.units_fn, [model.task.name], opt,
                      sched, device=device, precision=precision, grad_clip=settings.grad_clip,
                      state=LoopState())
    if loaded is not None:
        trainer.load_state_dict({**loaded.meta["trainer"], "optimizer": loaded.optimizer})
        evaluator.load_state_dict(loaded.meta["evaluation"])
        set_rng_state(loaded.rank["rng"])
        logger.info("resuming from %s (step %d of %d)", loaded.path, trainer.state.step, total)
    else:
        # Dropout draws differ across processes; everything else is seeded explicitly.
        torch.manual_seed(settings.seed * 1_000_003 + rank)
    steps.position = trainer.state.step

    log = MetricLogger(out_dir, settings.log_every, tensorboard=settings.tensorboard,
                       flops_per_token=model.encoder.flops_per_token, peak_flops=peak)

    def evaluate(step: int) -> None:
        with log.untimed():
            if rank == 0:
                epoch = (step - 1) // spe
                scores = evaluator(step, epoch)
                if scores:
                    log.write({"step": step, "epoch": epoch + 1,
                               "tasks": {model.task.name: scores}}, "dev")
            dist_util.barrier()

    def save(step: int) -> None:
        with log.untimed():
            meta = {"fingerprint": fingerprint, "evaluation": evaluator.state_dict(),
                    "trainer": {k: v for k, v in trainer.state_dict().items() if k != "optimizer"}}
            ckpt.save(step, model.state_dict(), opt.state_dict(), meta, {"rng": rng_state()})

    cadence = Cadence(
        evaluate=evaluate, save=save,
        evaluate_at=lambda step: (step % spe == 0 or step == total
                                  or bool(settings.eval_every and step % settings.eval_every == 0)),
        save_at=lambda step: bool(settings.checkpoint_every
                                  and step % settings.checkpoint_every == 0 and step < total),
        stop_at=lambda step: bool(stop and stop(step)))
    logger.info("fine-tuning %s: %d steps (%d per epoch), batch %d%s, %s on %s%s", model.task.name,
                total, spe, settings.batch_size,
                f" in micro-batches of {settings.micro_batch_size}"
                if settings.micro_batch_size else "", precision, device,
                f", {world} processes" if world > 1 else "")
    fit(trainer, steps, total, cadence, logger=log, progress=settings.progress,
        desc=f"fine-tune {model.task.name}")
    log.close()
    return TrainOutcome(trainer.state.step, total, trainer.state.step >= total, log.records)


__all__ = ["Evaluator", "FeatureSteps", "TrainOutcome", "train"]
