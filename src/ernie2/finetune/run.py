"""The fine-tuning entry point: data directory + pre-trained model in, best model and test
predictions out. `ernie2 finetune` calls `finetune(FinetuneSettings(...))`.

Output directory: `best/` (the fine-tuned model with the best dev score, loadable by
`FinetuneModel.load` and `inference.predict`), `label_map.json` (label sets), `test_out.tsv`
(and `predictions.json` for reading comprehension), `metrics.json` (dev scores per evaluation,
test scores when the test set has labels).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ernie2.finetune import presets
from ernie2.finetune.inference import evaluate as evaluate_examples
from ernie2.finetune.inference import predict_examples
from ernie2.finetune.model import FinetuneModel
from ernie2.finetune.readers import Labels, read_label_map, write_label_map
from ernie2.finetune.task_types import TaskOptions, TaskType, get_task_type
from ernie2.model.modeling import ErnieModel
from ernie2.tokenizer import ErnieTokenizer
from ernie2.utils import atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class FinetuneSettings:
    task: str  # classify, pair, regress, ner, mrc or rank
    data_dir: str
    from_pretrained: str
    output_dir: str = "finetune_output"
    batch_size: int = 32
    learning_rate: float = 5e-5
    epochs: int = 3
    max_steps: int | None = None  # stop early (overrides epochs when set)
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    grad_accum: int = 1
    eval_every: int = 0  # steps between dev evaluations; 0: after each epoch only
    main_metric: str | None = None  # dev score that picks the best model; task default if None
    label_map: str | None = None  # label_map.json; default data_dir/label_map.json if present
    num_layers: int | None = None  # keep only the first N encoder layers of the checkpoint
    task_id: int = 0  # row of the task embedding, when the encoder has one
    seed: int = 1
    device: str = "cpu"
    eval_batch_size: int = 64
    log_every: int = 10
    progress: bool = True
    options: TaskOptions = field(default_factory=TaskOptions)

    @classmethod
    def from_preset(cls, name: str, size: str = "base", **overrides: Any) -> "FinetuneSettings":
        """Settings of a preset row (`presets.PRESETS`), any value overridable; task options
        may be overridden as `options={...}` (merged into the preset's)."""
        values = presets.preset_values(name, size)
        opts = {**values.pop("options"), **overrides.pop("options", {})}
        return cls(**{**values, **overrides}, options=TaskOptions.from_dict(opts))


@dataclass
class FinetuneResult:
    output_dir: Path
    best_dir: Path
    best_score: float
    main_metric: str
    history: list[dict]
    test_scores: dict[str, float] | None
    test_predictions: list[dict] | None


Trainer = Callable[..., list[dict]]  # (model, features, settings, evaluate, pad_id) -> log


def find_split(data_dir: Path, split: str, task: TaskType) -> Path | None:
    """data_dir/<split><suffix> for the first of the task's suffixes that exists."""
    for suffix in task.data_suffixes:
        p = data_dir / f"{split}{suffix}"
        if p.is_file():
            return p
    return None


def _labels(task: TaskType, settings: FinetuneSettings, train_examples,
            data_dir: Path) -> Labels | None:
    if not task.has_label_set:
        return None
    path = settings.label_map or (data_dir / "label_map.json"
                                  if (data_dir / "label_map.json").is_file() else None)
    if path is not None:
        return Labels(read_label_map(path))
    return task.collect_labels(train_examples)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def finetune(settings: FinetuneSettings, trainer: Trainer | None = None) -> FinetuneResult:
    """Read train/dev/test from `data_dir`, fine-tune, keep the best dev model, predict test.

    `trainer` defaults to the internal plain loop (`_simple_loop.train_simple`); the shared
    training loop plugs in here with the same signature.
    """
    if trainer is None:
        from ernie2.finetune._simple_loop import train_simple as trainer
    task = get_task_type(settings.task)
    data_dir, out_dir = Path(settings.data_dir), Path(settings.output_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such data directory")
    opts = settings.options
    train_file = find_split(data_dir, "train", task)
    if train_file is None:
        raise FileNotFoundError(f"{data_dir}: no train{' or train'.join(task.data_suffixes)} "
                                f"for task type {task.name}")
    dev_file, test_file = find_split(data_dir, "dev", task), find_split(data_dir, "test", task)
    train = task.read(train_file, opts, True)
    dev = task.read(dev_file, opts, True) if dev_file else None
    test = task.read(test_file, opts, False) if test_file else None
    labels = _labels(task, settings, train, data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if labels is not None:
        write_label_map(labels.names, out_dir / "label_map.json")
    metric = settings.main_metric or task.main_metric

    _seed(settings.seed)
    overrides = {"num_hidden_layers": settings.num_layers} if settings.num_layers else {}
    encoder = ErnieModel.from_pretrained(settings.from_pretrained, **overrides)
    if opts.max_len > encoder.config.max_position_embeddings:
        raise ValueError(f"max_len {opts.max_len} exceeds the model's "
                         f"{encoder.config.max_position_embeddings} positions "
                         f"({settings.from_pretrained})")
    tokenizer = ErnieTokenizer.from_pretrained(settings.from_pretrained)
    vocab_file = tokenizer.vocab_file
    model = FinetuneModel(encoder, task, labels, opts, settings.task_id).to(settings.device)
    features = task.encode(train, tokenizer, labels, opts)
    logger.info("%s: %d training examples, %d features; dev %s; test %s", task.name,
                len(train), len(features), len(dev) if dev else "none",
                len(test) if test else "none")

    best_dir = out_dir / "best"
    best = {"score": -float("inf")}
    history: list[dict] = []

    def evaluate(step: int, epoch: int) -> dict:
        if dev is None:  # nothing to choose by: keep the latest model
            model.save(best_dir, vocab_file)
            return {}
        scores, _ = evaluate_examples(model, tokenizer, dev, settings.eval_batch_size)
        if metric not in scores:
            raise KeyError(f"main metric {metric!r} is not among the dev scores "
                           f"({', '.join(scores)})")
        rec = {"step": step, "epoch": epoch, **{f"dev_{k}": v for k, v in scores.items()}}
        history.append(rec)
        logger.info("dev step %d: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        if scores[metric] > best["score"]:
            best.update(score=scores[metric], step=step)
            model.save(best_dir, vocab_file)
        return {f"dev_{k}": v for k, v in scores.items()}

    log = trainer(model, features, settings, evaluate, tokenizer.pad_id)
    if not best_dir.exists():  # a trainer that never evaluated
        model.save(best_dir, vocab_file)

    test_scores = test_preds = None
    if test is not None:
        best_model = FinetuneModel.load(best_dir, settings.device)
        test_preds, _ = predict_examples(best_model, tokenizer, test, settings.eval_batch_size)
        task.write(test, test_preds, labels, out_dir / "test_out.tsv")
        if _all_labeled(test):
            test_scores = task.score(test, test_preds, labels, opts)
    atomic_write_text(out_dir / "metrics.json", json.dumps(
        {"main_metric": metric, "best_dev": best.get("score"), "best_step": best.get("step"),
         "dev": history, "test": test_scores, "train_log": log,
         "settings": _jsonable(settings)}, indent=1, ensure_ascii=False) + "\n")
    return FinetuneResult(out_dir, best_dir, best["score"], metric, history, test_scores,
                          test_preds)


def _all_labeled(examples) -> bool:
    def has(ex):
        return (ex.answers if hasattr(ex, "answers") else
                ex.labels if hasattr(ex, "tokens") else ex.label) not in (None, [])
    return all(has(ex) for ex in examples)


def _jsonable(settings: FinetuneSettings) -> dict:
    d = dataclasses.asdict(settings)
    return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in d.items()}


__all__ = ["FinetuneResult", "FinetuneSettings", "finetune", "find_split"]
