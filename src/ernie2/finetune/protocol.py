"""One fair protocol for comparing starting models (a pre-trained model, the same model from
random initialization, another pre-training recipe) on fine-tuning tasks.

Every start gets the same care: its own learning rate, picked on dev from a grid (seed 1), then
`seeds` runs at that rate scored on test (mean and standard deviation). Each run keeps its best
dev checkpoint (evaluated `evals` times), so more steps never hurt a start that converges early.
Optional label-efficiency points fine-tune on the first n training examples at each start's
chosen rate (`subset_steps`: 20 epochs, between a quarter of the task's steps and all of them).
Runs are independent and small, so they go to `workers` processes of one thread each (tiny
models gain nothing from threads, and two processes use two cores fully).

A finished run leaves `result.json` in its directory, keyed by everything that decides its
score (the task, the run's settings, and digests of the start's weights and of the data), and a
later `compare` over the same directory reuses it instead of running it again: an interrupted
comparison resumes where it stopped, and one start's runs can be done in a separate process
(e.g. random initialization's alone, while the model to compare it with is still
pre-training: a start's runs do not depend on the other starts).

    from ernie2.finetune.protocol import ProtocolTask, compare
    tasks = [ProtocolTask("sentiment", "classify", "data/sentiment", steps=600,
                          lrs=(3e-4, 1e-3, 3e-3))]
    result = compare(tasks, {"pre-trained": "runs/x/final", "random": "runs/x/random"}, "out")
    result["sentiment"]["random"]["mean"]
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence

from ernie2.utils import atomic_write_text


@dataclass(frozen=True)
class ProtocolTask:
    """A fine-tuning task under the protocol: a data directory in one of the task type's
    formats (train, dev and test splits, test labelled)."""

    name: str
    task: str  # task type: classify, pair, regress, ner, mrc, rank
    data_dir: str
    steps: int  # optimizer steps of every run
    lrs: tuple[float, ...]  # the learning-rate grid each start picks from on dev
    metric: str | None = None  # main metric (default: the task type's)
    max_len: int = 64
    batch_size: int = 32
    evals: int = 8  # dev evaluations per run; the best one is kept
    pooling: str = "pooler"  # what a sequence-level head reads (TaskOptions.pooling)
    # the encoder's hidden and attention dropout while fine-tuning (None: each start's config)
    encoder_dropout: float | None = None
    # layer-wise learning-rate decay (FinetuneSettings.layerwise_decay; 1.0: none)
    layerwise_decay: float = 1.0
    # linear probing, then fine-tuning (FinetuneSettings.head_only_proportion; 0: none)
    head_only_proportion: float = 0.0


@dataclass(frozen=True)
class Run:
    task: ProtocolTask
    start: str
    model: str
    lr: float
    seed: int
    train_size: int | None  # None: the whole train split
    data_dir: str  # the task's data, or its train subset's copy
    out_dir: str


def _digest(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and contents, in name order; weights
    by their tensors), computed once per file state (sizes and times)."""
    stats = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns)
                  for f in ([path] if path.is_file() else sorted(path.rglob("*"))))
    return _digest_of(path, stats)


@functools.lru_cache(maxsize=256)
def _digest_of(path: Path, stats: tuple) -> str:  # `stats`: the cache's key (sizes, times)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        if f.suffix == ".safetensors":
            _hash_tensors(f, h)
            continue
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _hash_tensors(path: Path, h) -> None:
    """Weights by their names, dtypes, shapes and values, not their file's bytes: the same
    weights saved again (a finished pre-training resumed re-exports its model, and the header
    may order its entries differently) keep their digest."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        for name in sorted(f.keys()):
            t = f.get_tensor(name).contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())


_TASK_DEFAULTS = {f.name: f.default for f in fields(ProtocolTask)}


def run_key(run: Run) -> dict:
    """What decides a run's score: its settings, and digests of the start's files (weights,
    config, vocab) and of the data directory. Paths and the start's name are left out."""
    key = asdict(run)
    task = key.pop("task")
    task.pop("name")
    # at their defaults, options added later leave the keys of the runs made before them
    for name in ("layerwise_decay", "head_only_proportion"):
        if task[name] == _TASK_DEFAULTS[name]:
            del task[name]
    for k in ("start", "model", "data_dir", "out_dir"):
        key.pop(k)
    model = Path(run.model)
    files = [f for f in ("config.json", "vocab.txt", "model.safetensors") if (model / f).is_file()]
    key = {**key, "task": task, "steps": _steps(run),
           "model": {f: _digest(model / f) for f in files}, "data": _digest(Path(run.data_dir))}
    return json.loads(json.dumps(key))  # as it reads back from result.json (lists, not tuples)


def _steps(run: Run) -> int:
    return run.task.steps if run.train_size is None else subset_steps(run.task, run.train_size)


def cached(run: Run, key: dict) -> tuple[float, float] | None:
    """The scores of a run done before with this key (`run_key(run)`), or None."""
    path = Path(run.out_dir) / "result.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if saved.get("key") != key:
        return None
    return float(saved["dev"]), float(saved["test"])


def _run(run: Run, key: dict) -> tuple[float, float]:
    """(best dev score, test score of the best dev model); runs in a worker process and writes
    them, with the run's key (`run_key(run)`, computed by the caller), to out_dir/result.json."""
    import logging

    import torch

    from ernie2.finetune import FinetuneSettings, TaskOptions, finetune

    torch.set_num_threads(1)
    logging.getLogger("ernie2").setLevel(logging.WARNING)
    t = run.task
    steps = _steps(run)
    r = finetune(FinetuneSettings(
        task=t.task, data_dir=run.data_dir, from_pretrained=run.model, output_dir=run.out_dir,
        batch_size=t.batch_size, learning_rate=run.lr, max_steps=steps,
        warmup_proportion=0.1, weight_decay=0.01, eval_every=max(1, steps // t.evals),
        eval_each_epoch=False,
        main_metric=t.metric, seed=run.seed, precision="fp32", progress=False,
        hidden_dropout_prob=t.encoder_dropout, attention_probs_dropout_prob=t.encoder_dropout,
        layerwise_decay=t.layerwise_decay, head_only_proportion=t.head_only_proportion,
        log_every=t.steps, tensorboard="off",
        options=TaskOptions(max_len=t.max_len, pooling=t.pooling)))
    metric = r.main_metric
    shutil.rmtree(Path(run.out_dir) / "best", ignore_errors=True)  # keep metrics, not models
    scores = (r.best_score, r.test_scores[metric])
    atomic_write_text(Path(run.out_dir) / "result.json",
                      json.dumps({"key": key, "dev": scores[0], "test": scores[1]}, indent=1))
    return scores


def subset_steps(task: ProtocolTask, n: int) -> int:
    """Steps of a run on n training examples: 20 epochs, at least a quarter of the task's steps
    and at most all of them (a small subset converges sooner; its best dev model is kept)."""
    return min(task.steps, max(task.steps // 4, math.ceil(20 * n / task.batch_size)))


def train_subset(task: ProtocolTask, n: int, out_dir: str | os.PathLike) -> Path:
    """A copy of the task's data directory whose train split holds its first `n` examples
    (TSV rows, or blank-line separated sentences of a column file)."""
    from ernie2.finetune.run import find_split
    from ernie2.finetune.task_types import get_task_type

    src = Path(task.data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task_type = get_task_type(task.task)
    for split in ("train", "dev", "test"):
        path = find_split(src, split, task_type)
        if path is None:
            raise FileNotFoundError(f"{src}: no {split} split for task type {task.task}")
        if split != "train":
            shutil.copyfile(path, out / path.name)
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".tsv":
            lines = text.splitlines()
            kept = "\n".join(lines[:n + 1]) + "\n"
            available = len(lines) - 1
        else:
            blocks = [b for b in text.split("\n\n") if b.strip()]
            kept = "\n\n".join(blocks[:n]) + "\n"
            available = len(blocks)
        if n > available:
            raise ValueError(f"{path}: {n} training examples asked, {available} there")
        (out / path.name).write_text(kept, encoding="utf-8")
    return out


def mean_std(xs: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else math.nan)


def compare(tasks: Iterable[ProtocolTask], starts: Mapping[str, str | os.PathLike],
            out_dir: str | os.PathLike, seeds: Sequence[int] = (1, 2, 3),
            train_sizes: Sequence[int] | Mapping[str, Sequence[int]] = (),
            curve_seeds: Sequence[int] | None = None,
            workers: int = 2, progress: bool = True) -> dict:
    """Fine-tune every start on every task under the protocol. Returns
    {task: {start: {"lr", "grid": {lr: dev}, "dev", "test": [per seed], "mean", "std",
    "curve": {n: {"test": [...], "mean", "std"}}}}}. `train_sizes` may also map a task's name to
    its own sizes. Runs done before under `out_dir` with the same key (`run_key`) are read back,
    not run again. The runs of every task share each phase, longest first, so that the pool's
    workers finish together.

    One function over 60 lines on purpose: the three phases (the grid on dev, the chosen rate's
    further seeds, the label-efficiency points) share one process pool and one progress bar,
    and each phase's runs depend on the previous phase's choice."""
    from tqdm import tqdm

    tasks = list(tasks)
    out = Path(out_dir)
    curve_seeds = tuple(seeds[:1] if curve_seeds is None else curve_seeds)
    results: dict = {t.name: {s: {"grid": {}, "curve": {}} for s in starts} for t in tasks}
    sizes = {t.name: tuple(train_sizes.get(t.name, ()) if isinstance(train_sizes, Mapping)
                           else train_sizes) for t in tasks}
    for t in tasks:
        for n in sizes[t.name]:
            train_subset(t, n, out / f"data_{t.name}_{n}")

    def run_of(t, start, lr, seed, n=None):
        tag = f"{t.name}_{start}_lr{lr:g}_s{seed}" + (f"_n{n}" if n else "")
        data = t.data_dir if n is None else str(out / f"data_{t.name}_{n}")
        return Run(t, start, str(starts[start]), lr, seed, n, data,
                   str(out / "runs" / tag.replace(" ", "-").replace("/", "-")))

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx) as pool, \
            tqdm(desc="fine-tuning runs", unit=" run", disable=not progress) as bar:
        def execute(runs: list[Run]) -> list[tuple[float, float]]:
            """Each run's scores, in the order given; the runs not cached go to the pool
            longest first."""
            keys = [run_key(r) for r in runs]
            outs = [cached(r, k) for r, k in zip(runs, keys)]
            todo = sorted((i for i, d in enumerate(outs) if d is None),
                          key=lambda i: _steps(runs[i]), reverse=True)
            bar.total = (bar.total or 0) + len(todo)
            bar.refresh()
            futures = [(i, pool.submit(_run, runs[i], keys[i])) for i in todo]
            for i, future in futures:
                outs[i] = future.result()
                bar.update(1)
            return outs

        # 1. The learning-rate grid on dev, seed 1, whole train split.
        grid = [run_of(t, s, lr, seeds[0]) for t in tasks for s in starts for lr in t.lrs]
        for r, (dev, test) in zip(grid, execute(grid)):
            results[r.task.name][r.start]["grid"][r.lr] = (dev, test)
        # 2. Every start at its own best rate: the other seeds, and the label-efficiency points.
        later = []
        for t in tasks:
            for s in starts:
                entry = results[t.name][s]
                entry["lr"] = max(entry["grid"], key=lambda lr: _key(entry["grid"][lr][0]))
                later += [run_of(t, s, entry["lr"], seed) for seed in seeds[1:]]
                later += [run_of(t, s, entry["lr"], seed, n) for n in sizes[t.name]
                          for seed in curve_seeds]
        for r, (_dev, test) in zip(later, execute(later)):
            entry = results[r.task.name][r.start]
            if r.train_size is None:
                entry.setdefault("more", {})[r.seed] = test
            else:
                entry["curve"].setdefault(r.train_size, {"test": []})["test"].append(test)
    for t in tasks:
        for s in starts:
            entry = results[t.name][s]
            dev, first = entry["grid"][entry["lr"]]
            entry["dev"] = dev
            more = entry.pop("more", {})
            entry["test"] = [first] + [more[seed] for seed in seeds[1:]]
            entry["mean"], entry["std"] = mean_std(entry["test"])
            for point in entry["curve"].values():
                point["mean"], point["std"] = mean_std(point["test"])
    return results


def _key(score: float) -> float:
    return -math.inf if math.isnan(score) else score


def gain(a: dict, b: dict) -> tuple[float, float]:
    """Mean difference of two starts' test scores and its standard error."""
    se = math.sqrt(a["std"] ** 2 / len(a["test"]) + b["std"] ** 2 / len(b["test"]))
    return a["mean"] - b["mean"], se


__all__ = ["ProtocolTask", "cached", "compare", "gain", "mean_std", "run_key", "subset_steps",
           "train_subset"]
