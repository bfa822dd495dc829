"""Distillation of a fine-tuned classifier (the teacher) into a smaller student: a small ERNIE or a
bag-of-words model. The student learns the teacher's probabilities (soft labels) over a transfer
set: the training texts plus augmented texts (`augment`) and any unlabeled texts given. For
comparison the same student is also trained without the teacher, on the gold labels alone, for
the same number of steps; both keep their best dev checkpoint.

Output directory: `student/` (a fine-tuned model directory for an ERNIE student, servable and
exportable; `bow.BowClassifier` files for a bag-of-words one), `baseline/` (the student trained
without distillation), `transfer.tsv` (every transfer text with the teacher's probabilities) and
`report.json` (accuracies of teacher, student and baseline, and sentences/s of each).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ernie2.finetune.augment import Augmenter, AugmentOptions, encode_with_masks
from ernie2.finetune.bow import BowClassifier, build_words, default_segmenter, segment
from ernie2.finetune.evaluate import predict_examples, run_model
from ernie2.finetune.model import FinetuneModel
from ernie2.finetune.readers import InputError, TextExample, check_text
from ernie2.finetune.run import find_split
from ernie2.model.batch import collate
from ernie2.model.config import size_fields
from ernie2.model.modeling import ErnieModel
from ernie2.tokenizer import ErnieTokenizer
from ernie2.training.fit import Cadence, fit
from ernie2.training.loop import Trainer
from ernie2.training.optim import WarmupLinear, make_optimizer
from ernie2.utils import atomic_write_text

logger = logging.getLogger(__name__)

STUDENTS = ("ernie", "bow")
_DEFAULT_LR = {"bow": 2e-3, "ernie": 3e-4, "ernie-from-teacher": 5e-5}


@dataclass
class DistillSettings:
    teacher: str  # fine-tuned classify model directory
    data_dir: str  # train.tsv, dev.tsv (and test.tsv) as for fine-tuning
    output_dir: str = "distill_output"
    student: str = "ernie"  # "ernie" or "bow"
    student_size: str = "mini"  # named size of a fresh ERNIE student (ErnieConfig.from_name)
    student_layers: int | None = None  # instead: the teacher's first N layers
    epochs: int = 3  # over the transfer set
    batch_size: int = 32
    learning_rate: float | None = None  # None: 2e-3 bow, 3e-4 fresh ERNIE, 5e-5 from teacher
    temperature: float = 1.0
    alpha: float = 0.0  # weight of the gold-label loss on labeled texts (0: soft labels only)
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    unlabeled: str | None = None  # a text file, one text a line, added to the transfer set
    transfer: str | None = None  # an earlier run's transfer.tsv: skip augmenting and labeling
    baseline: bool = True  # also train the student without distillation
    bow_emb_size: int = 128
    bow_hidden_size: int = 128
    bow_segmenter: str | None = None  # "jieba" or "chars"; None: jieba when installed
    seed: int = 1
    teacher_batch_size: int = 64
    progress: bool = True

    def __post_init__(self) -> None:
        if self.student not in STUDENTS:
            raise ValueError(f"student must be one of {', '.join(STUDENTS)}, got {self.student!r}")
        if self.temperature <= 0 or not 0.0 <= self.alpha <= 1.0:
            raise ValueError("temperature must be positive and alpha in [0, 1]")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")


@dataclass
class DistillResult:
    output_dir: Path
    student_dir: Path
    baseline_dir: Path | None
    transfer_size: int
    report: dict[str, Any]


# ---------------------------------------------------------------------- the pieces
def distill_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, labels: torch.Tensor,
                 temperature: float = 1.0, alpha: float = 0.0) -> torch.Tensor:
    """Soft cross-entropy against the teacher's probabilities sharpened or softened by the
    temperature (x T^2, Hinton et al. 2015), plus `alpha` x gold-label cross-entropy where a
    label is known (labels < 0: none)."""
    t = temperature
    target = torch.softmax(torch.log(teacher_probs.clamp_min(1e-12)) / t, -1)
    soft = -(target * torch.log_softmax(logits.float() / t, -1)).sum(-1).mean() * t * t
    if alpha <= 0:
        return soft
    known = labels >= 0
    hard = F.cross_entropy(logits.float()[known], labels[known]) if bool(known.any()) \
        else soft.new_zeros(())
    return (1 - alpha) * soft + alpha * hard


class _Student:
    """What the loop needs of a student: a module, how to batch transfer rows, how to predict
    texts, how to save itself."""

    def __init__(self, module: nn.Module, make_batch: Callable[[Sequence[int]], dict],
                 predict: Callable[[Sequence[str]], list[dict]],
                 save: Callable[[Path], None]):
        self.module, self.make_batch, self.predict, self.save = module, make_batch, predict, save


def _ernie_student(settings: DistillSettings, teacher, tokenizer, texts: Sequence[str]) -> _Student:

    tc = teacher.config
    if settings.student_layers:
        encoder = ErnieModel.from_pretrained(settings.teacher,
                                             num_hidden_layers=settings.student_layers)
    else:
        # the size's shape; the teacher's vocab, inputs and reach (positions) are kept
        shape = size_fields(settings.student_size)
        encoder = ErnieModel(tc.replace(**{k: shape.get(k) for k in (
            "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")}))
    ft = FinetuneModel(encoder, teacher.task, teacher.labels, teacher.options, teacher.task_id)
    if settings.student_layers:  # same width: the teacher's head is a better start than noise
        ft.head.load_state_dict(teacher.head.state_dict())
    features = encode_with_masks(tokenizer, texts, teacher.options.max_len)

    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.ft = ft

        def forward(self, batch):
            return self.ft(batch)["logits"]

    def make_batch(idx):
        return collate([features[i] for i in idx], tokenizer.pad_id)

    def predict(texts_):
        examples = [TextExample(t, None, None, None, f"<text {i}>") for i, t in enumerate(texts_)]
        return predict_examples(ft, tokenizer, examples, 64)[0]

    return _Student(Logits(), make_batch, predict,
                    lambda path: ft.save(path, tokenizer.vocab_file))


def _bow_student(settings: DistillSettings, labels: Sequence[str],
                 segmented: Sequence[Sequence[str]], segmenter: str,
                 vocab_rows: Sequence[int]) -> _Student:

    # The vocabulary comes from the texts the student may learn from; for the baseline that is
    # the labeled texts only, so it gains nothing from the transfer set.
    words = build_words(segmented[i] for i in vocab_rows)
    model = BowClassifier(words, labels, settings.bow_emb_size, settings.bow_hidden_size,
                          segmenter)

    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.bow = model

        def forward(self, batch):
            return self.bow(batch["word_ids"], batch["offsets"])

    def make_batch(idx):
        ids, offsets = model.batch([segmented[i] for i in idx])
        return {"word_ids": ids, "offsets": offsets}

    return _Student(Logits(), make_batch, model.predict, model.save)


def accuracy(preds: Sequence[dict], gold: Sequence[str]) -> float:
    return float(np.mean([p["label"] == str(g) for p, g in zip(preds, gold)])) if gold else \
        float("nan")


def sentences_per_second(predict: Callable[[Sequence[str]], Any], texts: Sequence[str],
                         repeats: int = 2) -> float:
    predict(texts[:32])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


# ---------------------------------------------------------------------- training one student
def train_student(student: _Student, targets: np.ndarray, labels: np.ndarray,
                  rows: Sequence[int], steps: int, settings: DistillSettings, lr: float,
                  evaluate: Callable[[], float], desc: str) -> tuple[float, int]:
    """Train on `rows` (indices into the transfer set) for `steps` optimizer steps with the
    shared training loop, evaluating after every pass over `rows`; the module ends with its
    best-scoring weights. Returns (best dev accuracy, its step)."""

    module = student.module
    per_epoch = max(1, math.ceil(len(rows) / settings.batch_size))
    opt = make_optimizer(module, lr, weight_decay=0.01)
    sched = WarmupLinear(opt, [g["lr"] for g in opt.param_groups], int(0.1 * steps), steps)
    targets_t, labels_t = torch.from_numpy(targets).float(), torch.from_numpy(labels).long()

    def batches():
        epoch = 0
        while True:
            order = list(rows)
            random.Random(settings.seed * 7919 + epoch).shuffle(order)
            for s in range(0, len(order), settings.batch_size):
                idx = order[s:s + settings.batch_size]
                batch = student.make_batch(idx)
                batch["targets"], batch["labels"] = targets_t[idx], labels_t[idx]
                yield [batch]
            epoch += 1

    def step_fn(model, batch):
        logits = model(batch)
        loss = distill_loss(logits, batch["targets"], batch["labels"], settings.temperature,
                            settings.alpha)
        agree = (logits.argmax(-1) == batch["targets"].argmax(-1)).sum()
        return {"distill": loss}, {"distill": {"agree": agree, "count": len(logits)}}

    def units_fn(batch):
        n = float(len(batch["targets"]))
        return {"distill": (n, n)}

    trainer = Trainer(module, step_fn, units_fn, ["distill"], opt, sched,
                      device=torch.device("cpu"), precision="fp32", grad_clip=1.0)
    best = {"score": -1.0, "step": 0, "state": None}

    def on_dev(step: int) -> None:
        module.eval()
        score = evaluate()
        module.train()
        logger.info("%s step %d: dev accuracy %.4f", desc, step, score)
        if score > best["score"]:
            best.update(score=score, step=step, state=copy.deepcopy(module.state_dict()))

    torch.manual_seed(settings.seed)
    fit(trainer, batches(), steps,
        Cadence(evaluate=on_dev, evaluate_at=lambda step: step % per_epoch == 0 or step == steps),
        progress=settings.progress, desc=desc)
    module.load_state_dict(best["state"])
    module.eval()
    return best["score"], best["step"]


# ---------------------------------------------------------------------- the whole run
def _read_lines(path: str | os.PathLike) -> list[str]:

    out = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not UTF-8 ({exc.reason})") from None
            if not line:
                continue
            if "\t" in line:
                raise ValueError(f"{path}:{lineno}: a tab inside a text (the transfer set is "
                                 "written as TSV)")
            try:
                out.append(check_text(line, f"{path}:{lineno}"))
            except InputError as exc:
                raise ValueError(str(exc)) from None
    if not out:
        raise ValueError(f"{path}: no texts")
    return out


def write_transfer(path: Path, texts: Sequence[str], labels: np.ndarray, probs: np.ndarray,
                   names: Sequence[str]) -> None:
    """text_a, gold (the label of a training text, empty for the others), prob_<label>..."""
    atomic_write_text(path, "\t".join(["text_a", "gold", *(f"prob_{n}" for n in names)]) + "\n"
                      + "".join(f"{t}\t{names[g] if g >= 0 else ''}\t"
                                + "\t".join(f"{p:.6g}" for p in row) + "\n"
                                for t, g, row in zip(texts, labels, probs)))


def read_transfer(path: str | os.PathLike, names: Sequence[str]
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(texts, gold label ids or -1, teacher probabilities) of a transfer.tsv."""
    want = ["text_a", "gold", *(f"prob_{n}" for n in names)]
    texts, labels, probs = [], [], []
    index = {n: i for i, n in enumerate(names)}
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if header != want:
            raise ValueError(f"{path}:1: expected the columns {' '.join(want)} (the teacher's "
                             f"labels), got {' '.join(header)}")
        for lineno, line in enumerate(fh, 2):
            cols = line.rstrip("\n").split("\t")
            if len(cols) != len(want):
                raise ValueError(f"{path}:{lineno}: expected {len(want)} tab-separated fields, "
                                 f"got {len(cols)}")
            if cols[1] and cols[1] not in index:
                raise ValueError(f"{path}:{lineno}: unknown label {cols[1]!r}")
            try:
                row = [float(x) for x in cols[2:]]
            except ValueError:
                raise ValueError(f"{path}:{lineno}: probabilities must be numbers") from None
            if min(row) < 0 or abs(sum(row) - 1) > 1e-3:
                raise ValueError(f"{path}:{lineno}: probabilities must be >= 0 and sum to 1")
            texts.append(cols[0])
            labels.append(index[cols[1]] if cols[1] else -1)
            probs.append(row)
    if not texts:
        raise ValueError(f"{path}: no rows")
    return texts, np.array(labels, dtype=np.int64), np.array(probs, dtype=np.float32)


def _teacher_and_data(settings: DistillSettings):
    """(teacher, its tokenizer, {"train", "dev", "test": examples or None}), checked: a
    single-text classifier and a data directory with train and dev."""
    out_dir, data_dir = Path(settings.output_dir), Path(settings.data_dir)
    if settings.transfer and Path(settings.transfer).resolve() == \
            (out_dir / "transfer.tsv").resolve():
        raise ValueError(f"{settings.transfer} would be overwritten by this run; copy it or "
                         "choose another output_dir")
    teacher = FinetuneModel.load(settings.teacher)
    # The students read one text and predict a class.
    if teacher.task.inputs != "text" or teacher.task.labels != "classes":
        raise ValueError(f"{settings.teacher}: distillation takes a classify model; this one is "
                         f"{teacher.task.name}")
    layers = teacher.config.num_hidden_layers
    if settings.student == "ernie" and settings.student_layers and \
            not 0 < settings.student_layers <= layers:
        raise ValueError(f"student_layers {settings.student_layers}: the teacher has {layers}")
    tokenizer = ErnieTokenizer.from_pretrained(settings.teacher)
    splits = {}
    for split in ("train", "dev", "test"):
        f = find_split(data_dir, split, teacher.task)
        splits[split] = teacher.task.read(f, teacher.options, split != "test") if f else None
    if not splits["train"] or not splits["dev"]:
        raise FileNotFoundError(f"{data_dir}: distillation needs train.tsv and dev.tsv")
    return teacher, tokenizer, splits


def _transfer_set(settings: DistillSettings, teacher, tokenizer, train: Sequence):
    """(texts, gold label ids or -1, teacher probabilities, new texts, where they came from):
    read from `settings.transfer`, or the training texts plus augmented and unlabeled ones,
    labeled by the teacher. The training rows stay as they are; new texts count once."""
    label_set = teacher.labels
    train_texts = [ex.text_a for ex in train]
    if settings.transfer:
        texts, labels, probs = read_transfer(settings.transfer, label_set.names)
        gold_texts = sorted(t for t, g in zip(texts, labels) if g >= 0)
        if gold_texts != sorted(train_texts):
            raise ValueError(f"{settings.transfer}: its labeled rows are not the training texts "
                             f"of {settings.data_dir}; it was made for other data")
        logger.info("transfer set read from %s: %d texts", settings.transfer, len(texts))
        return texts, labels, probs, int((labels < 0).sum()), {"from": str(settings.transfer)}
    aug = Augmenter(train_texts, settings.augment).all_variants() \
        if settings.augment.per_text else []
    extra = _read_lines(settings.unlabeled) if settings.unlabeled else []
    seen = set(train_texts)
    new = [t for t in dict.fromkeys([*aug, *extra]) if t not in seen]
    texts = [*train_texts, *new]
    labels = np.array([label_set.id(str(ex.label), ex.source) for ex in train]
                      + [-1] * len(new), dtype=np.int64)
    aug_set = set(aug)
    sources = {"augmented": sum(t in aug_set for t in new)}
    sources["unlabeled"] = len(new) - sources["augmented"]
    logger.info("transfer set: %d training texts, %d augmented, %d unlabeled -> %d new",
                len(train_texts), len(aug), len(extra), len(new))
    t0 = time.perf_counter()
    features = encode_with_masks(tokenizer, texts, teacher.options.max_len)
    probs = np.stack(run_model(teacher, features, settings.teacher_batch_size, tokenizer.pad_id))
    logger.info("teacher labeled %d texts in %.0f s", len(texts), time.perf_counter() - t0)
    return texts, labels, probs, len(new), sources


def distill(settings: DistillSettings) -> DistillResult:
    """The recipe: the teacher and data, the transfer set, the student trained on the
    teacher's probabilities, the same student on the gold labels alone (the baseline), and the
    report comparing the three. Long for its closures: `make`, `scores` and `trained` share
    the run's data and are used for both students."""
    out_dir = Path(settings.output_dir)
    teacher, tokenizer, splits = _teacher_and_data(settings)
    label_set = teacher.labels
    out_dir.mkdir(parents=True, exist_ok=True)
    texts, labels, probs, n_new, sources = _transfer_set(settings, teacher, tokenizer,
                                                         splits["train"])
    write_transfer(out_dir / "transfer.tsv", texts, labels, probs, label_set.names)

    dev, test = splits["dev"], splits["test"]
    dev_texts, dev_gold = [ex.text_a for ex in dev], [str(ex.label) for ex in dev]
    test_labeled = test is not None and all(ex.label is not None for ex in test)
    eval_texts = [ex.text_a for ex in (test if test else dev)]

    segmented: list[list[str]] = []
    if settings.student == "bow":
        segmenter = settings.bow_segmenter or default_segmenter()
        segmented = [segment(t, segmenter) for t in texts]

    def make(vocab_rows: Sequence[int]) -> _Student:
        torch.manual_seed(settings.seed)
        if settings.student == "bow":
            return _bow_student(settings, list(label_set), segmented, segmenter, vocab_rows)
        return _ernie_student(settings, teacher, tokenizer, texts)

    lr = settings.learning_rate or _DEFAULT_LR[
        "bow" if settings.student == "bow" else
        "ernie-from-teacher" if settings.student_layers else "ernie"]
    all_rows = list(range(len(texts)))
    steps = settings.epochs * math.ceil(len(all_rows) / settings.batch_size)
    report: dict[str, Any] = {"settings": _jsonable(settings), "transfer_size": len(texts),
                              "new_texts": n_new, **sources, "steps": steps,
                              "learning_rate": lr}

    def scores(predict) -> dict[str, float]:
        s = {"dev_accuracy": accuracy(predict(dev_texts), dev_gold)}
        if test_labeled:
            s["test_accuracy"] = accuracy(predict([ex.text_a for ex in test]),
                                          [str(ex.label) for ex in test])
        s["sentences_per_second"] = sentences_per_second(predict, eval_texts)
        return s

    def trained(student: _Student, targets, rows, run_settings, desc: str) -> dict[str, Any]:
        _, at = train_student(student, targets, labels, rows, steps, run_settings, lr,
                              lambda: accuracy(student.predict(dev_texts), dev_gold), desc)
        return {**scores(student.predict), "best_step": at,
                "parameters": sum(p.numel() for p in student.module.parameters())}

    report["teacher"] = scores(lambda ts: _teacher_predict(teacher, tokenizer, ts))
    report["teacher"]["parameters"] = sum(p.numel() for p in teacher.parameters())
    student = make(all_rows)
    report["student"] = trained(student, probs, all_rows, settings, "distill")
    student.save(out_dir / "student")

    baseline_dir = None
    if settings.baseline:
        rows = [i for i in all_rows if labels[i] >= 0]
        hard = np.zeros_like(probs)
        hard[rows] = np.eye(len(label_set), dtype=np.float32)[labels[rows]]
        plain = make(rows)
        base_settings = copy.copy(settings)
        base_settings.alpha, base_settings.temperature = 0.0, 1.0  # targets are the gold labels
        report["baseline"] = trained(plain, hard, rows, base_settings, "baseline")
        baseline_dir = out_dir / "baseline"
        plain.save(baseline_dir)
    report["speedup"] = report["student"]["sentences_per_second"] / \
        report["teacher"]["sentences_per_second"]
    atomic_write_text(out_dir / "report.json",
                      json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return DistillResult(out_dir, out_dir / "student", baseline_dir, len(texts), report)


def _teacher_predict(teacher, tokenizer, texts: Sequence[str]) -> list[dict]:
    examples = [TextExample(t, None, None, None, f"<text {i}>") for i, t in enumerate(texts)]
    return predict_examples(teacher, tokenizer, examples, 64)[0]


def _jsonable(settings: DistillSettings) -> dict:
    d = asdict(settings)
    return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in d.items()}


def format_report(report: dict[str, Any]) -> str:
    """The report as a small text table."""
    rows = [("teacher", report["teacher"]), ("student (distilled)", report["student"])]
    if "baseline" in report:
        rows.append(("student (no teacher)", report["baseline"]))
    test = "test_accuracy" in report["teacher"]
    lines = [f"{'model':22s}{'params':>11s}{'dev acc':>9s}" + (f"{'test acc':>10s}" if test else "")
             + f"{'sent/s':>10s}"]
    for name, r in rows:
        lines.append(f"{name:22s}{r['parameters']:11,d}{r['dev_accuracy']:9.4f}"
                     + (f"{r['test_accuracy']:10.4f}" if test else "")
                     + f"{r['sentences_per_second']:10.1f}")
    made = (f"read from {report['from']}" if "from" in report else
            f"{report['augmented']} augmented, {report['unlabeled']} unlabeled")
    lines.append(f"student speed-up over the teacher: {report['speedup']:.1f}x; transfer set "
                 f"{report['transfer_size']} texts ({report['new_texts']} new: {made})")
    return "\n".join(lines)


__all__ = ["DistillResult", "DistillSettings", "distill", "distill_loss", "format_report",
           "read_transfer", "train_student", "write_transfer"]
