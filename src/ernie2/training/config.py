"""The pre-training configuration: typed sections, read from TOML or YAML, validated with errors
that name the file, the key and (where it can be found) the line.

Every key is declared once below with its type, default and a one-line `doc`; docs/pretraining.md
documents the same keys and a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union


def doc(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING):
    """A dataclass field with its documentation attached."""
    kw: dict[str, Any] = {"metadata": {"doc": text}}
    if default is not dataclasses.MISSING:
        kw["default"] = default
    if factory is not dataclasses.MISSING:
        kw["default_factory"] = factory
    return field(**kw)


class ConfigError(ValueError):
    """A configuration problem: names the file, the key and the line when known."""


# ---------------------------------------------------------------------- sections
@dataclass
class ModelSection:
    size: str | None = doc("named model size to train from scratch (test, mini, small, medium, "
                           "base, large, ernie-tiny); ignored when init_from is set", "small")
    init_from: str | None = doc("checkpoint to start from (any format ernie2 reads, or a known "
                                "model name); missing task-embedding rows are added", None)
    vocab: str | None = doc("vocab file (relative to data_dir); default: the vocab.txt of "
                            "init_from", None)
    max_len: int = doc("longest example in tokens, [CLS] and [SEP] included", 128)
    overrides: dict[str, Any] = doc("ErnieConfig fields to set, e.g. {hidden_dropout_prob = 0.1, "
                                    "num_hidden_layers = 3}", factory=dict)
    new_task_rows: Literal["zeros", "normal"] = doc(
        "how task-embedding rows added to a trained table start: zeros (the model's function is "
        "unchanged at first) or normal(0, initializer_range)", "zeros")
    output_prior: int = doc(
        "a new head's output bias starts at the log frequency of its labels (masked tokens, "
        "classes) in this many of its training examples, so that the encoder need not learn "
        "the label distribution first; 0: the bias starts at zero", 0)


@dataclass
class CorpusSection:
    name: str = doc("name the tasks refer to")
    path: str | list[str] = doc("file(s), globs or a prepared directory (relative to data_dir)")
    format: str = doc("auto, text, segmented, jsonl, pos, ernie1, wiki or prepared", "auto")
    lang: str = doc("auto, zh or en", "auto")
    options: dict[str, Any] = doc("further corpus options (see ernie2.corpus.CorpusSpec: "
                                  "annotate, segment, lexicons, reader_options, on_error, ...)",
                                  factory=dict)
    heldout: float | None = doc("fraction of documents kept for evaluation (default: "
                                "eval.heldout)", None)


@dataclass
class TaskSection:
    task: str = doc("a registered task name, 'package.module:Class' or 'file.py:Class'")
    name: str | None = doc("name of this task in the run (logs, heads, reports); default: the "
                           "task's own name", None)
    corpus: str | None = doc("corpus it builds examples from; default: the first corpus", None)
    task_id: int | None = doc("its fixed task-embedding row; default: the next free id in order "
                              "of introduction", None)
    weight: float | None = doc("its weight in the stage that introduces it (overrides the "
                               "allocation policy there)", None)
    options: dict[str, Any] = doc("options passed to the task's constructor", factory=dict)
    pack: bool = doc("pack consecutive training examples into one of up to model.max_len tokens "
                     "([CLS] a [SEP] b [SEP] ...), so that short documents do not train on "
                     "padding; token-level tasks only (masked LM, capitalization); held-out "
                     "examples stay unpacked", False)


@dataclass
class StageSection:
    name: str = doc("stage name, for logs and reports")
    steps: int = doc("optimizer steps in this stage")
    tasks: list[TaskSection] = doc("tasks this stage introduces", factory=list)
    weights: dict[str, float] = doc("weights of any task this stage trains (by run name), "
                                    "overriding the allocation policy", factory=dict)
    lr: float | None = doc("peak learning rate of this stage (default: train.lr)", None)


@dataclass
class TrainSection:
    schedule: Literal["continual", "sequential", "joint"] = doc(
        "continual (ERNIE 2.0: new tasks plus all earlier ones), sequential (only new tasks: "
        "the forgetting baseline) or joint (every task from the first step)", "continual")
    allocation: Literal["ernie2", "equal"] = doc(
        "how a stage's steps are shared: ernie2 (tasks new in stage i weigh i+2, earlier tasks "
        "1) or equal", "ernie2")
    mix: Literal["step", "batch"] = doc(
        "step: each optimizer step trains one task; batch: each batch mixes all tasks in play",
        "step")
    sharding: Literal["documents", "examples"] = doc(
        "how processes share the data: documents (each reads its own documents; cheap) or "
        "examples (each builds every example and keeps its share: N processes train on exactly "
        "the batches of 1)", "documents")
    shuffle_buffer: int = doc("examples each task's stream shuffles among (0: none), so that a "
                              "batch mixes many documents", 2048)
    batch_size: int = doc("examples per optimizer step, over all processes", 32)
    micro_batch_size: int | None = doc("examples per forward pass (gradient accumulation when "
                                       "smaller than the per-process share)", None)
    batch_tokens: int | None = doc("token budget per optimizer step instead of batch_size", None)
    micro_batch_tokens: int | None = doc("padded-token budget per forward pass", None)
    lr: float = doc("peak learning rate", 1e-4)
    weight_decay: float = doc("AdamW weight decay (never on biases and LayerNorm)", 0.01)
    embedding_lr_scale: float = doc(
        "learning rate of the word embeddings and the masked-LM decoders (weight and output "
        "bias), as a multiple of lr", 1.0)
    betas: list[float] = doc("AdamW betas", factory=lambda: [0.9, 0.999])
    eps: float = doc("AdamW epsilon", 1e-6)
    warmup_steps: int | None = doc("linear warm-up steps (per LR schedule span)", None)
    warmup_ratio: float = doc("warm-up as a fraction of the span, when warmup_steps is unset", 0.1)
    min_lr_ratio: float = doc("the LR decays linearly to this fraction of its peak", 0.0)
    lr_schedule: Literal["auto", "stage", "run"] = doc(
        "span of one warm-up + decay: each stage, or the whole run (auto: run for joint, stage "
        "otherwise)", "auto")
    grad_clip: float | None = doc("clip the gradient norm to this (none: no clipping)", 1.0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = doc(
        "auto: bf16 where the hardware has it (GPU, or CPU with avx512_bf16/AMX), else fp32; "
        "fp16 (GPU only) uses dynamic loss scaling", "auto")
    device: str = doc("auto, cpu, cuda or cuda:N", "auto")
    compile: bool = doc("torch.compile the model", False)
    max_bad_steps: int = doc("stop after this many consecutive steps with a non-finite loss", 20)


@dataclass
class CheckpointSection:
    every: int = doc("save every N steps (0: only at stage ends)", 500)
    keep: int = doc("keep the newest K step checkpoints", 2)
    stage_models: bool = doc("also export each stage's model as a plain encoder directory", True)


@dataclass
class LogSection:
    every: int = doc("log every N steps", 10)
    jsonl: bool = doc("write metrics.jsonl", True)
    csv: bool = doc("write metrics.csv", True)
    tensorboard: Literal["auto", "on", "off"] = doc("TensorBoard events (auto: when installed)",
                                                    "auto")
    progress: bool = doc("show a progress bar", True)
    peak_tflops: float | None = doc("peak TFLOP/s for MFU (default: measured with a matmul in the "
                                    "run's precision)", None)


@dataclass
class EvalSection:
    every: int = doc("evaluate every N steps (0: only at stage ends)", 0)
    examples: int = doc("held-out examples per task", 256)
    batch_size: int = doc("evaluation batch size", 64)
    heldout: float = doc("fraction of each corpus's documents held out for evaluation", 0.05)


@dataclass
class PretrainConfig:
    model: ModelSection = doc("the model to train", factory=ModelSection)
    corpora: list[CorpusSection] = doc("corpora the tasks read", factory=list)
    stages: list[StageSection] = doc("the stages, in order", factory=list)
    train: TrainSection = doc("optimization", factory=TrainSection)
    checkpoint: CheckpointSection = doc("checkpoints", factory=CheckpointSection)
    log: LogSection = doc("logging", factory=LogSection)
    eval: EvalSection = doc("evaluation", factory=EvalSection)
    seed: int = doc("seed of every random draw (data, masking, initialization, dropout)", 1)
    data_dir: str = doc("directory that relative corpus and vocab paths start from (relative "
                        "to the working directory)", ".")
    output_dir: str = doc("where checkpoints, logs, reports and the final model go", "runs/pretrain")
    source: str = field(default="<dict>", repr=False, metadata={"internal": True})

    # ------------------------------------------------------------------ paths
    def data_path(self, p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else Path(self.data_dir).expanduser() / path

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d


# ---------------------------------------------------------------------- reading
def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a table"
    if tp is type(None):
        return "none"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


class _Reader:
    def __init__(self, source: str, text: str | None):
        self.source = source
        self.text = text

    def fail(self, path: list, what: str) -> ConfigError:
        key = _keypath(path)
        line = _find_line(self.text, path) if self.text else None
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {key}: {what}" if key else f"{where}: {what}")

    def convert(self, value: Any, tp: Any, path: list) -> Any:
        origin = typing.get_origin(tp)
        if tp is Any:
            return value
        if origin in (Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None and type(None) in args:
                return None
            for a in args:
                if a is type(None):
                    continue
                try:
                    return self.convert(value, a, path)
                except ConfigError:
                    pass  # the next alternative may fit; none fitting is the error below
            raise self.fail(path, f"expected {_type_name(tp)}, got {value!r}")
        if origin is Literal:
            if value not in typing.get_args(tp):
                raise self.fail(path, f"expected {_type_name(tp)}, got {value!r}")
            return value
        if origin is list:
            if not isinstance(value, list):
                raise self.fail(path, f"expected {_type_name(tp)}, got {value!r}")
            (item,) = typing.get_args(tp)
            return [self.convert(v, item, path + [i]) for i, v in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                raise self.fail(path, f"expected a table, got {value!r}")
            _, vt = typing.get_args(tp)
            return {str(k): self.convert(v, vt, path + [k]) for k, v in value.items()}
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise self.fail(path, f"expected a table, got {value!r}")
            return self.section(tp, value, path)
        if tp is bool:
            if not isinstance(value, bool):
                raise self.fail(path, f"expected true or false, got {value!r}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(path, f"expected an integer, got {value!r}")
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.fail(path, f"expected a number, got {value!r}")
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise self.fail(path, f"expected a string, got {value!r}")
            return value
        raise TypeError(f"unsupported config type {tp}")

    def section(self, cls, raw: dict, path: list):
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        unknown = [k for k in raw if k not in fields]
        if unknown:
            k = unknown[0]
            raise self.fail(path + [k], f"unknown key{_suggest(k, list(fields))}; known keys: "
                            f"{', '.join(fields)}")
        kwargs = {}
        for name, f in fields.items():
            if name in raw:
                kwargs[name] = self.convert(raw[name], hints[name], path + [name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise self.fail(path + [name], f"missing (expected {_type_name(hints[name])}: "
                                f"{f.metadata.get('doc', '')})")
        return cls(**kwargs)


def _keypath(path: list) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _find_line(text: str, path: list) -> int | None:
    """Best-effort line of a key path in TOML or YAML text: walk array-of-table headers
    ([[stages]] counted by index) and keys in order; None when not found."""
    lines = text.splitlines()
    start = 0
    table: list[str] = []
    best = None
    for i, p in enumerate(path):
        if isinstance(p, int):
            continue
        nxt = path[i + 1] if i + 1 < len(path) else None
        table.append(str(p))
        if isinstance(nxt, int):  # [[a.b]] header, the nxt-th occurrence after `start`
            header = re.compile(r"^\s*\[\[\s*" + re.escape(".".join(table)) + r"\s*\]\]")
            yaml_key = re.compile(r"^\s*-?\s*" + re.escape(str(p)) + r"\s*:")
            hits = [j for j in range(start, len(lines)) if header.match(lines[j])]
            if len(hits) > nxt:
                start = best = hits[nxt] + 1
                continue
            hits = [j for j in range(start, len(lines)) if yaml_key.match(lines[j])]
            if hits:
                start = best = hits[0] + 1
            continue
        key = re.compile(r"^\s*(-\s*)?[\"']?" + re.escape(str(p)) + r"[\"']?\s*[=:]")
        header = re.compile(r"^\s*\[\s*" + re.escape(".".join(table)) + r"\s*\]")
        for j in range(start, len(lines)):
            if key.match(lines[j]) or header.match(lines[j]):
                start, best = j + 1, j + 1
                break
        else:
            return best
    return best


def load_config(source: str | Path | dict | PretrainConfig,
                overrides: dict[str, Any] | None = None) -> PretrainConfig:
    """Read a config from a TOML/YAML file, a shipped config name (demo_zh, ...) or a dict;
    `overrides` maps dotted keys ("train.lr", "output_dir") to values."""
    if isinstance(source, PretrainConfig):
        if not overrides:
            validate(source)
            return source
        raw, text, name = source.to_dict(), None, source.source
    elif isinstance(source, dict):
        raw, text, name = source, None, "<dict>"
    else:
        path = resolve_config_path(source)
        name, text = str(path), path.read_text(encoding="utf-8")
        raw = _parse(path, text)
    raw = _apply_overrides(dict(raw), overrides or {}, name)
    cfg = _Reader(name, text).section(PretrainConfig, raw, [])
    cfg.source = name
    validate(cfg, text)
    return cfg


def _parse(path: Path, text: str) -> dict:
    if path.suffix in (".yaml", ".yml"):
        import yaml
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    elif path.suffix == ".toml":
        import tomllib
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    else:
        raise ConfigError(f"{path}: a config is a .toml, .yaml or .yml file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table of settings at the top")
    return raw


def _apply_overrides(raw: dict, overrides: dict[str, Any], name: str) -> dict:
    """Set dotted keys; a number indexes a list of tables (`stages.2.steps`)."""
    for dotted, value in overrides.items():
        node: Any = raw
        parts = dotted.split(".")
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not p.isdigit() or int(p) >= len(node):
                    raise ConfigError(f"{name}: override {dotted}: {'.'.join(parts[:i])} has "
                                      f"{len(node)} entries, indexed 0..{len(node) - 1}")
                key: Any = int(p)
                nxt = node[key]
            elif isinstance(node, dict):
                key, nxt = p, node.get(p)
            else:
                raise ConfigError(f"{name}: override {dotted}: {'.'.join(parts[:i])} is not a "
                                  "table")
            if last:
                node[key] = value
            else:
                if nxt is None:
                    nxt = {}
                elif isinstance(nxt, dict):
                    nxt = dict(nxt)
                elif isinstance(nxt, list):
                    nxt = list(nxt)
                else:
                    raise ConfigError(f"{name}: override {dotted}: {'.'.join(parts[:i + 1])} is "
                                      "not a table")
                node[key] = nxt
                node = nxt
    return raw


def scaled_steps(steps: int, scale: float) -> int:
    """A stage's steps when the same plan runs `scale` times as long: rounded, at least 1
    (`ernie2 pretrain --steps_scale`, the comparison's `--scale`)."""
    if not scale > 0:
        raise ValueError(f"steps scale: expected a positive number, got {scale}")
    return max(1, round(steps * scale))


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is read as TOML (numbers, booleans,
    strings, arrays), falling back to a plain string."""
    import tomllib
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key=value")
    key, _, value = text.partition("=")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def shipped_configs() -> list[Path]:
    return sorted(p for p in CONFIG_DIR.glob("*") if p.suffix in (".toml", ".yaml", ".yml"))


def resolve_config_path(source: str | Path) -> Path:
    path = Path(source)
    if path.is_file():
        return path
    for p in shipped_configs():
        if p.stem == str(source):
            return p
    names = ", ".join(p.stem for p in shipped_configs())
    raise FileNotFoundError(f"config {source}: no such file, nor a shipped config ({names})")


NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
MAX_STEPS = 10 ** 9  # far beyond any run, far below what the schedule's counters can hold


def _non_finite(node: Any, path: list) -> list | None:
    """The key path of the first NaN or infinite number in a section tree."""
    if dataclasses.is_dataclass(node):
        node = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
    items = node.items() if isinstance(node, dict) else (
        enumerate(node) if isinstance(node, list) else ())
    for k, v in items:
        if isinstance(v, float) and not math.isfinite(v):
            return path + [k]
        found = _non_finite(v, path + [k])
        if found:
            return found
    return None


def validate(cfg: PretrainConfig, text: str | None = None) -> None:
    """Checks across keys (the types are checked while reading).

    Long: one check after another, each naming the key it is about; they share nothing but the
    reader that words the errors."""
    r = _Reader(cfg.source, text)
    bad = _non_finite(cfg, [])
    if bad:
        raise r.fail(bad, "must be a finite number")
    if not cfg.stages:
        raise r.fail(["stages"], "no stages: a run needs at least one [[stages]] entry")
    m = cfg.model
    if m.init_from is None and m.size is None:
        raise r.fail(["model", "size"], "set model.size or model.init_from")
    if m.init_from is None:
        from ernie2.model.config import size_fields
        try:
            size_fields(m.size)
        except KeyError as exc:
            raise r.fail(["model", "size"], exc.args[0]) from None
        if m.vocab is None:
            raise r.fail(["model", "vocab"], "missing: a model trained from scratch needs a "
                         "vocab file")
    if m.max_len < 8:
        raise r.fail(["model", "max_len"], f"must be at least 8, got {m.max_len}")
    from ernie2.corpus.spec import corpus_formats
    corpus_names = [c.name for c in cfg.corpora]
    for i, c in enumerate(cfg.corpora):
        if c.format not in corpus_formats():
            raise r.fail(["corpora", i, "format"], f"unknown format {c.format!r}; known: "
                         f"{', '.join(corpus_formats())}")
        if corpus_names.count(c.name) > 1:
            raise r.fail(["corpora", i, "name"], f"corpus {c.name!r} is defined twice")
        if c.heldout is not None and not 0 <= c.heldout < 1:
            raise r.fail(["corpora", i, "heldout"], f"must be in [0, 1), got {c.heldout}")
    names: list[str] = []
    for i, st in enumerate(cfg.stages):
        if st.steps < 0:
            raise r.fail(["stages", i, "steps"], f"must be >= 0, got {st.steps}")
        if st.steps > MAX_STEPS:
            raise r.fail(["stages", i, "steps"], f"must be at most {MAX_STEPS:_}, got "
                         f"{st.steps}")
        if st.lr is not None and st.lr <= 0:
            raise r.fail(["stages", i, "lr"], f"must be positive, got {st.lr}")
        for j, t in enumerate(st.tasks):
            name = task_run_name(t)
            if not NAME.match(name):
                raise r.fail(["stages", i, "tasks", j, "name"],
                             f"{name!r} cannot name a task: use letters, digits, _ and -")
            if name in names:
                raise r.fail(["stages", i, "tasks", j, "name"],
                             f"task {name!r} is introduced twice; give one a different name")
            names.append(name)
            if t.corpus is not None and t.corpus not in corpus_names:
                raise r.fail(["stages", i, "tasks", j, "corpus"],
                             f"no corpus named {t.corpus!r} (corpora: "
                             f"{', '.join(corpus_names) or 'none'})")
            if t.task_id is not None and t.task_id < 0:
                raise r.fail(["stages", i, "tasks", j, "task_id"], "must be >= 0")
            if t.weight is not None and t.weight <= 0:
                raise r.fail(["stages", i, "tasks", j, "weight"], "must be positive")
        for k, w in st.weights.items():
            if k not in names:
                raise r.fail(["stages", i, "weights", k],
                             f"no task {k!r} introduced by this stage or an earlier one")
            if w <= 0:
                raise r.fail(["stages", i, "weights", k], "must be positive")
    if names and not cfg.corpora:
        raise r.fail(["corpora"], "no corpora: tasks need documents to build examples from")
    ids = [t.task_id for st in cfg.stages for t in st.tasks if t.task_id is not None]
    if len(ids) != len(set(ids)):
        raise r.fail(["stages"], f"task ids given twice: {sorted(ids)}")
    tr = cfg.train
    if tr.batch_tokens is None:
        if tr.batch_size < 1:
            raise r.fail(["train", "batch_size"], "must be at least 1")
        if tr.micro_batch_size is not None and not 1 <= tr.micro_batch_size:
            raise r.fail(["train", "micro_batch_size"], "must be at least 1")
    elif tr.batch_tokens < m.max_len:
        raise r.fail(["train", "batch_tokens"], f"must hold at least one example ({m.max_len} "
                     "tokens)")
    if tr.micro_batch_tokens is not None and tr.micro_batch_tokens < m.max_len:
        raise r.fail(["train", "micro_batch_tokens"],
                     f"must hold at least one example of max_len {m.max_len}")
    if tr.shuffle_buffer < 0:
        raise r.fail(["train", "shuffle_buffer"], f"must be >= 0, got {tr.shuffle_buffer}")
    if tr.lr <= 0:
        raise r.fail(["train", "lr"], "must be positive")
    if not (math.isfinite(tr.embedding_lr_scale) and tr.embedding_lr_scale > 0):
        raise r.fail(["train", "embedding_lr_scale"], f"must be positive, got "
                     f"{tr.embedding_lr_scale}")
    if tr.weight_decay < 0:
        raise r.fail(["train", "weight_decay"], f"must be >= 0, got {tr.weight_decay}")
    if tr.eps <= 0:
        raise r.fail(["train", "eps"], f"must be positive, got {tr.eps}")
    if tr.warmup_steps is not None and not 0 <= tr.warmup_steps <= MAX_STEPS:
        raise r.fail(["train", "warmup_steps"], f"must be in [0, {MAX_STEPS:_}], got "
                     f"{tr.warmup_steps}")
    if tr.grad_clip is not None and tr.grad_clip <= 0:
        raise r.fail(["train", "grad_clip"], f"must be positive (or none: no clipping), got "
                     f"{tr.grad_clip}")
    if tr.max_bad_steps < 1:
        raise r.fail(["train", "max_bad_steps"], f"must be at least 1, got {tr.max_bad_steps}")
    if cfg.log.peak_tflops is not None and cfg.log.peak_tflops <= 0:
        raise r.fail(["log", "peak_tflops"], f"must be positive, got {cfg.log.peak_tflops}")
    if len(tr.betas) != 2 or not all(0 <= b < 1 for b in tr.betas):
        raise r.fail(["train", "betas"], "expected two numbers in [0, 1)")
    if not 0 <= tr.warmup_ratio <= 1:
        raise r.fail(["train", "warmup_ratio"], "must be in [0, 1]")
    if not 0 <= tr.min_lr_ratio <= 1:
        raise r.fail(["train", "min_lr_ratio"], "must be in [0, 1]")
    if cfg.checkpoint.every < 0 or cfg.checkpoint.keep < 1:
        raise r.fail(["checkpoint"], "every must be >= 0 and keep >= 1")
    if cfg.log.every < 1:
        raise r.fail(["log", "every"], "must be at least 1")
    if cfg.eval.every < 0 or cfg.eval.examples < 1 or cfg.eval.batch_size < 1:
        raise r.fail(["eval"], "every must be >= 0, examples and batch_size >= 1")
    if not 0 <= cfg.eval.heldout < 1:
        raise r.fail(["eval", "heldout"], f"must be in [0, 1), got {cfg.eval.heldout}")


def task_run_name(t: TaskSection) -> str:
    """A task's name in the run: its `name`, else the registered name (or the class name of a
    'module:Class' spec, lower-cased)."""
    if t.name:
        return t.name
    spec = t.task
    if ":" in spec:
        return spec.rpartition(":")[2].lower()
    return spec


def documented_keys(cls=PretrainConfig, prefix: str = "") -> dict[str, str]:
    """Every config key (dotted; list items as `stages[].steps`) with its doc line."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        key = prefix + f.name
        out[key] = f.metadata.get("doc", "")
        tp = hints[f.name]
        if typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
            key += "[]"
        if dataclasses.is_dataclass(tp):
            out.update(documented_keys(tp, key + "."))
    return out


# Keys a resumed run may change freely: where files are, what is logged, how often it saves.
RESULT_NEUTRAL = ("output_dir", "data_dir", "log", "checkpoint.every", "checkpoint.keep",
                  "checkpoint.stage_models", "eval.every")


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys as --set spells them (`stages.0.steps`); lists of scalars stay whole."""
    if isinstance(d, dict):
        items = d.items()
    elif isinstance(d, list) and any(isinstance(v, (dict, list)) for v in d):
        items = ((str(i), v) for i, v in enumerate(d))
    else:
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def config_changes(saved: dict, now: dict) -> dict[str, tuple[Any, Any]]:
    """Keys whose value differs between two `to_dict()` configs (missing: None), except the
    RESULT_NEUTRAL ones."""
    a, b = flatten(saved), flatten(now)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k) and not _under(k, RESULT_NEUTRAL)}


def refuse_changes(changes: dict[str, tuple[Any, Any]], allowed: list[str], where: str) -> None:
    """ConfigError listing the changed keys not under one of `allowed`."""
    refused = {k: v for k, v in changes.items() if not _under(k, allowed)}
    if refused:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        flags = " ".join(f"--allow-change {k}" for k in refused)
        raise ConfigError(f"{where}: resuming with a different config would not continue the "
                          f"same run: {listed}. Undo the change, start a new output_dir, or "
                          f"accept it with {flags}")
