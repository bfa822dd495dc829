"""The one training loop: a model step function over batches, with accumulation, precision, DDP.

Nothing here knows about pre-training tasks. A caller gives
- `step_fn(model, micro_batch) -> (losses, metrics)`: `losses` maps a key (a task, or just
  "loss") to the mean loss of that key over its scored units in the micro-batch; `metrics` maps
  a key to additive metric sums ({"correct": 12, "count": 40});
- `units_fn(micro_batch) -> {key: (units, examples)}`: how many scored units (masked tokens,
  labelled examples) and examples of each key a micro-batch holds, known before the forward.

A step takes the micro-batches of one optimizer step (this rank's share of the global batch).
Each key's loss is weighted so the step optimizes exactly what one big batch would:
    sum_k (examples_k / examples) * (sum over micro-batches of mean_k * units_k) / units_k
with the totals summed over micro-batches and ranks. So 4 accumulated micro-batches of 8 give
the gradient of one batch of 32, and 2 ranks give that of 1 process on the same global batch,
whatever the number of masked tokens in each micro-batch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ernie2.training import distributed as dist_util
from ernie2.training.precision import autocast, grad_scaler

logger = logging.getLogger(__name__)

StepFn = Callable[[nn.Module, Any], tuple[dict[str, torch.Tensor], dict[str, dict[str, float]]]]
UnitsFn = Callable[[Any], dict[str, tuple[float, float]]]


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss kept being NaN or infinite."""


def token_counts(micro: Any) -> tuple[int, int, int]:
    """(non-padding tokens, tokens computed on, rows) of a micro-batch or a list of them:
    read from every `attention_mask` in it."""
    if isinstance(micro, dict):
        mask = micro.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            return int(mask.sum()), int(mask.numel()), int(mask.shape[0])
        micro = list(micro.values())
    if isinstance(micro, (list, tuple)):
        parts = [token_counts(v) for v in micro]
        return tuple(sum(p[i] for p in parts) for i in range(3))  # type: ignore[return-value]
    return 0, 0, 0


@dataclass
class StepResult:
    step: int  # optimizer steps done after this one
    losses: dict[str, float]  # key -> mean loss over the global batch
    metrics: dict[str, dict[str, float]]  # key -> metric sums of this rank
    units: dict[str, float]  # key -> scored units over the global batch
    tokens: int  # non-padding tokens of this rank
    padded: int  # tokens computed on, padding included, of this rank
    rows: int  # sequences of this rank
    grad_norm: float
    lr: float
    skipped: bool = False
    overflow: bool = False  # fp16 loss scaler skipped the update (not counted as bad)


@dataclass
class LoopState:
    step: int = 0
    skipped: int = 0
    bad_in_a_row: int = 0
    overflow: int = 0


class Trainer:
    """One optimizer step at a time: forward/backward over micro-batches, sync, clip, update.

    `model` is the module `step_fn` is called with; under torchrun it is wrapped in DDP here
    (unused parameters allowed: heads not in play get no gradient and are not updated).
    """

    def __init__(self, model: nn.Module, step_fn: StepFn, units_fn: UnitsFn, keys: list[str],
                 optimizer: torch.optim.Optimizer, scheduler, *, device: torch.device,
                 precision: str = "fp32", grad_clip: float | None = 1.0,
                 max_bad_steps: int = 20, compile: bool = False, state: LoopState | None = None):
        self.module = model
        self.step_fn = step_fn
        self.units_fn = units_fn
        self.keys = list(keys)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.device = device
        self.precision = precision
        self.grad_clip = grad_clip
        self.max_bad_steps = max_bad_steps
        self.scaler = grad_scaler(precision, device)
        self.state = state or LoopState()
        self.world = dist_util.world_size()
        model_for_step = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            model_for_step = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                                 find_unused_parameters=True)
        if compile:
            model_for_step = torch.compile(model_for_step, dynamic=True)
        self.model = model_for_step
        self.params = [p for g in optimizer.param_groups for p in g["params"]]

    # ------------------------------------------------------------------ one step
    def _totals(self, units: list[dict[str, tuple[float, float]]]) -> tuple[torch.Tensor, torch.Tensor]:
        index = {k: i for i, k in enumerate(self.keys)}
        t = torch.zeros(2, len(self.keys), dtype=torch.float64)
        for u in units:
            for k, (n_units, n_examples) in u.items():
                if k not in index:
                    raise KeyError(f"units_fn gave key {k!r}, not one of {self.keys}")
                t[0, index[k]] += n_units
                t[1, index[k]] += n_examples
        if self.world > 1:
            # gloo reduces CPU tensors, NCCL CUDA ones
            dev = self.device if self.device.type == "cuda" else torch.device("cpu")
            t = dist_util.all_reduce_sum(t.to(dev)).cpu()
        return t[0], t[1]

    def train_step(self, micro_batches: list[Any]) -> StepResult:
        """One optimizer step. Long: the step in the order it runs (units, forward/backward
        of each micro-batch, the one read-back, the all-reduce, clipping, the update or the
        skip); the weighting of the module docstring is spread over it and reads best whole."""
        if not micro_batches:
            raise ValueError("an optimizer step needs at least one micro-batch")
        self.module.train()
        units = [self.units_fn(m) for m in micro_batches]
        total_units, total_examples = self._totals(units)
        all_examples = float(total_examples.sum())
        index = {k: i for i, k in enumerate(self.keys)}
        # Per key, sum of mean loss x units, and whether any micro-batch's loss was not finite:
        # tensors where the losses are, read back once after the last micro-batch.
        loss_sums: dict[str, torch.Tensor] = {}
        not_finite: torch.Tensor | None = None
        metrics: dict[str, dict[str, Any]] = {}
        n = len(micro_batches)
        for i, (micro, u) in enumerate(zip(micro_batches, units)):
            sync = i == n - 1
            ctx = self.model.no_sync() if (not sync and hasattr(self.model, "no_sync")) \
                else contextlib.nullcontext()
            with ctx:
                with autocast(self.precision, self.device):
                    losses, mets = self.step_fn(self.model, micro)
                total = None
                for k, loss in losses.items():
                    j = index[k]
                    if total_units[j] <= 0:
                        continue
                    w = (total_examples[j] / all_examples) * (u.get(k, (0, 0))[0] / total_units[j])
                    term = loss.float() * float(w * self.world)
                    total = term if total is None else total + term
                    scaled = loss.detach().double() * u.get(k, (0, 0))[0]
                    loss_sums[k] = scaled if k not in loss_sums else loss_sums[k] + scaled
                if total is None:  # nothing scored in this micro-batch: keep DDP in step
                    total = sum(p.sum() * 0.0 for p in self.module.parameters())
                bad = ~torch.isfinite(total.detach())
                not_finite = bad if not_finite is None else not_finite | bad
                (self.scaler.scale(total) if self.scaler else total).backward()
            for k, m in mets.items():
                acc = metrics.setdefault(k, {})
                for name, v in m.items():
                    acc[name] = acc.get(name, 0.0) + v
        # The step's one read-back: every key's loss sum and the finiteness flag together.
        dev = not_finite.device
        read = torch.stack([loss_sums[k].reshape(()).to(dev, torch.float64) if k in loss_sums
                            else torch.zeros((), dtype=torch.float64, device=dev)
                            for k in self.keys]
                           + [not_finite.reshape(()).to(torch.float64)]).cpu()
        loss_sums, finite = read[:-1], bool(read[-1] == 0)
        if self.world > 1:
            flag = torch.tensor([0.0 if finite else 1.0],
                                device=self.device if self.device.type == "cuda" else "cpu")
            finite = float(dist_util.all_reduce_max(flag)) == 0.0
            loss_sums = dist_util.all_reduce_sum(loss_sums)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grads = [p for p in self.params if p.grad is not None]
        if self.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(grads, self.grad_clip, foreach=True)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g.grad) for g in grads])) if grads \
                else torch.zeros(())
        norm = float(norm)
        lr = self.optimizer.param_groups[0]["lr"]
        skipped = overflow = False
        if not finite:
            skipped = True
            self.state.skipped += 1
            self.state.bad_in_a_row += 1
            if self.scaler:  # keep the scaler's bookkeeping consistent with the skipped step
                self.scaler.update()
        else:
            self.state.bad_in_a_row = 0
            if self.scaler:
                before = self.scaler.get_scale()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                overflow = self.scaler.get_scale() < before
                self.state.overflow += int(overflow)
            else:
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state.step += 1
        per_key = {k: float(loss_sums[index[k]] / total_units[index[k]])
                   for k in self.keys if total_units[index[k]] > 0}
        result = StepResult(self.state.step, per_key, metrics,
                            {k: float(total_units[index[k]]) for k in self.keys
                             if total_units[index[k]] > 0},
                            *token_counts(micro_batches), norm, lr, skipped, overflow)
        if skipped:
            logger.warning("step %d: loss is not finite; update skipped (%d in a row, %d in all)",
                           self.state.step, self.state.bad_in_a_row, self.state.skipped)
            if self.state.bad_in_a_row >= self.max_bad_steps:
                raise NonFiniteLossError(
                    f"the loss was not finite in {self.state.bad_in_a_row} consecutive steps "
                    f"(up to step {self.state.step}; keys {', '.join(per_key) or 'none'}): "
                    "training stopped. Lower the learning rate, use fp32 or bf16 instead of "
                    "fp16, or check the data of these tasks.")
        return result

    # ------------------------------------------------------------------ many steps
    def fit(self, steps: Iterator[list[Any]], until: int,
            callbacks: Iterable[Callable[[StepResult], bool | None]] = (),
            progress: bool = True, desc: str = "train") -> bool:
        """Run steps until `self.state.step == until`. After each step every callback is
        called with its result; a callback returning True stops the run early (the return
        value is then False). Callbacks do logging, evaluation and checkpoints."""
        from tqdm.auto import tqdm

        bar = tqdm(total=until, initial=self.state.step, desc=desc, dynamic_ncols=True,
                   disable=not progress or dist_util.rank() != 0, leave=False)
        try:
            while self.state.step < until:
                try:
                    micro = next(steps)
                except StopIteration:
                    raise RuntimeError(f"the batches ran out at step {self.state.step} of "
                                       f"{until}") from None
                result = self.train_step(micro)
                bar.update(1)
                shown = {k: f"{v:.3f}" for k, v in list(result.losses.items())[:4]}
                bar.set_postfix(shown, refresh=False)
                stop = False
                for cb in callbacks:
                    stop = bool(cb(result)) or stop
                if stop:
                    return False
        finally:
            bar.close()
        return True

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "loop": {"step": self.state.step, "skipped": self.state.skipped,
                         "bad_in_a_row": self.state.bad_in_a_row,
                         "overflow": self.state.overflow}}

    def load_state_dict(self, state: dict) -> None:
        """What `state_dict` gave; an optimizer or scheduler state left out keeps the current
        one (a recipe that maps the optimizer itself, or starts a new schedule)."""
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        for k, v in state["loop"].items():
            setattr(self.state, k, int(v))

