"""The ERNIE 2.0 paper's comparison at small scale: continual learning (`sequential`: each stage
trains only its new tasks), multi-task learning (`joint`: every task from the first step) and
continual multi-task learning (`continual`: each stage trains its new tasks with every earlier
one), plus a knowledge-masking-only baseline, all on the same steps and data.

Writes, in OUT (default runs/compare_<lang>):
  compare.md / compare.json   every task's held-out metric at every stage end per schedule,
                              each earlier task's drop from its own stage end to the last one,
                              and (unless --no_finetune) each final model's fine-tuning scores
                              under the demo's protocol (examples/finetune_demo.py), beside
                              random initialization
  compare.png                 one panel per task: its metric at every stage end, per schedule

    python examples/pretrain_compare.py                       # demo_zh: 4 pre-trainings + fine-tuning
    python examples/pretrain_compare.py --scale 0.2 --no_finetune   # a quick look

An arm already finished in OUT is read back rather than trained again (and one stopped part-way
resumes from its checkpoint), so the arms can be pre-trained in separate processes first (e.g.
`--schedules continual,sequential --no_finetune` and `--schedules joint,km_only --no_finetune`
side by side), then compared with fine-tuning in one call. `--fresh` trains every arm again.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from ernie2.training import pretrain
from ernie2.training.config import load_config, scaled_steps

SCHEDULES = ("continual", "sequential", "joint", "km_only")
KM = "knowledge_masking"


def schedule_config(config: str, schedule: str, out: Path, scale: float, overrides: dict):
    """The config of one arm: the same stages, steps and data under another schedule, or
    (km_only) one stage of the plan's knowledge-masking tasks with all of its steps."""
    base = load_config(config, overrides).to_dict()
    stages = base["stages"]
    for st in stages:
        st["steps"] = scaled_steps(st["steps"], scale)
    changes = dict(overrides)
    changes["output_dir"] = str(out / schedule)
    if schedule == "km_only":
        tasks = [t for st in stages for t in st["tasks"] if t["task"] == KM]
        if not tasks:
            raise ValueError(f"{config}: no {KM} task to train alone")
        changes["stages"] = [{"name": "knowledge masking only",
                              "steps": sum(st["steps"] for st in stages), "tasks": tasks}]
        changes["train.schedule"] = "continual"
    else:
        if schedule == "sequential":  # a stage trains only its own tasks: weigh only those
            for st in stages:
                own = {t.get("name") or t["task"] for t in st["tasks"]}
                st["weights"] = {k: v for k, v in (st.get("weights") or {}).items() if k in own}
        changes["stages"] = stages
        changes["train.schedule"] = schedule
    return load_config(config, changes)


def forgetting(history: list[dict], metric) -> dict[str, float]:
    """Each task's metric at the end of the stage it was first evaluated in, minus its metric
    at the last stage end (positive: forgotten)."""
    first: dict[str, float] = {}
    for rec in history:
        for task, res in rec["results"].items():
            first.setdefault(task, metric(res))
    last = {task: metric(res) for task, res in history[-1]["results"].items()}
    return {t: first[t] - last[t] for t in first if t in last}


def write_outputs(out: Path, runs: dict, finetune: dict | None) -> dict[str, Path]:
    from ernie2.training.evaluation import forgetting_table

    tasks: list[str] = []
    for r in runs.values():
        for rec in r["history"]:
            tasks += [t for t in rec["results"] if t not in tasks]
    lines = ["# Schedules compared", "",
             "Held-out metric of every task at every stage end (blank: not trained yet; "
             "knowledge masking: accuracy of the masked tokens).", "",
             "| schedule | stage end | " + " | ".join(tasks) + " |",
             "|---|---|" + "---|" * len(tasks)]
    for name, r in runs.items():
        for row in forgetting_table(r["history"], tasks):
            cells = ["" if row[t] is None else f"{row[t]:.3f}" for t in tasks]
            lines.append(f"| {name} | {row['stage']}. {row['name']} (step {row['step']}) | "
                         + " | ".join(cells) + " |")
    chance = next(iter(runs.values()))["chance"]
    lines.append("| chance | | " + " | ".join(
        f"{chance[t]:.3f}" if t in chance else "" for t in tasks) + " |")
    lines += ["", "Drop of each task from the end of its first stage to the end of the run "
              "(positive: forgotten):", "",
              "| schedule | " + " | ".join(tasks) + " | largest drop |",
              "|---|" + "---|" * (len(tasks) + 1)]
    for name, r in runs.items():
        drops = r["forgetting"]
        worst = max(drops.values()) if drops else math.nan
        lines.append(f"| {name} | " + " | ".join(
            f"{drops[t]:+.3f}" if t in drops else "" for t in tasks) + f" | {worst:+.3f} |")
    if finetune:
        lines += ["", "Fine-tuning each final model (learning rate picked on dev per start, "
                  "3 seeds on test, mean ± std):", ""]
        names = list(finetune)
        starts = list(finetune[names[0]])
        lines += ["| start | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for s in starts:
            lines.append(f"| {s} | " + " | ".join(
                f"{finetune[n][s]['mean']:.3f} ± {finetune[n][s]['std']:.3f}" for n in names)
                + " |")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "compare.md", "json": out / "compare.json"}
    paths["md"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    paths["json"].write_text(json.dumps({"runs": runs, "finetune": finetune}, indent=1,
                                        default=str) + "\n", encoding="utf-8")
    png = plot(runs, tasks, out / "compare.png")
    if png:
        paths["png"] = png
    return paths


def plot(runs: dict, tasks: list[str], path: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from ernie2.training.evaluation import main_metric

    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    chance = next(iter(runs.values()))["chance"]
    for ax, task in zip(axes.flat, tasks):
        for k, (name, r) in enumerate(runs.items()):
            pts = [(rec["step"], main_metric(rec["results"][task])[1]) for rec in r["history"]
                   if task in rec["results"]]
            if pts:
                ax.plot(*zip(*pts), marker="o", color=f"C{k}", label=name)
        if task in chance:
            ax.axhline(chance[task], color="grey", linestyle=":", linewidth=1)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("step (stage ends)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("held-out metric at every stage end (dotted: chance)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(config: str = "demo_zh", out: str | Path | None = None,
        schedules=SCHEDULES, scale: float = 1.0, overrides: dict | None = None,
        finetune: bool = True, finetune_tasks: dict | None = None, workers: int = 2,
        progress: bool = True, fresh: bool = False) -> dict:
    from ernie2.training.evaluation import main_metric

    out = Path(out or f"runs/compare_{config.removeprefix('demo_')}")
    runs: dict = {}
    for schedule in schedules:
        cfg = schedule_config(config, schedule, out, scale, overrides or {})
        t0 = time.perf_counter()
        # An arm already finished in OUT with this config is read back (an interrupted
        # comparison resumes; arms can be run in separate processes first, `--schedules`);
        # `fresh` starts every arm again.
        result = pretrain(cfg, progress=progress, overwrite=fresh, resume=not fresh)
        if not result.completed:
            raise RuntimeError(f"the {schedule} run stopped before its end")
        runs[schedule] = {"history": result.history, "chance": result.chance,
                          "final": str(result.final_model), "steps": result.steps,
                          "minutes": (time.perf_counter() - t0) / 60,
                          "forgetting": forgetting(result.history, lambda r: main_metric(r)[1])}
        print(f"{schedule}: {result.steps} steps in {runs[schedule]['minutes']:.1f} min")
    scores = None
    if finetune:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import finetune_demo

        first = Path(next(iter(runs.values()))["final"])
        starts = {name: Path(r["final"]) for name, r in runs.items()}
        starts[finetune_demo.RANDOM] = finetune_demo.random_like(first, out / "random_init")
        tasks = finetune_tasks or finetune_demo.TASKS
        data = finetune_demo.build_data(out / "finetune_data", tasks)
        from ernie2.finetune.protocol import compare

        scores = compare(finetune_demo.protocol_tasks(tasks, data),
                         {k: str(v) for k, v in starts.items()}, out / "finetune",
                         workers=workers, progress=progress)
    paths = write_outputs(out, runs, scores)
    print(paths["md"].read_text(encoding="utf-8"))
    return {"runs": runs, "finetune": scores, "paths": paths}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", default="demo_zh", help="a shipped config or a path")
    p.add_argument("--out", help="output directory (default runs/compare_<lang>)")
    p.add_argument("--schedules", default=",".join(SCHEDULES),
                   help=f"comma-separated, of {', '.join(SCHEDULES)}")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every stage's steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key in every arm (repeatable)")
    p.add_argument("--no_finetune", dest="finetune", action="store_false")
    p.add_argument("--workers", type=int, default=2, help="parallel fine-tuning processes")
    p.add_argument("--no_progress", dest="progress", action="store_false")
    p.add_argument("--fresh", action="store_true",
                   help="train every arm again (default: an arm finished in OUT is read back, "
                        "one stopped part-way resumes)")
    a = p.parse_args(argv)
    schedules = [s.strip() for s in a.schedules.split(",") if s.strip()]
    unknown = sorted(set(schedules) - set(SCHEDULES))
    if unknown:
        p.error(f"unknown schedule(s) {', '.join(unknown)}; known: {', '.join(SCHEDULES)}")
    from ernie2.training.config import parse_override
    from ernie2.utils import setup_logging

    setup_logging()
    overrides = dict(parse_override(kv) for kv in a.set)
    run(a.config, a.out, schedules, a.scale, overrides, a.finetune, workers=a.workers,
        progress=a.progress, fresh=a.fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
