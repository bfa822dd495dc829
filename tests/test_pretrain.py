"""Pre-training end to end on the synthetic corpus: outputs, exact resume (in-process stop and a
killed subprocess), crash-safe checkpoints, task-embedding growth from a checkpoint without one,
custom tasks from a file, and 2-process DDP against 1 process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ernie2 import ErnieConfig, ErnieModel
from ernie2.model.checkpoint import read_checkpoint
from ernie2.training import CheckpointManager, pretrain
from ernie2.training.pretraining import model_config
from ernie2.training.snapshots import rng_state, set_rng_state
from test_training_toytasks import base_config, spec

ROOT = Path(__file__).resolve().parents[1]


def _weights(result) -> dict[str, torch.Tensor]:
    return load_file(str(result.final_model / "model.safetensors"))


def _assert_same(a: dict, b: dict, exact: bool = True):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), (k, (a[k] - b[k]).abs().max())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    # token tables at 3x lr: their own optimizer groups must resume exactly too
    cfg = base_config(tmp, **{"model.overrides": {"hidden_dropout_prob": 0.1},
                              "train.embedding_lr_scale": 3.0})
    # the masked LM packs its examples: the example held over to the next pack resumes too
    cfg["stages"][0]["tasks"][0]["pack"] = True
    return cfg, pretrain(cfg)


def test_run_writes_model_heads_logs_and_forgetting_report(uninterrupted):
    cfg, result = uninterrupted
    out = Path(cfg["output_dir"])
    assert result.completed and result.steps == 18 and len(result.history) == 3
    # the final model loads as a plain encoder, with the heads beside it
    model = ErnieModel.from_pretrained(result.final_model)
    assert model.config.use_task_id and model.config.task_type_vocab_size == 3
    # ... and its config is what model_config reads from the run's config without training
    # (what the fine-tuning demo's random start is built from while the run trains)
    config, vocab = model_config(cfg)
    assert config == model.config and vocab.read_bytes() == (result.final_model /
                                                              "vocab.txt").read_bytes()
    ckpt = read_checkpoint(result.final_model)
    assert set(ckpt.heads("mlm")) == {"dense.weight", "dense.bias", "layer_norm.weight",
                                      "layer_norm.bias", "bias"}
    assert set(ckpt.heads("order")) == {"classifier.weight", "classifier.bias"}
    info = json.loads((result.final_model / "pretraining.json").read_text())
    assert {n: t["task_id"] for n, t in info["tasks"].items()} == {"mlm": 0, "order": 1, "even": 2}
    # each stage's model is exported with the table and heads it had then
    stage1 = read_checkpoint(out / "stages" / "1-words")
    assert stage1.config.task_type_vocab_size == 1 and not stage1.heads("order")
    # logs: every task's loss and metric, learning rate, throughput and MFU
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert {"lr", "tokens_per_s", "mfu", "tasks"} <= set(train[0])
    assert "perplexity" in train[0]["tasks"]["mlm"] and "accuracy" in train[0]["tasks"]["mlm"]
    assert "perplexity" not in next(r["tasks"]["order"] for r in train if "order" in r["tasks"])
    evals = [r for r in rows if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [6, 12, 18]
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("step,stage,split,task,loss,accuracy,perplexity,lr")
    # forgetting report: every task at every stage end
    csv_rows = (out / "report" / "forgetting.csv").read_text().splitlines()
    assert csv_rows[0] == "stage,name,step,mlm,order,even"
    assert csv_rows[1].startswith("1,words,6,") and csv_rows[1].endswith(",,")
    assert csv_rows[-1].startswith("chance,")
    md = (out / "report" / "forgetting.md").read_text()
    assert "| 3. even (step 18) |" in md
    png = (out / "report" / "forgetting.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the last K checkpoints only
    assert [p.name for p in CheckpointManager(out / "checkpoints").list()] == [
        "step-00000016", "step-00000018"]


@pytest.mark.parametrize("stop_at", [5, 14])
def test_stopped_and_resumed_run_ends_with_the_same_weights(uninterrupted, tmp_path, stop_at):
    cfg, full = uninterrupted
    cfg = {**cfg, "data_dir": cfg["data_dir"], "output_dir": str(tmp_path / "run")}
    first = pretrain(cfg, max_steps=stop_at)
    assert not first.completed and first.final_model is None and first.steps == stop_at
    resumed = pretrain(cfg, resume=True)
    assert resumed.completed and resumed.steps == 18
    _assert_same(_weights(full), _weights(resumed))
    assert [h["results"] for h in resumed.history] == [h["results"] for h in full.history]


def test_resume_keeps_the_precision_auto_chose(uninterrupted, tmp_path, monkeypatch):
    """precision = "auto" times fp32 against bf16 on a CPU that has bf16; the timing may come out
    the other way when the run resumes, and the resumed run must keep the checkpoint's choice."""
    import importlib
    pt = importlib.import_module("ernie2.training.pretraining")
    cfg, full = uninterrupted
    cfg = {**cfg, "output_dir": str(tmp_path / "run"),
           "train": {**cfg["train"], "precision": "auto"}}
    monkeypatch.setattr(pt, "resolve_precision", lambda precision, device: "bf16")
    monkeypatch.setattr(pt, "choose_cpu_precision", lambda encoder, seq_len: ("fp32", {}))
    first = pretrain(cfg, max_steps=7)
    assert first.steps == 7
    monkeypatch.setattr(pt, "choose_cpu_precision", lambda encoder, seq_len: ("bf16", {}))
    resumed = pretrain(cfg, resume=True)
    assert resumed.completed
    _assert_same(_weights(full), _weights(resumed))


def test_killed_subprocess_resumes_to_the_same_weights(tmp_path):
    cfg = base_config(tmp_path, **{"stages": None})
    cfg["stages"] = [{"name": "words", "steps": 15, "tasks": [{"task": spec("ToyMLM"),
                                                                "name": "mlm"}]},
                     {"name": "order", "steps": 15, "tasks": [{"task": spec("ToyOrder"),
                                                                "name": "order"}]}]
    cfg["checkpoint"] = {"every": 3, "keep": 2}
    cfg["model"]["overrides"] = {"hidden_dropout_prob": 0.1}
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    # same thread count as this process: float sums must happen in the same order
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "ernie2", "pretrain", str(cfg_file),
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpts = CheckpointManager(Path(cfg["output_dir"]) / "checkpoints")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        latest = ckpts.latest()
        if latest is not None and int(latest.name.split("-")[1]) >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = int(ckpts.latest().name.split("-")[1])
    assert killed_at < 30
    resumed = pretrain(cfg_file, resume=True)
    assert resumed.completed
    full = pretrain(cfg_file, overrides={"output_dir": str(tmp_path / "full")})
    _assert_same(_weights(full), _weights(resumed))


def test_crash_during_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    import ernie2.training.snapshots as ck

    manager = CheckpointManager(tmp_path / "ckpt", keep=2)
    model = {"w": torch.arange(6.0).reshape(2, 3)}
    opt = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 3)}},
           "param_groups": [{"lr": 0.1, "params": [0], "names": ["w"]}]}
    manager.save(10, model, opt, {"note": "ten"}, {"rng": rng_state()})
    real = ck.atomic_write_bytes

    def crash(path, data):
        if Path(path).name == "optimizer.safetensors":
            raise OSError("disk full (simulated)")
        real(path, data)

    monkeypatch.setattr(ck, "atomic_write_bytes", crash)
    with pytest.raises(OSError, match="simulated"):
        manager.save(20, {"w": torch.zeros(2, 3)}, opt, {"note": "twenty"}, {})
    assert manager.latest().name == "step-00000010"
    loaded = manager.load()
    assert loaded.meta["note"] == "ten" and torch.equal(loaded.model["w"], model["w"])
    assert torch.equal(loaded.optimizer["state"][0]["exp_avg"], torch.ones(2, 3))
    assert float(loaded.optimizer["state"][0]["step"]) == 3.0
    monkeypatch.setattr(ck, "atomic_write_bytes", real)
    for step in (20, 30, 40):
        manager.save(step, model, opt, {}, {})
    assert [p.name for p in manager.list()] == ["step-00000030", "step-00000040"]
    assert not list((tmp_path / "ckpt").glob(".tmp-*"))  # the crashed save is cleaned up


def test_rng_state_round_trips_through_json(tmp_path):
    import random

    import numpy as np

    from ernie2.training.snapshots import _jsonable, _unjson

    state = json.loads(json.dumps(_jsonable(rng_state())))
    a = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(_unjson(state))
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_start_from_checkpoint_without_task_embedding_grows_the_table(tmp_path):
    cfg = base_config(tmp_path)
    vocab = tmp_path / "vocab.txt"
    torch.manual_seed(0)
    base = ErnieModel(ErnieConfig.from_name("test", vocab_size=46, use_task_id=False))
    base.save_pretrained(tmp_path / "base", vocab_file=vocab)
    cfg["model"] = {"init_from": str(tmp_path / "base"), "max_len": 48}
    cfg["stages"] = cfg["stages"][:2]
    cfg["train"]["lr"] = 1e-9  # keep the loaded weights (almost) where they were
    cfg["train"]["weight_decay"] = 0.0
    result = pretrain(cfg)
    out = Path(cfg["output_dir"])
    s1 = ErnieModel.from_pretrained(out / "stages" / "1-words")
    final = ErnieModel.from_pretrained(result.final_model)
    assert s1.embeddings.task_type_embeddings.weight.shape == (1, 32)
    assert final.embeddings.task_type_embeddings.weight.shape == (2, 32)
    # rows added to a trained model start at zero, so it computes what it did before
    assert final.embeddings.task_type_embeddings.weight.abs().max() < 1e-6
    assert torch.allclose(final.layers[1].ffn_out.weight, base.layers[1].ffn_out.weight,
                          atol=1e-6)


def test_custom_task_from_a_file_outside_the_package(tmp_path):
    task_file = tmp_path / "my_tasks.py"
    task_file.write_text('''
import torch.nn.functional as F
from ernie2.model.heads import SequenceHead
from ernie2.tasks.protocol import Example

class LongDoc:
    """Does the document have more than four sentences?"""
    name = "long_doc"
    kind = "sequence"
    num_classes = 2
    description = "long documents"

    def __init__(self, tokenizer, max_len, task_id=0):
        self.tok, self.max_len, self.task_id = tokenizer, max_len, task_id

    def build(self, doc, rng):
        text = " ".join(s.text for s in doc.sentences[:3])
        ids = self.tok.convert_tokens_to_ids(self.tok.tokenize(text))[: self.max_len - 2]
        ids = [self.tok.cls_id, *ids, self.tok.sep_id]
        return Example(self.name, ids, [0] * len(ids), int(len(doc.sentences) > 4),
                       self.task_id)

    def make_head(self, config, encoder):
        return SequenceHead(config.hidden_size, 2, 0.0)

    def compute(self, head, pooled, encoded, batch):
        logits = head(pooled).float()
        y = batch["labels"]
        return F.cross_entropy(logits, y), {"correct": int((logits.argmax(-1) == y).sum()),
                                            "count": len(y)}
''', encoding="utf-8")
    cfg = base_config(tmp_path)
    cfg["stages"] = [{"name": "custom", "steps": 4,
                      "tasks": [{"task": f"{task_file}:LongDoc"}]}]
    result = pretrain(cfg)
    assert result.completed and "longdoc" in result.history[0]["results"]
    assert read_checkpoint(result.final_model).heads("longdoc")


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(tmp_path):
    """torchrun with 2 gloo processes (each drawing half of every global batch) ends with the
    weights of 1 process on the same global batches."""
    cfg = base_config(tmp_path)
    cfg["stages"] = cfg["stages"][:2]
    cfg["train"]["mix"] = "batch"
    cfg["train"]["sharding"] = "examples"
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "ernie2", "pretrain", str(cfg_file), "--no-progress",
         "--output-dir", str(tmp_path / "ddp")], env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = pretrain(cfg_file, overrides={"output_dir": str(tmp_path / "one")})
    ddp = load_file(str(tmp_path / "ddp" / "final" / "model.safetensors"))
    _assert_same(_weights(single), ddp, exact=False)
    one_eval = single.history[-1]["results"]
    ddp_eval = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()[-1])
    for task, res in one_eval.items():
        assert ddp_eval["tasks"][task]["loss"] == pytest.approx(res["loss"], rel=1e-4)


def test_output_prior_starts_heads_at_their_label_frequencies(tmp_path):
    from collections import Counter

    from ernie2.tasks.heads import label_counts, set_output_prior
    from ernie2.tasks.protocol import Example
    from ernie2.model.heads import SequenceHead

    # hand-worked: labels 0 three times, 2 once (-100 not counted): log(4, 1, 2), centred
    exs = [Example("t", [1, 2], [0, 0], [0, -100, 2]), Example("t", [1], [0], [0, 0])]
    counts = label_counts(exs, 3)
    assert counts.tolist() == [3.0, 0.0, 1.0]
    head = SequenceHead(4, 3)
    assert set_output_prior(head, counts)
    want = torch.log(torch.tensor([4.0, 1.0, 2.0]))
    assert torch.allclose(head.classifier.bias, want - want.mean())
    assert not set_output_prior(SequenceHead(4, 2), counts)  # another width: left alone

    # in a run (a learning rate too small to move anything): the masked-LM head's bias ranks
    # the corpus's tokens by frequency; without the option it stays at zero
    def run(out, prior):
        cfg = base_config(tmp_path, **{"output_dir": str(tmp_path / out), "model.output_prior":
                                       prior, "train.lr": 1e-9, "train.weight_decay": 0.0})
        cfg["stages"] = cfg["stages"][:1]
        pretrain(cfg)
        last = sorted((tmp_path / out / "checkpoints").glob("step-*"))[-1]
        return load_file(str(last / "model.safetensors"))["heads.mlm.bias"]

    from ernie2.tokenizer import ErnieTokenizer

    bias = run("prior", 300)
    data = Path(base_config(tmp_path)["data_dir"])
    tok = ErnieTokenizer(data / "vocab.txt")
    freq = Counter(t for line in (data / "corpus.txt").read_text().split()
                   for t in tok.convert_tokens_to_ids(tok.tokenize(line)))
    common = [t for t, _ in freq.most_common(3)]
    unseen = [i for i in range(tok.vocab_size) if i not in freq]
    assert unseen and min(bias[common]) > max(bias[unseen]) + 1.0
    assert run("zero", 0).abs().max() < 1e-6
