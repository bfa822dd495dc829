"""Fine-tuning on the shared training loop: accumulation is exact, bf16 autocast runs on CPU,
evaluation cadence and best-model choice, resume to the same weights, DDP equals one process."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ernie2.finetune import FinetuneModel, FinetuneSettings, TaskOptions, finetune, samples
from ernie2.model.batch import collate
from ernie2.finetune.train import FeatureSteps
from ernie2.model import ErnieModel
from ernie2.tokenizer import ErnieTokenizer
from ernie2.training.loop import Trainer
from ernie2.training.precision import measure_peak_flops
from test_finetune_tasks import FAST, make_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ner_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ner")
    data = samples.ner(tmp / "data", sizes=(96, 24, 24))
    return data, make_pretrained(data, tmp)


@pytest.fixture(scope="module")
def cls_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cls")
    data = samples.sentiment(tmp / "data", sizes=(80, 24, 24))
    return data, make_pretrained(data, tmp)


def settings(data, pre, out, task, **kw):
    base = dict(task=task, data_dir=str(data), from_pretrained=str(pre), output_dir=str(out),
                batch_size=16, learning_rate=1e-3, epochs=1, log_every=2,
                options=TaskOptions(max_len=48, dropout=0.0), **FAST)
    return FinetuneSettings(**{**base, **kw})


def _features(task_name, data, pre, n, **opts):
    from ernie2.finetune import get_task_type
    task = get_task_type(task_name)
    options = TaskOptions(max_len=48, dropout=0.0, **opts)
    examples = task.read(next(data.glob("train.*")), options, True)
    tok = ErnieTokenizer.from_pretrained(pre)
    labels = task.collect_labels(examples)
    torch.manual_seed(0)
    model = FinetuneModel(ErnieModel.from_pretrained(pre), task, labels, options)
    return model, task.encode(examples, tok, labels, options)[:n], tok.pad_id


def _one_sgd_step(model, micro_batches):
    """Parameter change of one step of SGD with lr 1: exactly minus the gradient, so a wrong
    weighting of micro-batches shows (Adam's normalized update would hide a scale error)."""
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    trainer = Trainer(model, FinetuneModel.step_fn, model.units_fn, [model.task.name], opt,
                      sched, device=torch.device("cpu"), grad_clip=None)
    result = trainer.train_step(micro_batches)
    return {k: v.detach() - before[k] for k, v in model.named_parameters()}, result


@pytest.mark.parametrize("case", ["classify", "ner", "ner-crf"])
def test_four_micro_batches_of_8_equal_a_batch_of_32(case, ner_setup, cls_setup):
    task = case.split("-")[0]
    data, pre = cls_setup if task == "classify" else ner_setup
    model, feats, pad = _features(task, data, pre, 32, crf=case.endswith("crf"))
    twin = copy.deepcopy(model)
    # Sentences of different lengths: labeled words per micro-batch differ, so a plain mean of
    # micro-batch losses would be wrong for the softmax tagger (units are words there).
    whole, r1 = _one_sgd_step(model, [collate(feats, pad)])
    parts, r4 = _one_sgd_step(twin, [collate(feats[i:i + 8], pad) for i in range(0, 32, 8)])
    if case == "ner":
        per_micro = [twin.units_fn(collate(feats[i:i + 8], pad))["ner"][0] for i in range(0, 32, 8)]
        assert len(set(per_micro)) > 1  # the case the weighting exists for
    moved = sum(float(d.abs().sum()) for d in whole.values())
    assert moved > 0
    for k in whole:
        assert torch.allclose(whole[k], parts[k], atol=1e-6, rtol=1e-4), k
    assert r1.losses[task] == pytest.approx(r4.losses[task], rel=1e-5)


def test_feature_steps_cover_each_epoch_once_and_shares_partition_a_batch(ner_setup):
    _, feats, pad = _features("ner", *ner_setup, n=50)
    steps = FeatureSteps(feats, 16, 5, seed=3, pad_id=pad)
    assert steps.steps_per_epoch == 4  # 16 + 16 + 16 + 2
    seen = []
    for _ in range(4):
        micro = next(steps)
        assert all(len(m["input_ids"]) <= 5 for m in micro)
        seen += [i for s in [steps.share(steps.position - 1)] for i in s]
    assert sorted(seen) == list(range(50))
    # Two ranks split every global batch between them, and step s is rebuilt from s alone.
    ranks = [FeatureSteps(feats, 16, None, 3, pad, r, 2) for r in (0, 1)]
    for s in (0, 5, 7):
        assert sorted(ranks[0].share(s) + ranks[1].share(s)) == sorted(steps.share(s))
    # A last batch too small for every process joins the one before it.
    odd = FeatureSteps(feats[:33], 16, None, 3, pad, 0, 2)
    assert [len(b) for b in odd.epoch_batches(0)] == [16, 17]
    with pytest.raises(ValueError, match="smaller than the 4 processes"):
        FeatureSteps(feats, 3, None, 3, pad, 0, 4)


def test_micro_batches_end_to_end_give_the_same_model(ner_setup, tmp_path):
    data, pre = ner_setup
    a = finetune(settings(data, pre, tmp_path / "a", "ner", max_steps=3))
    b = finetune(settings(data, pre, tmp_path / "b", "ner", max_steps=3, micro_batch_size=4))
    wa = load_file(str(a.best_dir / "model.safetensors"))
    wb = load_file(str(b.best_dir / "model.safetensors"))
    assert any(not torch.equal(wa[k], load_file(str(pre / "model.safetensors")).get(k, wa[k]))
               for k in wa)
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=2e-5), k


def test_bf16_autocast_trains_on_cpu(cls_setup, tmp_path, monkeypatch):
    data, pre = cls_setup
    seen = set()
    real_forward = torch.nn.Linear.forward

    def spy(self, x):
        out = real_forward(self, x)
        if torch.is_grad_enabled():  # training, not the dev evaluation
            seen.add(out.dtype)
        return out
    monkeypatch.setattr(torch.nn.Linear, "forward", spy)
    result = finetune(settings(data, pre, tmp_path, "classify",
                               **{**FAST, "precision": "bf16"}))
    assert seen == {torch.bfloat16}  # every matmul of training ran under bf16 autocast
    records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert train and all(r["tasks"]["classify"]["loss"] > 0 for r in train)
    assert 0.0 <= result.best_score <= 1.0 and FinetuneModel.load(result.best_dir)


def test_fp16_on_cpu_is_refused_clearly(cls_setup, tmp_path):
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        finetune(settings(*cls_setup, tmp_path, "classify", **{**FAST, "precision": "fp16"}))


def test_evaluation_cadence_logs_and_best_model(cls_setup, tmp_path):
    data, pre = cls_setup
    # 80 examples, batch 16: 5 steps an epoch; 2 epochs; also every 3 steps.
    result = finetune(settings(data, pre, tmp_path, "classify", epochs=2, eval_every=3,
                               main_metric="loss"))
    steps = [h["step"] for h in result.history]
    assert steps == [3, 5, 6, 9, 10]
    assert [h["epoch"] for h in result.history] == [1, 1, 2, 2, 2]
    losses = [h["dev_loss"] for h in result.history]
    assert result.best_score == min(losses)  # loss is minimized, not maximized
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_step"] == steps[losses.index(min(losses))]
    # Logs as in pre-training: JSON lines and CSV, train and dev records.
    records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "dev"] == steps
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6, 8, 10]
    assert "dev" in (tmp_path / "metrics.csv").read_text()


def test_without_dev_the_last_model_is_kept(cls_setup, tmp_path):
    data, pre = cls_setup
    only = tmp_path / "data"
    only.mkdir()
    (only / "train.tsv").write_text((data / "train.tsv").read_text(encoding="utf-8"),
                                    encoding="utf-8")
    result = finetune(settings(only, pre, tmp_path / "out", "classify", max_steps=2))
    assert result.history == [] and result.steps == 2
    model = FinetuneModel.load(result.best_dir)
    assert model.task.name == "classify"
    assert not (tmp_path / "out" / "test_out.tsv").exists()


def test_stopped_run_resumes_to_the_same_weights(cls_setup, tmp_path):
    data, pre = cls_setup
    # Dropout on: the resumed run must also restore the random state.
    kw = dict(epochs=2, checkpoint_every=3, options=TaskOptions(max_len=48, dropout=0.3))
    whole = finetune(settings(data, pre, tmp_path / "whole", "classify", **kw))
    stopped = finetune(settings(data, pre, tmp_path / "cut", "classify", **kw),
                       stop=lambda step: step == 7)
    assert not stopped.completed and stopped.steps == 7
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()) == [
        "step-00000003", "step-00000006"]
    with pytest.raises(ValueError, match="holds checkpoints of an earlier run"):
        finetune(settings(data, pre, tmp_path / "cut", "classify", **kw))
    # A new process measures the peak FLOPs again (random matrices): that must not disturb
    # the restored random state.
    measure_peak_flops.cache_clear()
    resumed = finetune(settings(data, pre, tmp_path / "cut", "classify", resume=True,
                                peak_tflops=None, **kw))
    assert resumed.completed and resumed.steps == 10
    assert resumed.history == whole.history
    a = load_file(str(whole.best_dir / "model.safetensors"))
    b = load_file(str(resumed.best_dir / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(ValueError, match="other settings or data"):
        finetune(settings(data, pre, tmp_path / "cut", "classify", resume=True,
                          **{**kw, "epochs": 3}))


def test_resume_skips_a_damaged_newest_checkpoint(cls_setup, tmp_path, caplog):
    """As pre-training does (training.resume): the damaged newest checkpoint is named and the
    one before it resumed, to the weights of an uninterrupted run."""
    data, pre = cls_setup
    kw = dict(max_steps=6, checkpoint_every=2, options=TaskOptions(max_len=48, dropout=0.3))
    whole = finetune(settings(data, pre, tmp_path / "whole", "classify", **kw))
    finetune(settings(data, pre, tmp_path / "cut", "classify", **kw), stop=lambda s: s == 5)
    newest = tmp_path / "cut" / "checkpoints" / "step-00000004"
    model_file = newest / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:100])
    resumed = finetune(settings(data, pre, tmp_path / "cut", "classify", resume=True, **kw))
    assert "skipping checkpoint step-00000004" in caplog.text
    assert resumed.completed and resumed.history == whole.history
    a = load_file(str(whole.best_dir / "model.safetensors"))
    b = load_file(str(resumed.best_dir / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(cls_setup, tmp_path):
    """torchrun, 2 gloo processes each taking half of every batch: the same model as 1."""
    data, pre = cls_setup
    common = ["--task", "classify", "--data_dir", str(data), "--from_pretrained", str(pre),
              "--bsz", "16", "--lr", "1e-3", "--max_steps", "4", "--max_len", "48",
              "--dropout", "0", "--precision", "fp32", "--tensorboard", "off",
              "--peak_tflops", "1", "--no_progress", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "ernie2", "finetune", *common, "--output_dir", str(tmp_path / "ddp")],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("best model:") == 1  # one process reports
    one = finetune(settings(data, pre, tmp_path / "one", "classify", max_steps=4))
    a = load_file(str(one.best_dir / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "best" / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    dev = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["dev"]
    assert dev[-1]["dev_accuracy"] == one.history[-1]["dev_accuracy"]


def test_layerwise_decay_slows_the_lower_layers_only(cls_setup, tmp_path):
    """At decay 0.01 the embeddings learn at 1e-6 x lr and the top layer at 0.01 x lr: after the
    same steps they have hardly moved from the pre-trained weights, where one rate for all
    moves them; the head learns at the full rate either way."""
    data, pre = cls_setup
    start = load_file(str(pre / "model.safetensors"))
    moved = {}
    for decay in (1.0, 0.01):
        r = finetune(settings(data, pre, tmp_path / f"d{decay}", "classify", max_steps=3,
                              layerwise_decay=decay))
        w = load_file(str(r.best_dir / "model.safetensors"))
        moved[decay] = {k: (w[k] - start[k]).abs().max().item() for k in start if k in w}
        moved[decay]["head"] = max(w[k].abs().max().item() for k in w if k not in start)
    emb, top = ("ernie.embeddings.word_embeddings.weight",
                "ernie.encoder.layer.1.intermediate.dense.weight")
    assert moved[1.0][emb] > 1e-4 and moved[0.01][emb] < 1e-3 * moved[1.0][emb]
    assert moved[0.01][top] < 0.05 * moved[1.0][top]
    assert moved[0.01]["head"] > 0
    with pytest.raises(ValueError, match="layerwise_decay: expected a number in"):
        settings(data, pre, tmp_path / "bad", "classify", layerwise_decay=1.5)


def test_head_only_proportion_holds_the_encoder_while_the_head_learns(cls_setup, tmp_path):
    """LP-FT: of 8 steps at head_only_proportion 0.5 the first 4 move the head alone, and the
    model saved at step 4 has the pre-trained encoder unchanged (bit for bit); without the hold
    the same 4 steps move it."""
    data, pre = cls_setup
    start = load_file(str(pre / "model.safetensors"))
    moved = {}
    for prop in (0.0, 0.5):
        r = finetune(settings(data, pre, tmp_path / f"p{prop}", "classify", max_steps=8,
                              eval_every=4, eval_each_epoch=False, head_only_proportion=prop),
                     stop=lambda step: step == 4)
        assert r.steps == 4 and [h["step"] for h in r.history] == [4]
        w = load_file(str(r.best_dir / "model.safetensors"))
        shared = [k for k in start if k in w and ("embeddings" in k or ".layer." in k)]
        assert len(shared) > 10
        moved[prop] = max((w[k] - start[k]).abs().max().item() for k in shared)
        assert any(k not in start for k in w)  # the head
    assert moved[0.5] == 0.0 and moved[0.0] > 1e-4
    with pytest.raises(ValueError, match="head_only_proportion: expected a fraction"):
        settings(data, pre, tmp_path / "bad", "classify", head_only_proportion=1.0)
