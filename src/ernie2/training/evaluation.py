"""Held-out evaluation of every task, and the forgetting report (CSV, Markdown, PNG).

Each task's held-out set is built once per run from documents never trained on, so its metric
is comparable across stages: the forgetting report lists every task's metric at the end of
every stage, beside the chance level of that set (the share of its most frequent label).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch

from ernie2.model.batch import rank_of
from ernie2.model.heads import IGNORE_INDEX
from ernie2.tasks.protocol import Example, collate, member
from ernie2.training import distributed as dist_util
from ernie2.training.precision import autocast
from ernie2.utils import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)


def chance_level(examples: Iterable[Example]) -> float:
    """Accuracy of always answering the most frequent label of these examples."""
    counts: Counter = Counter()
    for ex in examples:
        if isinstance(ex.labels, list):
            counts.update(l for l in ex.labels if l != IGNORE_INDEX)
        else:
            counts[int(ex.labels)] += 1
    total = sum(counts.values())
    return counts.most_common(1)[0][1] / total if total else math.nan


def summarize(loss_sum: float, units: float, sums: dict[str, float], lm_like: bool) -> dict:
    """Readable metrics from additive sums: loss, accuracy (when the task counts correct
    answers) and perplexity for language-model-like tasks."""
    out = {"loss": loss_sum / units if units else math.nan}
    if "correct" in sums and sums.get("count"):
        out["accuracy"] = sums["correct"] / sums["count"]
    if lm_like and units:
        out["perplexity"] = math.exp(min(out["loss"], 50.0))
    return out


def is_lm_like(task, vocab_size: int) -> bool:
    """A per-token task predicting vocabulary ids (masked LM and kin): perplexity applies."""
    if member(task, "vocab_sized"):
        return True
    return task.kind == "token" and task.num_classes == vocab_size


@torch.no_grad()
def evaluate(model, heldout: dict[str, list[Example]], *, device: torch.device,
             precision: str, batch_size: int, pad_id: int, task_ids: dict[str, int],
             vocab_size: int) -> dict[str, dict]:
    """Metrics of every task in `heldout` (the examples are sharded over ranks and the sums
    combined). The model is put back in training mode afterwards."""
    was_training = model.training
    model.eval()
    r, w = dist_util.rank(), dist_util.world_size()
    results: dict[str, dict] = {}
    local: dict[str, list[float]] = {}
    local_sums: dict[str, dict[str, float]] = {}
    try:
        for name, examples in heldout.items():
            if name not in model.heads:
                continue
            mine = [ex for j, ex in enumerate(examples) if rank_of(j, w) == r]
            loss_sum = units = 0.0
            sums: dict[str, float] = {}
            for i in range(0, len(mine), batch_size):
                chunk = mine[i:i + batch_size]
                batch = collate(chunk, pad_id, task_ids[name])
                n_units = float((batch["labels"] != IGNORE_INDEX).sum())
                with autocast(precision, device):
                    losses, mets = model({name: batch})
                if n_units:
                    loss_sum += float(losses[name].float()) * n_units
                    units += n_units
                for k, v in mets[name].items():
                    sums[k] = sums.get(k, 0.0) + float(v)
            local[name] = [loss_sum, units]
            local_sums[name] = sums
    finally:
        model.train(was_training)
    gathered = dist_util.all_gather_objects((local, local_sums))
    for name in local:
        loss_sum = sum(g[0][name][0] for g in gathered)
        units = sum(g[0][name][1] for g in gathered)
        sums: dict[str, float] = {}
        for g in gathered:
            for k, v in g[1][name].items():
                sums[k] = sums.get(k, 0.0) + v
        results[name] = summarize(loss_sum, units, sums,
                                  is_lm_like(model.tasks[name], vocab_size))
        results[name]["examples"] = len(heldout[name])
    return results


def main_metric(result: dict) -> tuple[str, float]:
    """The number the forgetting report tracks: accuracy when the task has it, else loss."""
    if "accuracy" in result:
        return "accuracy", result["accuracy"]
    return "loss", result["loss"]


# ---------------------------------------------------------------------- forgetting report
def forgetting_table(history: list[dict], tasks: list[str]) -> list[dict]:
    """Rows: one per stage end, {stage, name, step, <task>: metric or None}."""
    rows = []
    for rec in history:
        row = {"stage": rec["stage"] + 1, "name": rec["name"], "step": rec["step"]}
        for t in tasks:
            res = rec["results"].get(t)
            row[t] = main_metric(res)[1] if res else None
        rows.append(row)
    return rows


def _fmt(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def write_forgetting_report(history: list[dict], tasks: list[str], chance: dict[str, float],
                            metric_names: dict[str, str], out_dir: Path,
                            title: str = "") -> dict[str, Path]:
    """forgetting.csv, forgetting.md and forgetting.png in `out_dir`."""
    rows = forgetting_table(history, tasks)
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["stage", "name", "step", *tasks])
    for row in rows:
        writer.writerow([row["stage"], row["name"], row["step"], *(_fmt(row[t]) for t in tasks)])
    writer.writerow(["chance", "", "", *(_fmt(chance.get(t)) for t in tasks)])
    paths = {"csv": out_dir / "forgetting.csv", "md": out_dir / "forgetting.md",
             "png": out_dir / "forgetting.png"}
    atomic_write_text(paths["csv"], buf.getvalue())
    atomic_write_text(paths["md"], markdown_table(rows, tasks, chance, metric_names, title))
    try:
        atomic_write_bytes(paths["png"], plot(rows, tasks, chance, metric_names, title))
    except ImportError:
        logger.warning("matplotlib is not installed: no forgetting.png")
        paths.pop("png")
    return paths


def markdown_table(rows: list[dict], tasks: list[str], chance: dict[str, float],
                   metric_names: dict[str, str], title: str = "") -> str:
    head = ["stage", *(f"{t} ({metric_names.get(t, 'accuracy')})" for t in tasks)]
    lines = [f"# Forgetting report{': ' + title if title else ''}", "",
             "Held-out metric of every task at the end of every stage (blank: not yet "
             "introduced).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"{row['stage']}. {row['name']} (step {row['step']})",
                 *(_fmt(row[t]) for t in tasks)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| chance | " + " | ".join(_fmt(chance.get(t)) for t in tasks) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], tasks: list[str], chance: dict[str, float],
         metric_names: dict[str, str], title: str = "") -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    xs = [r["stage"] for r in rows]
    for i, t in enumerate(tasks):
        color = f"C{i % 10}"
        pts = [(x, r[t]) for x, r in zip(xs, rows) if r[t] is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", color=color,
                    label=f"{t} ({metric_names.get(t, 'accuracy')})")
        c = chance.get(t)
        if c is not None and not math.isnan(c) and metric_names.get(t, "accuracy") == "accuracy":
            ax.axhline(c, color=color, linestyle=":", linewidth=1)
    ax.set_xticks(xs, [f"{r['stage']}. {r['name']}" for r in rows], rotation=15, ha="right")
    ax.set_xlabel("end of stage")
    ax.set_ylabel("held-out metric (dotted: chance)")
    ax.set_title(f"Forgetting report{': ' + title if title else ''}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
