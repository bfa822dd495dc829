"""INTERNAL stand-in trainer: a plain AdamW loop with linear warm-up and decay.

It exists so fine-tuning runs and is tested before the shared training loop (ernie2.training)
lands; `run.finetune` takes any function with this signature and will use the shared loop then.
No AMP, no DDP, no resume here on purpose.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from ernie2.finetune.batching import collate, shuffled_batches, to_device

logger = logging.getLogger(__name__)

Evaluate = Callable[[int, int], dict]  # (global step, epoch) -> scores


def _param_groups(model: torch.nn.Module, weight_decay: float):
    # No decay on biases and LayerNorm weights, as in BERT/ERNIE fine-tuning.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def train_simple(model, features: Sequence[dict], settings, evaluate: Evaluate | None = None,
                 pad_id: int = 0) -> list[dict]:
    """Train `model` (a FinetuneModel) on `features`; call `evaluate` every
    `settings.eval_every` steps (when > 0) and after every epoch. Returns the log records."""
    device = next(model.parameters()).device
    accum = max(1, settings.grad_accum)
    batches_per_epoch = math.ceil(len(features) / settings.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / accum)
    total = settings.max_steps or steps_per_epoch * settings.epochs
    warmup = int(total * settings.warmup_proportion)
    opt = torch.optim.AdamW(_param_groups(model, settings.weight_decay),
                            lr=settings.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup
        else max(0.0, (total - s) / max(1, total - warmup)))
    torch.manual_seed(settings.seed)
    model.train()
    step, log, t0 = 0, [], time.time()
    bar = tqdm(total=total, desc=f"fine-tune {model.task.name}", unit="step",
               disable=not settings.progress)
    for epoch in range(math.ceil(total / steps_per_epoch)):
        for k, idx in enumerate(shuffled_batches(features, settings.batch_size, settings.seed,
                                                 epoch)):
            batch = to_device(collate([features[i] for i in idx], pad_id), device)
            loss = model.loss(batch)
            (loss / accum).backward()
            if (k + 1) % accum and k + 1 != batches_per_epoch:
                continue
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            if step % settings.log_every == 0 or step == 1:
                rec = {"step": step, "epoch": epoch, "loss": float(loss.detach()),
                       "lr": sched.get_last_lr()[0], "elapsed": round(time.time() - t0, 2)}
                log.append(rec)
                logger.info("step %d epoch %d loss %.4f lr %.2e", step, epoch, rec["loss"],
                            rec["lr"])
            if evaluate and settings.eval_every and step % settings.eval_every == 0:
                log.append({"step": step, "epoch": epoch, **evaluate(step, epoch)})
                model.train()
            if step >= total:
                break
        if evaluate and not (settings.eval_every and step % settings.eval_every == 0):
            log.append({"step": step, "epoch": epoch, **evaluate(step, epoch)})
            model.train()
        if step >= total:
            break
    bar.close()
    return log
