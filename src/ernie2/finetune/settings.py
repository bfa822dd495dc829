"""What a fine-tuning run is given (`FinetuneSettings`): its data, model, schedule, logging,
checkpoints and task options. Its own module so that the entry point (finetune/run.py) and the
recipe (finetune/train.py) both name the type."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ernie2.finetune import presets
from ernie2.finetune.task_types import TaskOptions


@dataclass
class FinetuneSettings:
    task: str  # classify, pair, regress, ner, mrc or rank
    data_dir: str
    from_pretrained: str | None = None  # pre-trained model directory, checkpoint or name
    # "pretrained": start from from_pretrained's weights; "random": fresh weights of `size`
    # (or of from_pretrained's config), to see what pre-training buys.
    init: str = "pretrained"
    size: str | None = None  # named model size of a fresh model (test, mini, small, ...)
    vocab: str | None = None  # vocab file of a fresh model (default: from_pretrained's)
    baseline: bool = False  # also fit and score a TF-IDF / memorized-tags baseline (baseline.py)
    output_dir: str = "finetune_output"
    batch_size: int = 32  # examples per optimizer step, over all processes
    micro_batch_size: int | None = None  # examples per forward pass (None: a process's share)
    learning_rate: float | None = None  # None: by model size (default_learning_rate)
    epochs: int = 3
    max_steps: int | None = None  # stop early (overrides epochs when set)
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    # Layer-wise learning-rate decay: encoder layer i of L learns at layerwise_decay ** (L - i)
    # times the rate, the embeddings at layerwise_decay ** (L + 1), the head at the full rate
    # (1.0: one rate for all, the default; ERNIE's recipes use 0.8 or so at base size).
    layerwise_decay: float = 1.0
    # Linear probing, then fine-tuning (LP-FT): for the first head_only_proportion of the steps
    # the encoder's embeddings and layers are held (learning rate 0) while the pooler and head
    # learn on its features; then the encoder joins with its own warmup and decay (0: none).
    head_only_proportion: float = 0.0
    grad_clip: float | None = 1.0  # max gradient norm (None: no clipping)
    eval_every: int = 0  # steps between dev evaluations; 0: after each epoch only
    eval_each_epoch: bool = True  # also evaluate after every epoch (False: on eval_every only)
    main_metric: str | None = None  # dev score that picks the best model; task default if None
    label_map: str | None = None  # label_map.json; default data_dir/label_map.json if present
    num_layers: int | None = None  # keep only the first N encoder layers of the checkpoint
    # The encoder's dropout while fine-tuning (None: the start's config). A model pre-trained
    # without dropout (the demos) saves 0.0, and fine-tuning it on a small set then overfits.
    hidden_dropout_prob: float | None = None
    attention_probs_dropout_prob: float | None = None
    task_id: int = 0  # row of the task embedding, when the encoder has one
    seed: int = 1
    device: str = "auto"  # auto, cpu, cuda, cuda:1
    precision: str = "auto"  # auto, fp32, bf16, fp16 (GPU only)
    eval_batch_size: int = 64
    log_every: int = 10  # steps between training log records
    tensorboard: str = "auto"  # auto (when installed), on, off
    peak_tflops: float | None = None  # for MFU in the logs; None: measured once per process
    checkpoint_every: int = 0  # steps between resumable checkpoints; 0: none
    keep_checkpoints: int = 2
    resume: bool = False  # continue from the newest checkpoint in output_dir/checkpoints
    progress: bool = True
    options: TaskOptions = field(default_factory=TaskOptions)

    def __post_init__(self) -> None:
        def need(name: str, ok, expected: str) -> None:
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and ok(v)):
                raise ValueError(f"{name}: expected {expected}, got {v!r}")

        for name in ("batch_size", "micro_batch_size", "epochs", "max_steps", "num_layers",
                     "eval_batch_size", "log_every", "keep_checkpoints"):
            need(name, lambda v: v >= 1, "at least 1")
        for name in ("eval_every", "checkpoint_every", "task_id"):
            need(name, lambda v: v >= 0, "0 or more")
        for name in ("learning_rate", "grad_clip", "peak_tflops"):
            need(name, lambda v: v > 0, "a positive number")
        need("warmup_proportion", lambda v: 0 <= v <= 1, "a fraction in [0, 1]")
        need("head_only_proportion", lambda v: 0 <= v < 1, "a fraction in [0, 1)")
        need("weight_decay", lambda v: v >= 0, "0 or more")
        need("layerwise_decay", lambda v: 0 < v <= 1, "a number in (0, 1]")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            need(name, lambda v: 0 <= v < 1, "a probability in [0, 1)")

    @classmethod
    def from_preset(cls, name: str, column: str = "base", /, **overrides: Any
                    ) -> FinetuneSettings:
        """Settings of a preset row (`presets.PRESETS`), its base or large column, any value
        overridable; task options may be overridden as `options={...}` (merged into the
        preset's)."""
        values = presets.preset_values(name, column)
        opts = {**values.pop("options"), **overrides.pop("options", {})}
        return cls(**{**values, **overrides}, options=TaskOptions.from_dict(opts))
