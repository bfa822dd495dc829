"""Training logs: per-task loss and metric, learning rate, tokens/s and MFU, to the console, a
JSON-lines file, a CSV file and TensorBoard (when installed)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from ernie2.training import distributed as dist_util
from ernie2.training.evaluation import summarize
from ernie2.training.loop import StepResult

logger = logging.getLogger(__name__)

CSV_FIELDS = ["step", "stage", "split", "task", "loss", "accuracy", "perplexity", "lr",
              "tokens_per_s", "mfu", "grad_norm", "skipped"]


class MetricLogger:
    """Accumulates step results and writes a record every `every` steps (rank 0 writes).

    `flops_per_token(seq_len)` is the model's forward FLOPs per token; training costs three
    times that (forward and backward). MFU is measured on real (non-padding) tokens against
    `peak_flops`, so padding waste shows up as lost utilization."""

    def __init__(self, out_dir: Path, every: int, *, jsonl: bool = True, csv_file: bool = True,
                 tensorboard: str = "auto", flops_per_token: Callable[[float], float] | None = None,
                 peak_flops: float | None = None, lm_like: Callable[[str], bool] = lambda t: False,
                 console: bool = True):
        self.every = every
        self.main = dist_util.rank() == 0
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops
        self.lm_like = lm_like
        self.console = console
        self.stage = 0
        self.out_dir = Path(out_dir)
        self.jsonl = self.out_dir / "metrics.jsonl" if jsonl and self.main else None
        self.csv = self.out_dir / "metrics.csv" if csv_file and self.main else None
        self.tb = None
        if self.main and tensorboard != "off":
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:
                if tensorboard == "on":
                    raise ImportError("log.tensorboard = 'on' needs the tensorboard package "
                                      "(pip install tensorboard)") from None
        self._reset()
        self.records: list[dict] = []

    def _reset(self) -> None:
        self.t0 = time.perf_counter()
        self.acc: dict[str, list[float]] = {}  # task -> [loss*units, units]
        self.sums: dict[str, dict[str, float]] = {}
        self.tokens = self.padded = self.rows = self.steps = self.skipped = 0
        self.grad_norm = 0.0

    def restart_clock(self) -> None:
        """Count training time from now (at the start of a stage or a run)."""
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def untimed(self):
        """Work inside (evaluation, saving) does not count as training time."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.t0 += time.perf_counter() - start

    def __call__(self, result: StepResult) -> None:
        for k, loss in result.losses.items():
            a = self.acc.setdefault(k, [0.0, 0.0])
            if math.isfinite(loss):
                a[0] += loss * result.units[k]
                a[1] += result.units[k]
        for k, m in result.metrics.items():
            s = self.sums.setdefault(k, {})
            for name, v in m.items():
                s[name] = s.get(name, 0.0) + v
        self.tokens += result.tokens
        self.padded += result.padded
        self.rows += result.rows
        self.steps += 1
        self.skipped += int(result.skipped)
        self.grad_norm = result.grad_norm
        self.lr = result.lr
        if result.step % self.every == 0:
            self.flush(result.step)

    def flush(self, step: int) -> dict | None:
        if not self.steps:
            return None
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        # The metric sums were kept as tensors step after step: read them here, once.
        local = {k: {name: float(v) for name, v in m.items()} for k, m in self.sums.items()}
        gathered = dist_util.all_gather_objects((local, self.tokens, self.padded, self.rows))
        sums: dict[str, dict[str, float]] = {}
        for g in gathered:
            for k, m in g[0].items():
                s = sums.setdefault(k, {})
                for name, v in m.items():
                    s[name] = s.get(name, 0.0) + v
        tokens = sum(g[1] for g in gathered)
        padded = sum(g[2] for g in gathered)
        rows = sum(g[3] for g in gathered)
        tasks = {k: summarize(a[0], a[1], sums.get(k, {}), self.lm_like(k))
                 for k, a in self.acc.items()}
        tps = tokens / elapsed
        rec = {"step": step, "stage": self.stage + 1, "lr": self.lr, "tokens_per_s": tps,
               "padding": 1 - tokens / padded if padded else 0.0, "grad_norm": self.grad_norm,
               "skipped": self.skipped, "tasks": tasks}
        if self.flops_per_token and self.peak_flops:
            seq = tokens / max(1, rows)
            achieved = 3 * self.flops_per_token(seq) * tps / dist_util.world_size()
            rec["mfu"] = achieved / self.peak_flops
            if rec["mfu"] > 1:
                rec["peak_stale"] = True
                logger.warning(
                    "MFU %.0f%%: training ran faster than the matmul peak measured at the start "
                    "(%.1f GFLOP/s; the machine was busier then): that peak is stale, later "
                    "records use the %.1f GFLOP/s reached here (set the real peak with "
                    "peak_tflops)", 100 * rec["mfu"], self.peak_flops / 1e9, achieved / 1e9)
                self.peak_flops = achieved
        self._reset()
        if self.main:
            self.write(rec, "train")
        return rec

    def write(self, rec: dict, split: str) -> None:
        rec = {"split": split, **rec}
        self.records.append(rec)
        if self.jsonl:
            with open(self.jsonl, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if self.csv:
            new = not self.csv.exists()
            buf = io.StringIO()
            w = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            for task, m in rec["tasks"].items():
                w.writerow({"step": rec["step"], "stage": rec.get("stage"), "split": split,
                            "task": task, **{k: _round(v) for k, v in m.items()},
                            **{k: _round(rec.get(k)) for k in ("lr", "tokens_per_s", "mfu",
                                                               "grad_norm", "skipped")}})
            with open(self.csv, "a", encoding="utf-8", newline="") as fh:
                fh.write(buf.getvalue())
        if self.tb:
            for task, m in rec["tasks"].items():
                for k, v in m.items():
                    if isinstance(v, (int, float)):
                        self.tb.add_scalar(f"{split}/{task}/{k}", v, rec["step"])
            for k in ("lr", "tokens_per_s", "mfu"):
                if k in rec:
                    self.tb.add_scalar(f"{split}/{k}", rec[k], rec["step"])
            self.tb.flush()
        if self.console:
            logger.info(format_record(rec))

    def close(self) -> None:
        if self.tb:
            self.tb.close()


def _round(v):
    return round(v, 6) if isinstance(v, float) else v


def format_record(rec: dict) -> str:
    parts = [f"{rec['split']} step {rec['step']}"]
    for task, m in rec["tasks"].items():
        bits = [f"loss {m['loss']:.4f}"]
        if "accuracy" in m:
            bits.append(f"acc {m['accuracy']:.3f}")
        if "perplexity" in m:
            bits.append(f"ppl {m['perplexity']:.1f}")
        parts.append(f"{task}: {' '.join(bits)}")
    if "lr" in rec:
        parts.append(f"lr {rec['lr']:.2e}")
    if "tokens_per_s" in rec:
        parts.append(f"{rec['tokens_per_s']:.0f} tok/s")
    if "mfu" in rec:
        parts.append(f"MFU {100 * rec['mfu']:.1f}%"
                     + (" (stale peak: measured low at the start)" if rec.get("peak_stale")
                        else ""))
    return " | ".join(parts)
