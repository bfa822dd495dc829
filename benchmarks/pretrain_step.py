"""Training-step throughput: our masked-LM pre-training step against transformers'
ErnieForMaskedLM on the same config, weights, examples and masking rate, in one run.

Variants (each in its own subprocess, so its peak memory is its own):
- hf_fp32:   transformers ErnieForMaskedLM, fixed-size batches padded to their longest example,
             logits over the whole vocab at every position (what its MLM loss needs);
- ours_fp32: ErnieModel + MaskedLMHead through the training loop (logits only at masked
             positions, SDPA attention, fused AdamW, batches packed by token budget);
- ours_bf16: the same under bf16 autocast (fp32 master weights);
- ours_compile: ours_fp32 with the encoder and head under torch.compile (dynamic shapes; the
             compile happens in the warm-up steps, which are not timed).
Both sides train on the same examples each step (lengths drawn from a fixed distribution, 15%
of tokens masked), so tokens/s counts the same real (non-padding) tokens. The machine's matmul
throughput is measured in the same run, in each precision, for MFU.

    python benchmarks/pretrain_step.py                 # base size, seq <= 128
    python benchmarks/pretrain_step.py --size small --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ernie2 import ErnieConfig, ErnieModel  # noqa: E402
from ernie2.model.heads import MaskedLMHead  # noqa: E402

MASK_RATE = 0.15
MASK_ID, CLS_ID, SEP_ID, PAD_ID = 3, 1, 2, 0


def make_examples(n: int, seq: int, vocab: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) pairs: lengths uniform in [seq/4, seq], 15% of tokens masked."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(seq // 4, seq)
        ids = [CLS_ID] + [rng.randrange(5, vocab) for _ in range(length - 2)] + [SEP_ID]
        labels = [-100] * length
        body = list(range(1, length - 1))
        for i in rng.sample(body, max(1, round(MASK_RATE * len(body)))):
            labels[i] = ids[i]
            ids[i] = MASK_ID
        out.append((ids, labels))
    return out


def pad(examples, width: int | None = None):
    width = width or max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), PAD_ID, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)] = torch.tensor(x)
        labels[i, :len(y)] = torch.tensor(y)
        mask[i, :len(x)] = 1
    return ids, labels, mask


def pack_by_tokens(examples, budget: int):
    """Micro-batches of at most `budget` padded tokens, longest first: the trainer's packing."""
    from ernie2.model.batch import length_batches
    return [[examples[i] for i in group]
            for group in length_batches([len(ids) for ids, _ in examples], None, budget)]


def peak_matmul(precision: str, n: int = 2048, seconds: float = 1.0) -> float:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def useful_flops(config: ErnieConfig, tokens: int, masked: int, mean_len: float) -> float:
    """Training FLOPs (3x forward, matmuls only) of the work both sides must do: the encoder on
    every real token and the MLM transform + decoder at masked positions."""
    model = ErnieModel(config)
    enc = model.flops_per_token(int(mean_len)) * tokens
    h, v = config.hidden_size, config.vocab_size
    head = 2 * (h * h + h * v) * masked
    return 3 * (enc + head)


# ---------------------------------------------------------------------- one variant
def run_variant(name: str, args) -> dict:
    torch.manual_seed(0)
    weights = Path(args.weights)
    config = ErnieConfig.from_file(weights / "config.json")
    steps = [make_examples(args.batch, args.seq, config.vocab_size, seed=s)
             for s in range(args.warmup + args.steps)]
    if name == "hf_fp32":
        from transformers import ErnieForMaskedLM
        model = ErnieForMaskedLM.from_pretrained(weights).train()
        attn = getattr(model.config, "_attn_implementation", "?")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

        def step(examples):
            ids, labels, mask = pad(examples)
            out = model(input_ids=ids, attention_mask=mask, labels=labels,
                        task_type_ids=torch.zeros_like(ids))
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        from ernie2.model.heads import IGNORE_INDEX
        from ernie2.training.loop import Trainer
        from ernie2.training.optim import WarmupLinear, make_optimizer

        attn = "sdpa"
        precision = "bf16" if name == "ours_bf16" else "fp32"
        encoder = ErnieModel.from_pretrained(weights)
        head = MaskedLMHead(config, encoder.embeddings.word_embeddings)
        from ernie2.model.checkpoint import read_checkpoint
        head.load_state_dict(read_checkpoint(weights).heads("mlm"))
        module = torch.nn.ModuleDict({"encoder": encoder, "head": head}).train()
        if name == "ours_compile":
            module["encoder"] = torch.compile(encoder, dynamic=True)
            module["head"] = torch.compile(head, dynamic=True)

        def step_fn(model, batch):
            ids, labels, mask = batch
            _, encoded = model["encoder"](ids, attention_mask=mask)
            where = labels != IGNORE_INDEX
            logits = model["head"](encoded, where)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[where])
            return {"mlm": loss}, {}

        def units(batch):
            ids, labels, _ = batch
            return {"mlm": (float((labels != IGNORE_INDEX).sum()), float(ids.shape[0]))}

        opt = make_optimizer(module, 1e-4, 0.01)
        trainer = Trainer(module, step_fn, units, ["mlm"], opt, WarmupLinear(opt, [1e-4] * 2, 0, 10 ** 6),
                          device=torch.device("cpu"), precision=precision, grad_clip=None)

        def step(examples):
            trainer.train_step([pad(b) for b in pack_by_tokens(examples, args.micro_tokens)])

    for examples in steps[:args.warmup]:
        step(examples)
    tokens = masked = padded = 0
    lengths = []
    t0 = time.perf_counter()
    for examples in steps[args.warmup:]:
        step(examples)
        tokens += sum(len(x) for x, _ in examples)
        masked += sum(sum(1 for l in y if l != -100) for _, y in examples)
        padded += len(examples) * max(len(x) for x, _ in examples)
        lengths += [len(x) for x, _ in examples]
    elapsed = time.perf_counter() - t0
    flops = useful_flops(config, tokens, masked, sum(lengths) / len(lengths))
    precision = "bf16" if name == "ours_bf16" else "fp32"
    return {"variant": name, "attention": attn, "tokens_per_s": tokens / elapsed,
            "step_s": elapsed / args.steps, "useful_flops_per_s": flops / elapsed,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "padding_hf": 1 - tokens / padded, "precision": precision}


# ---------------------------------------------------------------------- driver
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="base", help="named ErnieConfig size")
    p.add_argument("--vocab", type=int, default=18000, help="vocab size (ERNIE 1.0 zh: 18000)")
    p.add_argument("--seq", type=int, default=128, help="longest example")
    p.add_argument("--batch", type=int, default=16, help="examples per optimizer step")
    p.add_argument("--micro-tokens", dest="micro_tokens", type=int, default=4096,
                   help="our token budget per forward pass")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--variants", default="hf_fp32,ours_fp32,ours_bf16")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(run_variant(args.worker, args)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        config = ErnieConfig.from_name(args.size, vocab_size=args.vocab, use_task_id=True,
                                       max_position_embeddings=max(512, args.seq),
                                       hidden_dropout_prob=0.0,
                                       attention_probs_dropout_prob=0.0)
        encoder = ErnieModel(config)
        head = MaskedLMHead(config, encoder.embeddings.word_embeddings)
        encoder.save_pretrained(tmp, extra_tensors={f"heads.mlm.{k}": v
                                                    for k, v in head.state_dict().items()})
        threads = torch.get_num_threads()
        print(f"model: {args.size} ({config.num_hidden_layers} layers, hidden "
              f"{config.hidden_size}, vocab {config.vocab_size}), {args.batch} examples/step of "
              f"{args.seq // 4}..{args.seq} tokens, {MASK_RATE:.0%} masked; torch "
              f"{torch.__version__}, {threads} threads")
        peaks = {prec: peak_matmul(prec) for prec in ("fp32", "bf16")}
        print("matmul peak (2048^3): " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s"
                                                   for k, v in peaks.items()))
        results = []
        for name in args.variants.split(","):
            cmd = [sys.executable, __file__, "--worker", name, "--weights", tmp,
                   "--seq", str(args.seq), "--batch", str(args.batch), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--micro-tokens", str(args.micro_tokens)]
            out = subprocess.run(cmd, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if out.returncode != 0:
                print(f"{name}: failed\n{out.stderr[-2000:]}")
                continue
            res = json.loads(out.stdout.strip().splitlines()[-1])
            res["mfu"] = res["useful_flops_per_s"] / peaks[res["precision"]]
            results.append(res)
            print(f"{name:10s} {res['tokens_per_s']:8.0f} tok/s  {res['step_s']:6.2f} s/step  "
                  f"MFU {100 * res['mfu']:5.1f}% of {res['precision']} matmul peak  "
                  f"peak RSS {res['peak_rss_mb']:6.0f} MB  (attention: {res['attention']})")
        base = next((r for r in results if r["variant"] == "hf_fp32"), None)
        if base:
            for r in results:
                if r is not base:
                    print(f"{r['variant']} / hf_fp32: {r['tokens_per_s'] / base['tokens_per_s']:.2f}x")
            print(f"padding in the transformers batches: {100 * base['padding_hf']:.0f}% of "
                  "computed tokens")
        if args.json:
            Path(args.json).write_text(json.dumps({"peaks": peaks, "results": results},
                                                  indent=1))


if __name__ == "__main__":
    main()
