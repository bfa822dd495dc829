"""The fine-tuning entry point: data directory + pre-trained model in, best model and test
predictions out. `ernie2 finetune` calls `finetune(FinetuneSettings(...))`.

Output directory: `best/` (the fine-tuned model with the best dev score, loadable by
`FinetuneModel.load` and `inference.predict`), `label_map.json` (label sets), `test_out.tsv`
(and `predictions.json` for reading comprehension), `metrics.json` (dev scores per evaluation,
test scores when the test set has labels), the shared loop's logs (`metrics.jsonl`,
`metrics.csv`, `tensorboard/`) and `checkpoints/` when asked for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ernie2.finetune.evaluate import evaluate as evaluate_examples
from ernie2.finetune.evaluate import predict_examples, scorable
from ernie2.finetune.metrics import format_scores
from ernie2.finetune.model import FinetuneModel
from ernie2.finetune.readers import Labels, check_labels, read_label_map, write_label_map
from ernie2.finetune.settings import FinetuneSettings
from ernie2.finetune.task_types import TaskType, get_task_type
from ernie2.finetune.train import FinetuneRun
from ernie2.model.config import ErnieConfig
from ernie2.model.modeling import ErnieModel
from ernie2.tokenizer import ErnieTokenizer
from ernie2.training import distributed as dist_util
from ernie2.training.precision import resolve_device, resolve_precision
from ernie2.utils import atomic_write_text

logger = logging.getLogger(__name__)

# Dev scores where smaller is better; every other metric is maximized.
LOWER_IS_BETTER = frozenset({"loss", "mse"})


# Peak learning rates that fine-tune each width well: base-model papers use 2e-5..5e-5, which
# leaves the small sizes that train on a CPU far from converged in a few epochs.
LEARNING_RATES = ((128, 5e-4), (256, 3e-4), (512, 1e-4))  # (hidden size at most, lr)
BASE_LEARNING_RATE = 5e-5


def default_learning_rate(config) -> float:
    """The fine-tuning learning rate for a model of this width."""
    return next((lr for width, lr in LEARNING_RATES if config.hidden_size <= width),
                BASE_LEARNING_RATE)


def _check_learning_rate(lr: float, config) -> None:
    suggested = default_learning_rate(config)
    if lr < suggested / 3:
        logger.warning("learning rate %g is a base-model value; a model of hidden size %d "
                       "usually fine-tunes better near %g (--lr %g)", lr, config.hidden_size,
                       suggested, suggested)


def start_model(settings: FinetuneSettings) -> tuple[ErnieModel, ErnieTokenizer]:
    """The encoder and tokenizer fine-tuning starts from: a pre-trained model, or fresh weights
    of a named size (or of the pre-trained model's shape) with its vocab or --vocab."""
    overrides = {"num_hidden_layers": settings.num_layers} if settings.num_layers else {}
    overrides.update({k: v for k in ("hidden_dropout_prob", "attention_probs_dropout_prob")
                      if (v := getattr(settings, k)) is not None})
    src = settings.from_pretrained
    if settings.init not in ("pretrained", "random"):
        raise ValueError(f"init must be 'pretrained' or 'random', got {settings.init!r}")
    if settings.init == "pretrained":
        if not src:
            raise ValueError("--from_pretrained is required (a pre-trained model directory, "
                             "checkpoint or name); or fine-tune a fresh model with "
                             "--init random --size mini --vocab VOCAB")
        return (ErnieModel.from_pretrained(src, **overrides),
                ErnieTokenizer.from_pretrained(src))
    if not settings.vocab and not src:
        raise ValueError("--init random needs --vocab (a vocab file, e.g. from `ernie2 vocab "
                         "train`) or --from_pretrained to take the vocab from")
    tokenizer = ErnieTokenizer(settings.vocab) if settings.vocab else \
        ErnieTokenizer.from_pretrained(src)
    if settings.size:
        config = ErnieConfig.from_name(settings.size, vocab_size=tokenizer.vocab_size,
                                       **overrides)
    elif src:
        config = ErnieModel.from_pretrained(src).config.replace(
            vocab_size=tokenizer.vocab_size, **overrides)
    else:
        raise ValueError("--init random needs --size (test, mini, small, medium, base, large) "
                         "or --from_pretrained to copy the shape of")
    logger.info("fine-tuning a fresh %s model (random weights): %d layers, hidden %d, vocab %d",
                settings.size or "same-shape", config.num_hidden_layers, config.hidden_size,
                config.vocab_size)
    return ErnieModel(config), tokenizer


@dataclass
class FinetuneResult:
    output_dir: Path
    best_dir: Path
    best_score: float  # the main metric's best dev value (NaN without a dev set)
    main_metric: str
    history: list[dict]  # one record per dev evaluation
    test_scores: dict[str, float] | None
    test_predictions: list[dict] | None
    steps: int = 0  # optimizer steps done
    completed: bool = True  # False when the run was stopped early (no test predictions then)
    baseline: dict | None = None  # {"name", "scores": {split: scores}} with settings.baseline
    learning_rate: float | None = None  # the one used (settings' or the size's default)


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


class BestModel:
    """The evaluator the loop calls: scores dev, keeps the model with the best main metric in
    `best_dir` (the latest model when there is no dev set)."""

    def __init__(self, model: FinetuneModel, tokenizer: ErnieTokenizer, dev, metric: str,
                 best_dir: Path, vocab_file, batch_size: int):
        self.model, self.tokenizer, self.dev = model, tokenizer, dev
        self.metric, self.best_dir, self.vocab_file = metric, best_dir, vocab_file
        self.batch_size = batch_size
        self.history: list[dict] = []
        self.best_score = math.nan
        self.best_step: int | None = None

    def better(self, score: float) -> bool:
        if math.isnan(score):
            return False
        if self.best_step is None or math.isnan(self.best_score):
            return True
        return score < self.best_score if self.metric in LOWER_IS_BETTER \
            else score > self.best_score

    def __call__(self, step: int, epoch: int) -> dict[str, float]:
        if self.dev is None:  # nothing to choose by: keep the latest model
            self.model.save(self.best_dir, self.vocab_file)
            self.best_step = step
            return {}
        scores, _ = evaluate_examples(self.model, self.tokenizer, self.dev, self.batch_size)
        if self.metric not in scores:
            raise KeyError(f"main metric {self.metric!r} is not among the dev scores "
                           f"({', '.join(scores)})")
        self.history.append({"step": step, "epoch": epoch + 1,
                             **{f"dev_{k}": v for k, v in scores.items()}})
        if self.better(scores[self.metric]):
            self.best_score, self.best_step = scores[self.metric], step
            self.model.save(self.best_dir, self.vocab_file)
        logger.info("dev at step %d: %s (best %s %.4f at step %d)", step,
                    format_scores(scores), self.metric,
                    self.best_score, self.best_step)
        return scores

    def state_dict(self) -> dict:
        return {"history": self.history, "best_score": self.best_score,
                "best_step": self.best_step}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])
        self.best_score = float(state["best_score"])
        self.best_step = state["best_step"]


def finetune(settings: FinetuneSettings, *, stop: Callable[[int], bool] | None = None
             ) -> FinetuneResult:
    """Read train/dev/test from `data_dir`, fine-tune on the shared training loop
    (accumulation, AMP, DDP under torchrun, checkpoints), keep the best dev model, predict
    test. `stop(step)` ends training after that step without saving (a test hook)."""
    joined = not dist_util.is_distributed()
    try:
        return _finetune(settings, stop)
    finally:
        if joined and dist_util.is_distributed():  # we joined the process group: leave it
            torch.distributed.destroy_process_group()


def _finetune(settings: FinetuneSettings, stop) -> FinetuneResult:
    # Long: the fine-tuning run in order (data, labels, model, train, test, baseline, the
    # result files); each step is a call, and splitting it would only pass its locals around.
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
    train_examples = task.read(train_file, opts, True)
    dev = task.read(dev_file, opts, True) if dev_file else None
    test = task.read(test_file, opts, False) if test_file else None
    labels = _labels(task, settings, train_examples, data_dir)
    if labels is not None:  # every split against the label map before the first step
        for examples in (train_examples, dev):  # dev picks the model: it must score
            check_labels(examples or (), labels)
        unscored = len(test) - len(scorable(test, labels)) if test else 0
        if unscored:  # said now, not after training: they are predicted but never scored
            logger.warning("%s: %d test example(s) have labels not in the label map (%s): "
                           "they are predicted and left out of the test scores", test_file,
                           unscored, ", ".join(labels.names[:20]))
    metric = settings.main_metric or task.main_metric

    _seed(settings.seed)
    encoder, tokenizer = start_model(settings)  # before anything is written: it checks flags
    if opts.max_len > encoder.config.max_position_embeddings:
        raise ValueError(f"max_len {opts.max_len} exceeds the model's "
                         f"{encoder.config.max_position_embeddings} positions "
                         f"({settings.from_pretrained or settings.size})")
    device = resolve_device(settings.device)
    dist_util.init_from_env(device)
    device = dist_util.local_device(device)
    precision = resolve_precision(settings.precision, device)
    main = dist_util.rank() == 0
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if labels is not None:
            write_label_map(labels.names, out_dir / "label_map.json")
    dist_util.barrier()

    if settings.learning_rate is None:
        settings = dataclasses.replace(settings,
                                       learning_rate=default_learning_rate(encoder.config))
        logger.info("learning rate %g (the default for hidden size %d)", settings.learning_rate,
                    encoder.config.hidden_size)
    else:
        _check_learning_rate(settings.learning_rate, encoder.config)
    baseline = None
    if settings.baseline and main:
        baseline = _baseline(task, train_examples, {"dev": dev, "test": test}, labels, opts,
                             settings.seed)
    model = FinetuneModel(encoder, task, labels, opts, settings.task_id).to(device)
    features = task.encode(train_examples, tokenizer, labels, opts)
    logger.info("%s: %d training examples, %d features; dev %s; test %s", task.name,
                len(train_examples), len(features), len(dev) if dev else "none",
                len(test) if test else "none")

    best_dir = out_dir / "best"
    keeper = BestModel(model, tokenizer, dev, metric, best_dir, tokenizer.vocab_file,
                       settings.eval_batch_size)
    outcome = FinetuneRun(
        model, features, settings, keeper, out_dir=out_dir, device=device, precision=precision,
        pad_id=tokenizer.pad_id, stop=stop,
        fingerprint={"task": task.name, "labels": labels.names if labels else None,
                     "from_pretrained": str(settings.from_pretrained),
                     "num_layers": settings.num_layers,
                     **({"init": "random", "size": settings.size}
                        if settings.init == "random" else {})}).run()
    result = FinetuneResult(out_dir, best_dir, keeper.best_score, metric, keeper.history, None,
                            None, outcome.steps, outcome.completed, baseline,
                            settings.learning_rate)
    if not outcome.completed or not main:
        return result

    if test is not None:
        best_model = FinetuneModel.load(best_dir, device)
        result.test_predictions, _ = predict_examples(best_model, tokenizer, test,
                                                      settings.eval_batch_size)
        task.write(test, result.test_predictions, labels, out_dir / "test_out.tsv")
        known = scorable(test, labels)
        if _all_labeled(test) and known:
            result.test_scores = task.score([test[i] for i in known],
                                            [result.test_predictions[i] for i in known],
                                            labels, opts)
    atomic_write_text(out_dir / "metrics.json", json.dumps(
        {"main_metric": metric, "best_dev": _finite(keeper.best_score),
         "best_step": keeper.best_step, "steps": outcome.steps, "dev": keeper.history,
         "test": result.test_scores, "train_log": outcome.records, "baseline": baseline,
         "settings": _jsonable(settings)}, indent=1, ensure_ascii=False) + "\n")
    return result


def _baseline(task: TaskType, train, splits: dict, labels, opts, seed: int) -> dict | None:
    """The baseline's scores on the labeled splits, logged before training starts."""
    from ernie2.finetune.baseline import has_baseline, run_baseline

    if not has_baseline(task):
        logger.warning("--baseline: there is no baseline for %s tasks", task.name)
        return None
    labeled = {k: [v[i] for i in scorable(v, labels)] for k, v in splits.items()
               if v and _all_labeled(v)}
    result = run_baseline(task, train, labeled, labels, opts, seed)
    result.pop("predictions")
    for split, scores in result["scores"].items():
        logger.info("baseline (%s) %s: %s", result["name"], split,
                    format_scores(scores))
    return result


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def _all_labeled(examples) -> bool:
    def has(ex):
        return (ex.answers if hasattr(ex, "answers") else
                ex.labels if hasattr(ex, "tokens") else ex.label) not in (None, [])
    return all(has(ex) for ex in examples)


def _jsonable(settings: FinetuneSettings) -> dict:
    d = dataclasses.asdict(settings)
    return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in d.items()}


__all__ = ["FinetuneResult", "finetune", "find_split"]
