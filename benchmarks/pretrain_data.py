"""Pre-training data speed: examples/s and raw MB/s per task on one core, peak memory while
streaming the demo corpus at 1x and 10x its size, and the ratio to what a training step of the
"small" model consumes.

    python benchmarks/pretrain_data.py [--demo data/demo] [--seconds 3] [--tasks a,b]

The demo corpora are built first when --demo has none (`ernie2 data demo`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core: no tokenizer threads


def stream_speed(demo: Path, lang: str, name: str, seconds: float, max_len: int):
    """(examples/s, raw corpus MB/s, examples) building one task's examples for `seconds`."""
    from ernie2.tasks import create_task, stream_examples
    from ernie2.tokenizer import ErnieTokenizer

    corpus = demo / f"corpus_{lang}.jsonl"
    size = corpus.stat().st_size
    tok = ErnieTokenizer(demo / f"vocab_{lang}.txt")
    task = create_task(name, tokenizer=tok, max_len=max_len, task_id=0)
    stream = stream_examples(task, str(corpus), seed=0)
    it = iter(stream)
    try:
        next(it)  # warm caches (jieba, tokenizer) outside the clock
    except ValueError:
        return None  # the task builds nothing from this corpus (e.g. capitalization in Chinese)
    start_state = stream.state_dict()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            next(it)
            n += 1
    dt = time.perf_counter() - t0

    def consumed(state):
        pos = state["position"]
        offset = pos["reader"]["offset"] if pos else 0
        return state["epoch"] * size + offset
    raw = consumed(stream.state_dict()) - consumed(start_state)
    return n / dt, raw / dt / 1e6, n


def train_step_rate(batch: int = 32, seq: int = 128, steps: int = 3) -> float:
    """Examples/s consumed by forward+backward of ErnieConfig.from_name("small")."""
    import torch

    from ernie2.model.config import ErnieConfig
    from ernie2.model.modeling import ErnieModel

    torch.manual_seed(0)
    model = ErnieModel(ErnieConfig.from_name("small", vocab_size=8000))
    ids = torch.randint(5, 8000, (batch, seq))
    pooled, encoded = model(ids)  # warm-up
    (encoded.float().square().mean() + pooled.sum()).backward()
    t0 = time.perf_counter()
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        pooled, encoded = model(ids)
        (encoded.float().square().mean() + pooled.sum()).backward()
    return batch * steps / (time.perf_counter() - t0)


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(corpus: str, vocab: str, lang: str) -> None:
    """Stream one full pass of knowledge masking over `corpus`; print RSS before and at peak.

    (getrusage's ru_maxrss survives exec on Linux, so it would report the parent's peak.)"""
    from ernie2.tasks import create_task, stream_examples
    from ernie2.tokenizer import ErnieTokenizer

    task = create_task("knowledge_masking", tokenizer=ErnieTokenizer(vocab), max_len=128)
    base = _status_mb("VmRSS")
    try:  # reset the high-water mark to the current RSS
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    n = 0
    t0 = time.perf_counter()
    for _ in stream_examples(task, corpus, epochs=1, max_builds_per_doc=1):
        n += 1
    print(json.dumps({"examples": n, "seconds": time.perf_counter() - t0,
                      "base_mb": base, "peak_mb": _status_mb("VmHWM")}))


def peak_memory(demo: Path, lang: str, times: int) -> dict:
    src = demo / f"corpus_{lang}.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / f"corpus_{lang}_x{times}.jsonl"
        data = src.read_bytes()
        with open(corpus, "wb") as fh:
            for _ in range(times):
                fh.write(data)
        out = subprocess.run([sys.executable, __file__, "--_memory_child", str(corpus),
                              str(demo / f"vocab_{lang}.txt"), lang],
                             check=True, capture_output=True, text=True)
        info = json.loads(out.stdout.strip().splitlines()[-1])
        info["corpus_mb"] = corpus.stat().st_size / 1e6
        return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--demo", default="data/demo", help="demo directory (built when missing)")
    p.add_argument("--seconds", type=float, default=3.0, help="timing per task and language")
    p.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    p.add_argument("--max_len", type=int, default=128)
    p.add_argument("--_memory_child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._memory_child:
        memory_child(*args._memory_child)
        return

    import torch

    torch.set_num_threads(1)
    from ernie2.corpus import build_demo
    from ernie2.tasks import REGISTRY

    demo = Path(args.demo)
    if not (demo / "demo.json").is_file():
        print(f"building the demo corpora in {demo} ...", flush=True)
        build_demo(demo)
    names = args.tasks.split(",") if args.tasks else sorted(REGISTRY)

    torch.set_num_threads(os.cpu_count() or 1)
    train_rate = train_step_rate()
    torch.set_num_threads(1)
    print(f"reference: small model forward+backward, batch 32 x 128, all {os.cpu_count()} cores: "
          f"{train_rate:.1f} examples/s\n")
    print(f"{'task':<24} {'lang':<4} {'examples/s':>10} {'raw MB/s':>9} {'x train':>8}")
    for name in names:
        for lang in ("zh", "en"):
            got = stream_speed(demo, lang, name, args.seconds, args.max_len)
            if got is None:
                print(f"{name:<24} {lang:<4} {'(no examples for this language)':>29}")
                continue
            rate, mbs, _ = got
            print(f"{name:<24} {lang:<4} {rate:>10.0f} {mbs:>9.2f} {rate / train_rate:>8.1f}",
                  flush=True)
    print("\npeak memory streaming one pass of knowledge_masking (one example per document):")
    print(f"{'lang':<4} {'size':>5} {'corpus MB':>9} {'examples':>9} {'seconds':>8} "
          f"{'base MB':>8} {'peak MB':>8}")
    for lang in ("zh", "en"):
        for times in (1, 10):
            m = peak_memory(demo, lang, times)
            print(f"{lang:<4} {times:>4}x {m['corpus_mb']:>9.1f} {m['examples']:>9} "
                  f"{m['seconds']:>8.1f} {m['base_mb']:>8.0f} {m['peak_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
