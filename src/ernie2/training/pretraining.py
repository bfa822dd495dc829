"""ERNIE 2.0 continual multi-task pre-training: a config's stages run through the training loop.

`pretrain(config)` builds the tokenizer, the plan (task ids, stages, allocations), the model
(from scratch or from a checkpoint, task embedding added or grown as the plan needs), one
example stream per task and held-out sets; then for each stage it adds the stage's heads,
trains with the shared loop, evaluates every task and checkpoints. It writes the final model
(a plain encoder directory with the heads as extra tensors), per-stage models, logs and the
forgetting report.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ernie2.model.checkpoint import load_encoder, read_checkpoint
from ernie2.model.config import ErnieConfig
from ernie2.model.modeling import ErnieModel
from ernie2.tasks.heads import label_counts, set_output_prior
from ernie2.tasks.protocol import PackingError
from ernie2.tasks.registry import create_task, load_factory
from ernie2.tokenizer import ErnieTokenizer
from ernie2.training import distributed as dist_util
from ernie2.training import resume
from ernie2.training.snapshots import CheckpointManager, Loaded
from ernie2.training.config import (ConfigError, PretrainConfig, config_changes, load_config,
                                    refuse_changes, task_run_name)
from ernie2.training.data import Batching, StageFeeder, units_of
from ernie2.training.fit import Cadence, fit
from ernie2.training.evaluation import (chance_level, evaluate, is_lm_like, main_metric,
                                        write_forgetting_report)
from ernie2.training.loop import LoopState, Trainer
from ernie2.training.multitask import (MultiTaskModel, grow_task_embedding, remap_optimizer_state,
                                       step_fn)
from ernie2.training.optim import WarmupLinear, base_lrs, make_optimizer, warmup_steps
from ernie2.training.precision import (choose_cpu_precision, measure_peak_flops, resolve_device,
                                       resolve_precision)
from ernie2.training.reporting import MetricLogger, format_record
from ernie2.training.rundir import RunDirError, RunLock, claim
from ernie2.training.schedule import Plan, StageSpec, build_plan
from ernie2.training.streams import heldout_examples, shared_corpus, train_stream
from ernie2.utils import atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    output_dir: Path
    final_model: Path | None  # None when the run stopped early
    report: dict[str, Path]
    history: list[dict]  # one evaluation per completed stage
    steps: int  # global optimizer steps done
    completed: bool
    chance: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False  # stopped by SIGINT/SIGTERM, after saving a checkpoint
    stopped_model: Path | None = None  # the model where max_steps stopped (save_stopped=True)


def plan_from_config(cfg: PretrainConfig) -> Plan:
    specs = []
    for st in cfg.stages:
        weights = {task_run_name(t): t.weight for t in st.tasks if t.weight is not None}
        weights.update(st.weights)
        specs.append(StageSpec(st.name, st.steps,
                               [(task_run_name(t), t.task_id) for t in st.tasks], weights))
    return build_plan(specs, cfg.train.schedule, cfg.train.allocation)


def _task_sections(cfg: PretrainConfig) -> dict:
    return {task_run_name(t): t for st in cfg.stages for t in st.tasks}


def _seed_of(*parts: int) -> int:
    from ernie2.corpus.spec import mix_seed
    return mix_seed(*parts) & 0x7FFF_FFFF_FFFF_FFFF


def _plan_summary(plan: Plan) -> dict:
    return {"schedule": plan.schedule,
            "tasks": {t.name: t.task_id for t in plan.tasks},
            "stages": [{"name": s.name, "steps": s.steps, "counts": s.counts}
                       for s in plan.stages]}


class _Interrupt:
    """SIGINT/SIGTERM: finish the current step, save a checkpoint, stop."""

    def __init__(self):
        self.flag = False
        self._old = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            pass
        return self

    def _handle(self, signum, frame):
        if self.flag:  # a second signal: stop now
            raise KeyboardInterrupt
        logger.warning("signal %d: stopping after this step and saving a checkpoint", signum)
        self.flag = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class PretrainRun:
    """The pre-training recipe: `setup()` builds the tokenizer, model, tasks, streams, held-out
    sets and logger; `resume_from(loaded)` takes a checkpoint's model, history and counters;
    `train(first_stage, loop_state)` fits the stages, restoring the rest of a resume
    (`training.resume`) when its stage starts; `save_checkpoint(...)` writes one. `run()` holds
    output_dir's lock and does them in order."""

    def __init__(self, cfg: PretrainConfig, *, resume: bool = False, max_steps: int | None = None,
                 stop: Callable[[int], bool] | None = None, progress: bool | None = None,
                 save_stopped: bool = False, overwrite: bool = False,
                 allow_change: list[str] | None = None):
        self.cfg = cfg
        self.resume = resume
        self.overwrite = overwrite
        self.allow_change = list(allow_change or [])
        self.resumed: Loaded | None = None
        self.changes: list[dict] = []  # config changes accepted on resume, over the run
        self.accepted: dict | None = None  # those accepted by this resume
        self._prepared: dict[str, Any] = {}  # corpus name -> the spec every task reads
        self.max_steps = max_steps
        self.save_stopped = save_stopped
        self.stop_hook = stop
        self.progress = cfg.log.progress if progress is None else progress
        self.out = Path(cfg.output_dir)
        device = resolve_device(cfg.train.device)
        dist_util.init_from_env(device)
        self.device = dist_util.local_device(device)
        self.rank, self.world = dist_util.rank(), dist_util.world_size()
        self.precision = resolve_precision(cfg.train.precision, self.device)
        self.plan = plan_from_config(cfg)
        self.sections = _task_sections(cfg)
        self.ckpt = CheckpointManager(self.out / "checkpoints", cfg.checkpoint.keep)
        self.history: list[dict] = []
        self.consumed: dict[str, int] = {}  # examples drawn per task, over all ranks

    # ------------------------------------------------------------------ building
    def _tokenizer(self) -> ErnieTokenizer:
        m = self.cfg.model
        if m.vocab is not None:
            path = self.cfg.data_path(m.vocab)
            if not path.is_file():
                raise FileNotFoundError(f"{self.cfg.source}: model.vocab: {path} not found")
            self.vocab_file = path
        else:
            self.vocab_file = self._ckpt.vocab_file
            if self.vocab_file is None:
                raise FileNotFoundError(f"{self.cfg.source}: model.vocab is not set and "
                                        f"{m.init_from} has no vocab.txt")
        return ErnieTokenizer(self.vocab_file)

    def _read_base(self) -> None:
        """The checkpoint to start from (model.init_from), if any, and the tokenizer."""
        self._ckpt = read_checkpoint(self.cfg.model.init_from) if self.cfg.model.init_from \
            else None
        self.tokenizer = self._tokenizer()

    def _model_config(self) -> ErnieConfig:
        """The encoder's config, its sizes checked against memory before any allocation."""
        m = self.cfg.model
        rows = self.plan.table_size(0)
        try:
            if self._ckpt is None:
                config = ErnieConfig.from_name(m.size, vocab_size=self.tokenizer.vocab_size,
                                               use_task_id=True, task_type_vocab_size=rows,
                                               **m.overrides)
            else:
                base = self._ckpt.config
                have = base.task_type_vocab_size if base.use_task_id else 0
                config = base.replace(use_task_id=True, task_type_vocab_size=max(have, rows),
                                      **m.overrides)
            config.check_memory(copies=4, what="training this model")
        except (TypeError, ValueError) as exc:  # an unknown, mistyped or oversized override
            raise ConfigError(f"{self.cfg.source}: model (size {m.size}, init_from "
                              f"{m.init_from}, overrides {m.overrides}): {exc}") from None
        if m.max_len > config.max_position_embeddings:
            raise ValueError(f"{self.cfg.source}: model.max_len {m.max_len} exceeds the model's "
                             f"max_position_embeddings {config.max_position_embeddings}")
        if self._ckpt is not None and config.vocab_size != self.tokenizer.vocab_size:
            raise ValueError(f"{self.cfg.source}: the vocab has {self.tokenizer.vocab_size} "
                             f"tokens, the checkpoint {m.init_from} {config.vocab_size}")
        return config

    def _encoder(self) -> ErnieModel:
        m = self.cfg.model
        config = self._model_config()
        torch.manual_seed(self.cfg.seed)
        encoder = ErnieModel(config)
        if self._ckpt is not None:
            have = self._ckpt.config.task_type_vocab_size if self._ckpt.config.use_task_id else 0
            fresh = load_encoder(encoder, self._ckpt)
            table = encoder.embeddings.task_type_embeddings
            with torch.no_grad():
                if m.new_task_rows == "zeros" and table is not None:
                    table.weight[have:].zero_()
            if fresh:
                logger.info("added to %s: %s", m.init_from, ", ".join(fresh))
        return encoder.to(self.device)

    def _where(self, name: str) -> str:
        for i, st in enumerate(self.cfg.stages):
            for j, t in enumerate(st.tasks):
                if task_run_name(t) == name:
                    return f"stages[{i}].tasks[{j}]"
        return name

    def _make_task(self, name: str):
        sec = self.sections[name]
        args = dict(tokenizer=self.tokenizer, max_len=self.cfg.model.max_len,
                    task_id=self.plan.task(name).task_id, **sec.options)
        factory = load_factory(sec.task)
        # Options a task names in `path_options` are files: relative ones start at data_dir.
        for key in getattr(factory, "path_options", ()):
            if isinstance(args.get(key), str):
                args[key] = str(self.cfg.data_path(args[key]))
        try:
            inspect.signature(factory).bind(**args)
        except TypeError as exc:  # a misspelled or missing option, named before the call
            params = [p for p in inspect.signature(factory).parameters
                      if p not in ("self", "tokenizer", "max_len", "task_id")]
            raise ConfigError(f"{self.cfg.source}: {self._where(name)}.options: {exc} (task "
                              f"{sec.task} takes: {', '.join(params) or 'no options'})") from None
        except ValueError:  # no signature to inspect (a builtin): let the call decide
            pass
        return create_task(sec.task, **args)

    def _pack(self, name: str) -> int:
        """The task's packing budget for TaskStream: model.max_len with `pack = true`, else 0."""
        return self.cfg.model.max_len if self.sections[name].pack else 0

    def _corpus(self, name: str) -> tuple[dict, float]:
        sec = self.sections[name]
        corpora = {c.name: c for c in self.cfg.corpora}
        c = corpora[sec.corpus] if sec.corpus else self.cfg.corpora[0]
        paths = c.path if isinstance(c.path, list) else [c.path]
        resolved = [str(self.cfg.data_path(p)) for p in paths]
        spec = {"path": resolved if isinstance(c.path, list) else resolved[0],
                "format": c.format, "lang": c.lang, **c.options}
        if c.name not in self._prepared:
            self._prepared[c.name] = shared_corpus(spec, progress=self.progress)
        return self._prepared[c.name], c.heldout if c.heldout is not None else \
            self.cfg.eval.heldout

    def setup(self) -> None:
        cfg = self.cfg
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2 ** 32)
        self._read_base()
        encoder = self._encoder()
        self.model = MultiTaskModel(encoder)
        self.tasks = {t.name: self._make_task(t.name) for t in self.plan.tasks}
        self.task_ids = {t.name: t.task_id for t in self.plan.tasks}
        self.streams = {}
        self.heldout: dict[str, list] = {}
        for t in self.plan.tasks:
            spec, frac = self._corpus(t.name)
            self.streams[t.name] = train_stream(
                self.tasks[t.name], spec, seed=cfg.seed, heldout=frac, rank=self.rank,
                world=self.world, sharding=cfg.train.sharding,
                shuffle=cfg.train.shuffle_buffer, pack=self._pack(t.name))
            if frac > 0:
                self.heldout[t.name] = heldout_examples(
                    self._make_task(t.name), spec, seed=cfg.seed, heldout=frac,
                    n=cfg.eval.examples, name=t.name, progress=self.progress and self.rank == 0)
            else:
                logger.warning("task %s: its corpus holds nothing out (heldout = 0): it is not "
                               "evaluated", t.name)
        self.chance = {n: chance_level(exs) for n, exs in self.heldout.items()}
        if cfg.train.precision == "auto" and self.device.type == "cpu" and self.precision == "bf16":
            # A timing, so it may come out the other way next time: a resumed run keeps the
            # choice its checkpoint was trained with and continues the same computation.
            saved = self.resumed.meta.get("precision") if self.resumed else None
            self.precision = saved or choose_cpu_precision(encoder, cfg.model.max_len)[0]
            if self.world > 1:  # every rank must agree: rank 0 decides
                self.precision = dist_util.all_gather_objects(self.precision)[0]
        vocab = encoder.config.vocab_size
        self.lm_like = {n: is_lm_like(t, vocab) for n, t in self.tasks.items()}
        peak = cfg.log.peak_tflops * 1e12 if cfg.log.peak_tflops else None
        if peak is None and self.rank == 0:
            peak = measure_peak_flops(self.precision, str(self.device))
        self.logger = MetricLogger(self.out, cfg.log.every, jsonl=cfg.log.jsonl,
                                   csv_file=cfg.log.csv, tensorboard=cfg.log.tensorboard,
                                   flops_per_token=encoder.flops_per_token, peak_flops=peak,
                                   lm_like=lambda n: self.lm_like.get(n, False))
        # Dropout differs across ranks; every other draw is seeded explicitly.
        torch.manual_seed(_seed_of(cfg.seed, 0xD0, self.rank))

    def _grow(self, s: int) -> None:
        """The structure stage `s` needs: task-embedding rows and a head per known task. New
        parameters draw from generators seeded by the plan, never from the global RNG, so a
        resumed run builds the same values."""
        encoder = self.model.encoder
        init = self.cfg.model.new_task_rows
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # module constructors draw too
            gen = torch.Generator().manual_seed(_seed_of(self.cfg.seed, 0x7A, s))
            if grow_task_embedding(encoder, self.plan.table_size(s), init, gen):
                encoder.embeddings.task_type_embeddings.to(self.device)
            for name in self.plan.stages[s].known:
                if name not in self.model.heads:
                    torch.manual_seed(_seed_of(self.cfg.seed, 0x4E, self.task_ids[name]))
                    self.model.add_task(name, self.tasks[name])
                    if not self._load_head(name):
                        self._output_prior(name)

    def _output_prior(self, name: str) -> None:
        """model.output_prior: the new head's output bias from the label frequencies of the
        first examples of a stream of its own (seeded apart from the training stream, which it
        leaves untouched; the same on every rank)."""
        n = self.cfg.model.output_prior
        if n <= 0:
            return
        task = self._make_task(name)
        spec, frac = self._corpus(name)
        stream = train_stream(task, spec, seed=_seed_of(self.cfg.seed, 0xB1, self.task_ids[name]),
                              heldout=frac, rank=0, world=1)
        examples = list(itertools.islice(iter(stream), n))
        counts = label_counts(examples, task.num_classes)
        if counts.sum() > 0 and set_output_prior(self.model.heads[name], counts):
            logger.info("head %s: output bias from the label frequencies of %d examples", name,
                        len(examples))

    def _load_head(self, name: str) -> bool:
        """A head of the same name in the starting checkpoint (e.g. a stage model) is kept."""
        saved = self._ckpt.heads(name) if self._ckpt is not None else {}
        if not saved:
            return False
        try:
            self.model.heads[name].load_state_dict(saved)
        except RuntimeError as exc:
            raise ValueError(f"{self.cfg.model.init_from}: head {name!r} does not fit this "
                             f"task's head: {str(exc).splitlines()[0]}; give the task another "
                             "name to start it fresh") from None
        logger.info("head %s: loaded from %s", name, self.cfg.model.init_from)
        return True

    # ------------------------------------------------------------------ one stage
    def _scheduler(self, opt, s: int, lr: float) -> WarmupLinear:
        tr = self.cfg.train
        scope = tr.lr_schedule if tr.lr_schedule != "auto" else (
            "run" if self.plan.schedule == "joint" else "stage")
        if scope == "run":
            total = self.plan.total_steps
            start = self.plan.stage_start(s)
        else:
            total, start = self.plan.stages[s].steps, 0
        warm = warmup_steps(total, tr.warmup_steps, tr.warmup_ratio)
        return WarmupLinear(opt, base_lrs(opt, lr), warm, total, tr.min_lr_ratio,
                            step=start)

    def _evaluate(self, step: int, s: int) -> dict:
        with self.logger.untimed():
            results = evaluate(self.model, self.heldout, device=self.device,
                               precision=self.precision, batch_size=self.cfg.eval.batch_size,
                               pad_id=self.tokenizer.pad_id, task_ids=self.task_ids,
                               vocab_size=self.model.encoder.config.vocab_size)
            rec = {"step": step, "stage": s + 1, "tasks": results}
            if self.rank == 0:
                self.logger.write(rec, "eval")
        return results

    def save_checkpoint(self, step: int, s: int, trainer: Trainer,
                        feeder: StageFeeder) -> None:
        """The trainer, the feeder (its position, the examples drawn and every task's stream)
        and the run's plan, history, precision, config and accepted changes."""
        with self.logger.untimed():
            resume.save(self.ckpt, step, trainer, feeder,
                        {"stage": s, "global_step": step, "plan": _plan_summary(self.plan),
                         "precision": self.precision, "history": self.history,
                         "config": self.cfg.to_dict(), "changes": self.changes})

    def _cadence(self, s: int, end: int, trainer: Trainer, feeder: StageFeeder,
                 interrupt: _Interrupt) -> Cadence:
        """When stage `s` evaluates, saves and stops before its last step `end` (which always
        evaluates and saves, after the fit)."""
        cfg = self.cfg

        def stop_at(step: int) -> bool:
            by_steps = self.max_steps is not None and step >= self.max_steps
            by_hook = bool(self.stop_hook and self.stop_hook(step))  # asked every step
            return by_steps or by_hook

        def interrupted() -> bool:
            flag = interrupt.flag
            if self.world > 1:  # every rank stops at the same step
                flag = bool(dist_util.all_reduce_max(torch.tensor([float(flag)])).item())
            return flag

        return Cadence(
            evaluate=lambda step: self._evaluate(step, s),
            evaluate_at=lambda step: bool(cfg.eval.every and step % cfg.eval.every == 0
                                          and step != end),
            save=lambda step: self.save_checkpoint(step, s, trainer, feeder),
            save_at=lambda step: bool(cfg.checkpoint.every and step % cfg.checkpoint.every == 0
                                      and step != end),
            stop_at=stop_at, interrupted=interrupted, save_on_stop=self.save_stopped)

    def _export(self, path: Path) -> None:
        if self.rank != 0:
            return
        heads = {f"heads.{k}": v for k, v in self.model.heads.state_dict().items()}
        self.model.encoder.save_pretrained(path, vocab_file=self.vocab_file, extra_tensors=heads)
        info = {"tasks": {n: {"task_id": i, "spec": self.sections[n].task,
                              "stage": self.plan.task(n).stage + 1}
                          for n, i in self.task_ids.items() if n in self.model.heads},
                "schedule": self.plan.schedule}
        atomic_write_text(path / "pretraining.json", json.dumps(info, indent=1) + "\n")

    def run(self) -> PretrainResult:
        """The run, holding output_dir's lock (rank 0) from the first check to the last file."""
        lock = RunLock(self.out)
        failure = None
        if self.rank == 0:
            try:
                lock.__enter__()
                claim(self.out, resume=self.resume, overwrite=self.overwrite)
                self.ckpt.remove_stale()
            except RunDirError as exc:
                lock.__exit__()
                failure = exc
        message = dist_util.all_gather_objects(str(failure) if failure else None)[0]
        if failure:
            raise failure
        if message:  # every rank stops when rank 0 does
            raise RunDirError(message)
        try:
            return self._run()
        finally:
            lock.__exit__()

    def _resumable(self) -> Loaded | None:
        """The newest intact checkpoint, its config compared with this run's key by key."""
        loaded = resume.newest(self.ckpt)
        if loaded is None:
            return None
        changes = config_changes(loaded.meta.get("config", {}), self.cfg.to_dict())
        refuse_changes(changes, self.allow_change, f"--resume from {loaded.path}")
        resume.check_written_for(loaded, "plan", _plan_summary(self.plan),
                                 "a different plan (stages, steps, tasks or ids changed)")
        self.changes = list(loaded.meta.get("changes", []))
        if changes:
            self.accepted = {k: [a, b] for k, (a, b) in changes.items()}
            self.changes.append({"step": int(loaded.meta["global_step"]),
                                 "changed": self.accepted})
            logger.warning("resuming %s with changed settings (--allow-change): %s", loaded.path,
                           "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()))
        return loaded

    def _run(self) -> PretrainResult:
        self.resumed = self._resumable() if self.resume else None
        self.setup()
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.json",
                              json.dumps(self.cfg.to_dict(), indent=1, ensure_ascii=False) + "\n")
        first_stage, loop_state = (self.resume_from(self.resumed) if self.resumed is not None
                                   else (0, LoopState()))
        return self.train(first_stage, loop_state)

    def resume_from(self, loaded: Loaded) -> tuple[int, LoopState]:
        """The model, history and loop counters of a checkpoint (the optimizer, scheduler,
        streams, feeder and random state are restored when the next stage starts, by
        `resume.restore`); returns the stage to go on with and the loop state."""
        if self.accepted:
            self.logger.write({"step": int(loaded.meta["global_step"]), "tasks": {},
                               "changed": self.accepted}, "resume")
        s = int(loaded.meta["stage"])
        for k in range(s + 1):
            self._grow(k)
        self.model.load_state_dict(loaded.model)
        self.history = loaded.meta.get("history", [])
        loop = loaded.meta["trainer"]["loop"]
        loop_state = LoopState(**{k: int(v) for k, v in loop.items()})
        done_in_stage = loop_state.step - self.plan.stage_start(s)
        first_stage = s + 1 if done_in_stage >= self.plan.stages[s].steps else s
        logger.info("resuming from %s (step %d, stage %d)", loaded.path, loop_state.step, s + 1)
        return first_stage, loop_state

    def train(self, first_stage: int, loop_state: LoopState) -> PretrainResult:
        """The stages from `first_stage` on, each fitted with its evaluation and checkpoints;
        at a stage's end: evaluation, a checkpoint, the stage model and the reports.

        Longer than most functions here: it is the driver's whole story in order (optimizer,
        scheduler and feeder of a stage, what a resume restores into them, the fit, the end of
        the stage, the final model), and splitting it would scatter the resume rules."""
        cfg, plan = self.cfg, self.plan
        loaded = self.resumed
        trainer = None
        completed = True
        with _Interrupt() as interrupt:
            for s in range(first_stage, len(plan.stages)):
                stage = plan.stages[s]
                self._grow(s)
                self.logger.stage = s
                lr = cfg.stages[s].lr or cfg.train.lr
                opt = make_optimizer(self.model, lr, cfg.train.weight_decay, cfg.train.betas,
                                     cfg.train.eps, self.device, cfg.train.embedding_lr_scale)
                previous = trainer.optimizer.state_dict() if trainer else (
                    loaded.optimizer if loaded else None)
                if previous is not None:
                    remap_optimizer_state(previous, opt)
                sched = self._scheduler(opt, s, lr)
                # Every task's stream, trained in this stage or not: the feeder's state is the
                # run's whole data state.
                feeder = StageFeeder(stage.counts, stage.steps, self.streams,
                                     Batching(cfg.train.batch_size, cfg.train.micro_batch_size,
                                              cfg.train.batch_tokens, cfg.train.micro_batch_tokens),
                                     cfg.train.mix, self.rank, self.world, self.tokenizer.pad_id,
                                     task_ids=self.task_ids, consumed=self.consumed)
                trainer = Trainer(self.model, step_fn, units_of, stage.trained, opt, sched,
                                  device=self.device, precision=self.precision,
                                  grad_clip=cfg.train.grad_clip,
                                  max_bad_steps=cfg.train.max_bad_steps,
                                  compile=cfg.train.compile, state=loop_state)
                if loaded is not None:
                    # The optimizer is mapped above; a checkpoint that ended the stage before
                    # leaves this stage its own schedule, and its feeder starts at step 0.
                    same_stage = int(loaded.meta["stage"]) == s
                    resume.restore(loaded, trainer, feeder, optimizer=False, schedule=same_stage)
                    if not same_stage:
                        feeder.position = 0
                    loaded = None
                end = plan.stage_start(s) + stage.steps
                logger.info("stage %d/%d %s: %d steps, tasks %s", s + 1, len(plan.stages),
                            stage.name, stage.steps,
                            ", ".join(f"{n} ({stage.counts[n]})" for n in stage.trained))

                finished = fit(trainer, feeder, end,
                               self._cadence(s, end, trainer, feeder, interrupt),
                               logger=self.logger, progress=self.progress,
                               desc=f"stage {s + 1}/{len(plan.stages)} {stage.name}")
                if not finished and loop_state.step < end:
                    completed = False
                    break
                results = self._evaluate(end, s)
                self.history.append({"stage": s, "name": stage.name, "step": end,
                                     "results": results})
                self.save_checkpoint(end, s, trainer, feeder)
                if cfg.checkpoint.stage_models:
                    self._export(self.out / "stages" / f"{s + 1}-{_slug(stage.name)}")
                self._report()
                if self.rank == 0:
                    logger.info("end of stage %d: %s", s + 1, format_record(
                        {"split": "eval", "step": end, "tasks": results}))
                if interrupt.flag or (self.max_steps is not None and loop_state.step >=
                                      self.max_steps):
                    completed = s == len(plan.stages) - 1
                    break
        self.logger.close()
        final = stopped = None
        if completed:
            final = self.out / "final"
            self._export(final)
            dist_util.barrier()
        elif self.save_stopped and self.max_steps is not None and \
                loop_state.step >= self.max_steps:
            stopped = self.out / "stopped"
            self._export(stopped)
            dist_util.barrier()
        report = self._report()
        return PretrainResult(self.out, final, report, self.history, loop_state.step, completed,
                              self.chance, interrupted=interrupt.flag and not completed,
                              stopped_model=stopped)

    def _report(self) -> dict[str, Path]:
        if self.rank != 0 or not self.history:
            return {}
        names = [t.name for t in self.plan.tasks]
        metric_names = {}
        for rec in self.history:
            for n, res in rec["results"].items():
                metric_names[n] = main_metric(res)[0]
        return write_forgetting_report(self.history, names, self.chance, metric_names,
                                       self.out / "report", f"{self.plan.schedule} schedule")


def check(config: str | Path | dict | PretrainConfig,
          overrides: dict[str, Any] | None = None) -> list[str]:
    """`ernie2 pretrain --check`: everything short of training. The plan, the tokenizer and
    vocab, the model's sizes (against memory; nothing allocated), every task built with its
    options, and each task's corpus opened and one example built from it. Returns the report's
    lines; any problem raises, naming the file and key."""
    from ernie2.training.streams import train_stream

    cfg = load_config(config, overrides)
    run = _configured(cfg)
    model = run._model_config()
    plan = run.plan
    lines = [f"{cfg.source}: valid; {plan.schedule} schedule, {plan.total_steps} steps",
             f"  vocab {run.vocab_file}: {run.tokenizer.vocab_size} tokens; model "
             f"{model.num_parameters():,} parameters"]
    for st in plan.stages:
        shares = ", ".join(f"{n}={st.counts[n]}" for n in st.trained)
        lines.append(f"  stage {st.index + 1} {st.name}: {st.steps} steps ({shares})")
    for t in plan.tasks:
        task = run._make_task(t.name)
        spec, frac = run._corpus(t.name)
        stream = train_stream(task, spec, seed=cfg.seed, heldout=frac, rank=0, world=1,
                              pack=run._pack(t.name))
        try:
            example = next(iter(stream), None)
        except PackingError as exc:  # packing a task whose examples carry one label each
            raise ValueError(f"{cfg.source}: {run._where(t.name)}.pack: {exc}") from None
        corpus = run.sections[t.name].corpus or cfg.corpora[0].name
        if example is None:
            raise ValueError(f"{cfg.source}: {run._where(t.name)}: task {t.name} builds no "
                             f"example from its corpus {corpus!r}")
        lines.append(f"  task {t.name}: task id {t.task_id}, from stage {t.stage + 1}; an "
                     f"example of {len(example.input_ids)} tokens built from corpus {corpus!r}")
    return lines


def _configured(cfg: PretrainConfig) -> PretrainRun:
    run = PretrainRun(cfg)
    run._read_base()
    return run


def model_config(config: str | Path | dict | PretrainConfig,
                 overrides: dict[str, Any] | None = None) -> tuple[ErnieConfig, Path]:
    """The encoder config a run of `config` saves at its end (the size, the vocab's size, the
    task-embedding rows of its last stage, the overrides) and its vocab file, read without
    training: what the same model from random initialization is built from before the run has
    saved one."""
    run = _configured(load_config(config, overrides))
    config = run._model_config()
    rows = run.plan.table_size(len(run.plan.stages) - 1)
    return config.replace(task_type_vocab_size=max(rows, config.task_type_vocab_size)), \
        run.vocab_file


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-") or "stage"


def pretrain(config: str | Path | dict | PretrainConfig, *, resume: bool = False,
             overrides: dict[str, Any] | None = None, max_steps: int | None = None,
             stop: Callable[[int], bool] | None = None, progress: bool | None = None,
             save_stopped: bool = False, overwrite: bool = False,
             allow_change: list[str] | None = None) -> PretrainResult:
    """Run a pre-training config (a path, a shipped config name, a dict or a PretrainConfig).

    `resume`: continue from the newest checkpoint in output_dir/checkpoints. `overrides`: dotted
    keys to change ({"train.lr": 1e-4}). `max_steps` / `stop(step)`: stop after that many global
    steps (or when stop returns True) without saving, as if the process were killed there:
    a test hook for resume; with `save_stopped`, stopping at max_steps saves a checkpoint and
    the model so far (output_dir/stopped). SIGINT/SIGTERM stop after the current step and
    save.

    output_dir belongs to one run: a fresh run refuses a directory holding another run's outputs
    unless `overwrite` (which deletes them); a resumed run refuses a config that differs from
    its checkpoint's in a key that changes the result, unless the key is in `allow_change`."""
    cfg = load_config(config, overrides)
    joined = not dist_util.is_distributed()
    try:
        return PretrainRun(cfg, resume=resume, max_steps=max_steps, stop=stop,
                           progress=progress, save_stopped=save_stopped, overwrite=overwrite,
                           allow_change=allow_change).run()
    finally:
        if joined and dist_util.is_distributed():  # we joined the group, so we leave it
            torch.distributed.destroy_process_group()
