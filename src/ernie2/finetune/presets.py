"""Recommended fine-tuning settings of the ERNIE papers' datasets, one row each, chosen by name.

Sources (PaddlePaddle/ERNIE on GitHub, read through the project's search tools):
- README.zh.md, section 推荐超参数设置 (ERNIE 1.0/2.0 dygraph era): batch size and learning
  rate per dataset, written "large / base (base)" where the two sizes differ.
- script/en_glue/ernie_{base,large}/<TASK>/task.sh (ERNIE 2.0 English, GLUE) and
  script/zh_task/ernie_{base,large}/run_<task>.sh (ERNIE 2.0 Chinese): epochs, max_seq_len,
  warmup proportion, weight decay, and per-GPU batch sizes whose totals (times the GPUs in
  CUDA_VISIBLE_DEVICES) agree with the README.
- ERNIE/script/run_<task>.sh (ERNIE 1.0, Chinese): the same values as the 2.0 base scripts for
  XNLI, LCQMC, ChnSentiCorp and NLPCC-DBQA; MSRA-NER ran 3 epochs there, 6 in the 2.0 scripts.
- finetune_args.py defaults for reading comprehension: doc_stride 128, max_query_length 64,
  max_answer_length 100, n_best_size 20.
Batch sizes are totals over all GPUs. Values marked "unverified" were not found in those files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    task: str  # a task type of task_types.TASK_TYPES
    batch_size: tuple[int, int]  # (base, large)
    learning_rate: tuple[float, float]  # (base, large)
    epochs: tuple[int, int]  # (base, large)
    max_seq_len: int
    warmup_proportion: float
    weight_decay: float
    for_cn: bool
    note: str = ""
    options: tuple[tuple[str, Any], ...] = ()  # task options (stride, crf, ...)
    main_metric: str | None = None  # the dev score picking the best model; None: the task type's

    @property
    def metric(self) -> str:
        """The dev score that picks the best model: the preset's own, else its task type's."""
        if self.main_metric is not None:
            return self.main_metric
        from ernie2.finetune.task_types import get_task_type
        return get_task_type(self.task).main_metric


_GLUE = dict(warmup_proportion=0.1, weight_decay=0.0, for_cn=False)
_ZH = dict(warmup_proportion=0.0, weight_decay=0.01, for_cn=True)
_MRC = (("stride", 128), ("max_query_len", 64), ("max_answer_len", 100), ("n_best", 20))

PRESETS: dict[str, Preset] = {p.name: p for p in [
    # GLUE (ERNIE 2.0 en). README: CoLA 32 / 64 (base), lr 3e-5.
    Preset("CoLA", "classify", (64, 32), (3e-5, 3e-5), (3, 5), 128, main_metric="mcc", **_GLUE),
    Preset("SST-2", "classify", (256, 64), (2e-5, 2e-5), (4, 4), 128, **_GLUE),
    Preset("STS-B", "regress", (128, 128), (5e-5, 5e-5), (3, 3), 128,
           main_metric="pearson_spearman", **_GLUE),
    Preset("QQP", "pair", (256, 256), (3e-5, 5e-5), (3, 3), 128, main_metric="f1", **_GLUE),
    Preset("MNLI", "pair", (512, 256), (3e-5, 3e-5), (3, 3), 128, **_GLUE),
    Preset("QNLI", "pair", (256, 256), (2e-5, 2e-5), (4, 4), 128, **_GLUE),
    Preset("RTE", "pair", (4, 16), (2e-5, 3e-5), (4, 5), 128, **_GLUE),
    Preset("MRPC", "pair", (32, 16), (3e-5, 3e-5), (4, 4), 128, main_metric="f1", **_GLUE),
    Preset("WNLI", "pair", (8, 8), (2e-5, 2e-5), (4, 4), 512, **_GLUE),
    # Chinese (ERNIE 1.0 / 2.0 zh).
    Preset("XNLI", "pair", (512, 512), (1e-4, 4e-5), (3, 3), 512,
           note="the scripts batch by tokens (8192 per GPU); 512 examples is the README's "
           "figure", **_ZH),
    Preset("LCQMC", "pair", (32, 32), (2e-5, 5e-6), (3, 3), 128, **{**_ZH, "weight_decay": 0.0}),
    Preset("BQ", "pair", (64, 64), (3e-5, 1.5e-5), (3, 3), 128,
           note="not in the README table; from the run_bq.sh scripts (base runs with "
           "--task_id 2)", **_ZH),
    Preset("ChnSentiCorp", "classify", (24, 24), (5e-5, 1e-5), (10, 10), 256, **_ZH),
    Preset("MSRA-NER", "ner", (16, 16), (5e-5, 1e-5), (6, 6), 256,
           note="6 epochs in the ERNIE 2.0 scripts, 3 in ERNIE 1.0's; the scripts name the "
           "chunk scheme IOB for tags that are B-/I-/O (our chunk decoding reads either)",
           **_ZH),
    Preset("NLPCC-DBQA", "rank", (64, 64), (2e-5, 1e-5), (3, 3), 512, **_ZH),
    Preset("CMRC2018", "mrc", (64, 64), (3e-5, 3e-5), (2, 2), 512,
           note="base script: 16 per GPU on the 4 GPUs it makes visible (it launches 8 "
           "processes; the README's 64 assumes 4)", options=_MRC, **_ZH),
    Preset("DRCD", "mrc", (64, 64), (5e-5, 3e-5), (2, 2), 512, options=_MRC, **_ZH),
]}

# Names people also use for the same datasets.
ALIASES = {"SST2": "SST-2", "STSB": "STS-B", "MSRA_NER": "MSRA-NER", "MSRANER": "MSRA-NER",
           "NLPCC2016-DBQA": "NLPCC-DBQA", "DBQA": "NLPCC-DBQA", "CHNSENTI": "ChnSentiCorp"}


def get_preset(name: str) -> Preset:
    """A preset by name, case-insensitively (aliases such as "dbqa" or "msra_ner" work)."""
    folded = {k.upper(): k for k in PRESETS}
    key = name.upper()
    key = folded.get(key) or ALIASES.get(key) or folded.get(ALIASES.get(key, "").upper())
    if key is None:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[key]


def preset_values(name: str, size: str = "base") -> dict[str, Any]:
    """The preset's settings for model size "base" or "large", as keyword arguments of
    FinetuneSettings (task options under "options")."""
    if size not in ("base", "large"):
        raise ValueError(f"size must be 'base' or 'large', got {size!r}")
    p = get_preset(name)
    i = 0 if size == "base" else 1
    return {"task": p.task, "batch_size": p.batch_size[i], "learning_rate": p.learning_rate[i],
            "epochs": p.epochs[i], "warmup_proportion": p.warmup_proportion,
            "weight_decay": p.weight_decay, "main_metric": p.metric,
            "options": {"max_len": p.max_seq_len, "for_cn": p.for_cn, **dict(p.options)}}


__all__ = ["ALIASES", "PRESETS", "Preset", "get_preset", "preset_values"]
