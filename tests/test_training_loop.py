"""The generic training loop: accumulation equals one big batch, non-finite losses are skipped
and stop the run, bf16 autocast trains, the optimizer and schedule behave as documented."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch

from ernie2 import ErnieConfig, ErnieModel
from ernie2.corpus.spec import iter_documents
from ernie2.tasks.protocol import collate
from ernie2.tasks.registry import create_task
from ernie2.tokenizer import ErnieTokenizer
from ernie2.training.data import units_of
from ernie2.training.loop import NonFiniteLossError, Trainer, token_counts
from ernie2.training.multitask import (MultiTaskModel, grow_task_embedding, remap_optimizer_state,
                                       step_fn)
from ernie2.training.optim import (WarmupLinear, base_lrs, encoder_hold, layerwise_scales,
                                   make_optimizer, no_decay_names, warmup_linear)
from test_training_toytasks import spec, write_corpus


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy")
    corpus, vocab = write_corpus(tmp, n_docs=64)
    tok = ErnieTokenizer(vocab)
    docs = list(iter_documents({"path": str(corpus), "format": "text", "lang": "en",
                                "annotate": False}))
    tasks = {"mlm": create_task(spec("ToyMLM"), tokenizer=tok, max_len=40, task_id=0),
             "order": create_task(spec("ToyOrder"), tokenizer=tok, max_len=40, task_id=1)}
    examples = {n: [t.build(d, random.Random(i)) for i, d in enumerate(docs)]
                for n, t in tasks.items()}
    return tok, tasks, examples


def _model(tok, tasks, seed=0):
    torch.manual_seed(seed)
    cfg = ErnieConfig.from_name("test", vocab_size=tok.vocab_size, use_task_id=True,
                                task_type_vocab_size=2, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0)
    model = MultiTaskModel(ErnieModel(cfg))
    for n, t in tasks.items():
        model.add_task(n, t)
    return model


def _trainer(model, precision="fp32", **kw):
    opt = make_optimizer(model, 1e-3, 0.01)
    sched = WarmupLinear(opt, [1e-3, 1e-3], 0, 100)
    return Trainer(model, step_fn, units_of, ["mlm", "order"], opt, sched,
                   device=torch.device("cpu"), precision=precision, **kw)


def _split(examples, sizes):
    out, i = [], 0
    for n in sizes:
        out.append(examples[i:i + n])
        i += n
    return out


def _micro(groups, pad_id):
    """Each group: list of (task, example) -> {task: collated batch}."""
    micro = []
    for g in groups:
        by = {}
        for t, e in g:
            by.setdefault(t, []).append(e)
        micro.append({t: collate(es, pad_id) for t, es in by.items()})
    return micro


@pytest.mark.parametrize("mixed", [False, True])
def test_four_micro_batches_of_8_equal_one_batch_of_32(toy, mixed):
    tok, tasks, examples = toy
    if mixed:  # both tasks in every micro-batch, in different proportions
        pool = [("mlm", e) for e in examples["mlm"][:20]] + \
               [("order", e) for e in examples["order"][:12]]
        random.Random(1).shuffle(pool)
    else:
        pool = [("mlm", e) for e in examples["mlm"][:32]]
    big, small = _model(tok, tasks), _model(tok, tasks)
    t_big, t_small = _trainer(big), _trainer(small)
    for _step in range(3):
        rb = t_big.train_step(_micro([pool], tok.pad_id))
        rs = t_small.train_step(_micro(_split(pool, [8, 8, 8, 8]), tok.pad_id))
        for k in rb.losses:
            assert rb.losses[k] == pytest.approx(rs.losses[k], rel=1e-5)
            assert rb.units[k] == rs.units[k]
    # the masked tokens per micro-batch differ, so a plain mean of micro-batch means would not
    # match; the unit weighting does
    n_masked = [sum(sum(1 for l in e.labels if l != -100) for _, e in g if _ == "mlm")
                for g in _split(pool, [8] * 4)]
    assert len(set(n_masked)) > 1
    for (name, p), q in zip(big.named_parameters(), small.parameters()):
        assert torch.allclose(p, q, atol=2e-6, rtol=1e-5), name


def test_unequal_micro_batches_are_weighted_by_scored_units(toy):
    tok, tasks, examples = toy
    pool = [("mlm", e) for e in examples["mlm"][:24]]
    a, b = _model(tok, tasks), _model(tok, tasks)
    _trainer(a).train_step(_micro([pool], tok.pad_id))
    _trainer(b).train_step(_micro(_split(pool, [3, 13, 8]), tok.pad_id))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=2e-6, rtol=1e-5)


def test_only_heads_in_play_change(toy):
    tok, tasks, examples = toy
    model = _model(tok, tasks)
    before = copy.deepcopy(model.state_dict())
    result = _trainer(model).train_step(_micro([[("mlm", e) for e in examples["mlm"][:8]]],
                                               tok.pad_id))
    after = model.state_dict()
    assert not torch.equal(before["heads.mlm.dense.weight"], after["heads.mlm.dense.weight"])
    assert torch.equal(before["heads.order.classifier.weight"],
                       after["heads.order.classifier.weight"])
    assert set(result.losses) == {"mlm"} and result.metrics["mlm"]["count"] == result.units["mlm"]
    tokens, padded, rows = result.tokens, result.padded, result.rows
    assert rows == 8 and tokens == sum(len(e.input_ids) for e in examples["mlm"][:8]) <= padded


def test_mlm_logits_only_at_masked_positions(toy):
    tok, tasks, examples = toy
    model = _model(tok, tasks)
    batch = collate(examples["mlm"][:8], tok.pad_id)
    seen = []
    hook = model.heads["mlm"].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model({"mlm": batch})
    hook.remove()
    assert seen == [(int((batch["labels"] != -100).sum()), tok.vocab_size)]


def test_non_finite_loss_skips_the_step_and_stops_when_it_persists(toy, caplog):
    tok, tasks, examples = toy
    model = _model(tok, tasks)
    bad = {"on": True}

    def poisoned(m, micro):
        losses, mets = m(micro)
        if bad["on"]:
            losses = {k: v * float("nan") for k, v in losses.items()}
        return losses, mets

    opt = make_optimizer(model, 1e-3)
    trainer = Trainer(model, poisoned, units_of, ["mlm", "order"], opt,
                      WarmupLinear(opt, [1e-3, 1e-3], 0, 10), device=torch.device("cpu"),
                      max_bad_steps=3)
    micro = _micro([[("mlm", e) for e in examples["mlm"][:8]]], tok.pad_id)
    before = copy.deepcopy(model.state_dict())
    r = trainer.train_step(micro)
    assert r.skipped and trainer.state.skipped == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    bad["on"] = False
    r = trainer.train_step(micro)
    assert not r.skipped and trainer.state.bad_in_a_row == 0
    bad["on"] = True
    trainer.train_step(micro)
    trainer.train_step(micro)
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps"):
        trainer.train_step(micro)
    assert trainer.state.skipped == 4


def test_bf16_autocast_trains_on_cpu(toy):
    tok, tasks, examples = toy
    model = _model(tok, tasks)
    trainer = _trainer(model, precision="bf16")
    micro = _micro([[("order", e) for e in examples["order"][:16]]], tok.pad_id)
    seen = []
    hook = model.encoder.layers[0].ffn_in.register_forward_hook(
        lambda m, i, o: seen.append(o.dtype))
    losses = [trainer.train_step(micro).losses["order"] for _ in range(15)]
    hook.remove()
    assert seen[0] == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_no_weight_decay_on_biases_and_layer_norm(toy):
    tok, tasks, _ = toy
    model = _model(tok, tasks)
    skip = no_decay_names(model)
    assert "encoder.layers.0.ffn_in.bias" in skip and "encoder.embeddings.layer_norm.weight" in skip
    assert "heads.mlm.layer_norm.weight" in skip and "heads.mlm.bias" in skip
    assert "encoder.layers.0.ffn_in.weight" not in skip
    assert "encoder.embeddings.word_embeddings.weight" not in skip
    opt = make_optimizer(model, 1e-3, 0.05)
    decayed = {n for g in opt.param_groups if g["weight_decay"] > 0 for n in g["names"]}
    assert decayed and not (decayed & skip)
    n_all = sum(1 for _ in model.parameters())
    assert sum(len(g["params"]) for g in opt.param_groups) == n_all


def test_embedding_lr_scale_moves_only_the_token_tables_faster(toy):
    tok, tasks, _ = toy
    model = _model(tok, tasks)
    lexical = {"encoder.embeddings.word_embeddings.weight", "heads.mlm.bias"}
    if model.heads["mlm"].decoder is not None:
        lexical.add("heads.mlm.decoder.weight")
    plain = make_optimizer(model, 1e-3, 0.01)
    assert len(plain.param_groups) == 2  # scale 1: the layout (and checkpoints) as before
    opt = make_optimizer(model, 1e-3, 0.01, lexical_lr_scale=5.0)
    scaled = {n for g in opt.param_groups if g["lr_scale"] == 5.0 for n in g["names"]}
    assert scaled == lexical
    assert sorted(base_lrs(opt, 1e-3)) == sorted(g["lr"] for g in opt.param_groups)
    # the decay rules are kept: the word table is decayed, the output bias is not
    decayed = {n for g in opt.param_groups if g["weight_decay"] > 0 for n in g["names"]}
    assert "encoder.embeddings.word_embeddings.weight" in decayed
    assert "heads.mlm.bias" not in decayed
    # Adam's first step moves every coordinate by about its lr: 5x as far in the token tables
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    assert moved["heads.mlm.bias"] == pytest.approx(5e-3, rel=1e-3)
    assert moved["encoder.layers.0.ffn_in.bias"] == pytest.approx(1e-3, rel=1e-3)


def test_warmup_then_linear_decay():
    assert [warmup_linear(s, 4, 12) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_linear(8, 4, 12) == pytest.approx(0.5)
    assert warmup_linear(12, 4, 12) == 0.0
    assert warmup_linear(12, 4, 12, min_ratio=0.1) == pytest.approx(0.1)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sched = WarmupLinear(opt, [2.0], 2, 6)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(6):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    # steps 0-1 warm up to the peak (never a zero-LR first step); steps 2-5 decay linearly
    assert lrs == pytest.approx([1.0, 2.0, 2.0, 1.5, 1.0, 0.5, 0.0])
    again = WarmupLinear(opt, [9.0], 0, 1)
    again.load_state_dict(sched.state_dict())
    assert again.get_last_lr() == sched.get_last_lr()


def test_task_embedding_grows_keeping_rows_and_optimizer_moments(toy):
    tok, tasks, examples = toy
    model = _model(tok, tasks)
    trainer = _trainer(model)
    micro = _micro([[("order", e) for e in examples["order"][:8]]], tok.pad_id)
    trainer.train_step(micro)
    old_rows = model.encoder.embeddings.task_type_embeddings.weight.detach().clone()
    saved = trainer.optimizer.state_dict()
    assert grow_task_embedding(model.encoder, 5, "zeros")
    assert not grow_task_embedding(model.encoder, 4)
    table = model.encoder.embeddings.task_type_embeddings.weight
    assert table.shape == (5, 32) and model.encoder.config.task_type_vocab_size == 5
    assert torch.equal(table[:2], old_rows) and not table[2:].any()
    opt = make_optimizer(model, 1e-3)
    assert remap_optimizer_state(saved, opt) > 0
    name = "encoder.embeddings.task_type_embeddings.weight"
    p = dict(model.named_parameters())[name]
    old_idx = [i for g in saved["param_groups"] for i, n in zip(g["params"], g["names"])
               if n == name][0]
    moments = opt.state[p]["exp_avg"]
    assert moments.shape == (5, 32)
    assert torch.equal(moments[:2], saved["state"][old_idx]["exp_avg"]) and not moments[2:].any()
    # and it trains with a task id from the new rows
    batch = collate(examples["order"][:4], tok.pad_id)
    batch["task_ids"][:] = 4
    losses, _ = model({"order": batch})
    losses["order"].backward()
    assert table.grad[4].abs().sum() > 0 and table.grad[:4].abs().sum() == 0


def test_token_counts_walks_nested_batches(toy):
    tok, _, examples = toy
    a = collate(examples["mlm"][:3], tok.pad_id)
    b = collate(examples["order"][:2], tok.pad_id)
    tokens, padded, rows = token_counts([{"mlm": a, "order": b}])
    assert rows == 5
    assert tokens == int(a["attention_mask"].sum() + b["attention_mask"].sum())
    assert padded == a["input_ids"].numel() + b["input_ids"].numel()


@pytest.mark.slow
def test_compiled_step_matches_eager_on_cpu(toy):
    """train.compile: the same steps under torch.compile (inductor on the CPU) give the same
    losses as eager mode, step after step (so the updates agree too), within float tolerance.
    Both tasks are in every step: a head without examples gets an exact zero gradient in eager
    mode but round-off in compiled code, which Adam's normalization would blow up to a full
    learning-rate step."""
    tok, tasks, examples = toy
    pool = [("mlm", e) for e in examples["mlm"][:24]] + [("order", e) for e in examples["order"][:12]]
    random.Random(0).shuffle(pool)
    eager, compiled = _model(tok, tasks), _model(tok, tasks)
    t_eager, t_compiled = _trainer(eager), _trainer(compiled, compile=True)
    for step in range(3):
        batch = _micro([pool[step * 12:(step + 1) * 12]], tok.pad_id)
        assert set(batch[0]) == {"mlm", "order"}
        re_, rc = t_eager.train_step(batch), t_compiled.train_step(batch)
        for k in re_.losses:
            assert re_.losses[k] == pytest.approx(rc.losses[k], rel=1e-4, abs=1e-5), (step, k)
    worst = max(float((p - q).abs().max()) for p, q in zip(eager.parameters(),
                                                           compiled.parameters()))
    assert worst < 1e-4


def test_layerwise_decay_scales_each_layer_by_its_depth(toy):
    """Hand-worked for 2 layers at decay 0.5: layer 1 x0.5, layer 0 x0.25, the embeddings
    x0.125, the heads x1; Adam's first step moves every coordinate by about its group's lr."""
    tok, tasks, _ = toy
    model = _model(tok, tasks)
    assert model.encoder.config.num_hidden_layers == 2
    scale = layerwise_scales(2, 0.5)
    assert scale("encoder.layers.1.ffn_in.weight") == 0.5
    assert scale("encoder.layers.0.attention.query.bias") == 0.25
    assert scale("encoder.embeddings.word_embeddings.weight") == 0.125
    assert scale("encoder.pooler.dense.weight") == 1.0 and scale("heads.mlm.bias") == 1.0
    with pytest.raises(ValueError, match="layer-wise decay"):
        layerwise_scales(2, 0.0)
    opt = make_optimizer(model, 1e-3, 0.01, lr_scale_of=scale)
    # one group per (decayed or not, scale), the two at scale 1 first; every parameter once
    keys = [(g["weight_decay"] > 0, g["lr_scale"]) for g in opt.param_groups]
    assert keys[:2] == [(True, 1.0), (False, 1.0)] and len(set(keys)) == len(keys)
    assert sorted(n for g in opt.param_groups for n in g["names"]) == sorted(
        n for n, _ in model.named_parameters())
    assert "encoder.layers.0.ffn_in.bias" in no_decay_names(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    for name, expected in (("encoder.layers.1.ffn_in.weight", 5e-4),
                           ("encoder.layers.0.ffn_in.bias", 2.5e-4),
                           ("encoder.embeddings.position_embeddings.weight", 1.25e-4),
                           ("heads.mlm.bias", 1e-3)):
        assert moved[name] == pytest.approx(expected, rel=1e-2), name


def test_encoder_hold_keeps_the_encoder_still_then_gives_it_its_own_schedule(toy):
    """LP-FT: held 3 of 10 steps, the embeddings and layers learn at 0 while the pooler and the
    heads follow the plain warmup (2 steps) and decay; from step 3 the held groups run the same
    shape over the remaining 7 steps. Hand-worked: a held group is at 1/2 of its peak at step 3
    (warmup step 1 of 2), at its peak at steps 4 and 5, then 1 - k/5 at step 5 + k."""
    tok, tasks, _ = toy
    model = _model(tok, tasks)
    hold = encoder_hold(3)
    assert hold("encoder.layers.1.ffn_in.weight") == 3
    assert hold("encoder.embeddings.word_embeddings.weight") == 3
    assert hold("encoder.pooler.dense.weight") == 0 and hold("heads.mlm.bias") == 0
    with pytest.raises(ValueError, match="encoder hold"):
        encoder_hold(-1)
    opt = make_optimizer(model, 1e-3, 0.01, hold_of=hold)
    assert sorted(n for g in opt.param_groups for n in g["names"]) == sorted(
        n for n, _ in model.named_parameters())
    held = [g for g in opt.param_groups if g.get("hold")]
    free = [g for g in opt.param_groups if not g.get("hold")]
    assert held and all(hold(n) == 3 for g in held for n in g["names"])
    assert all(hold(n) == 0 for g in free for n in g["names"])
    sched = WarmupLinear(opt, base_lrs(opt, 1e-3), 2, 10)
    seen = []
    for _ in range(10):
        seen.append((held[0]["lr"], free[0]["lr"]))
        sched.step()
    assert [h for h, _ in seen] == pytest.approx(
        [0.0, 0.0, 0.0, 5e-4, 1e-3, 1e-3, 8e-4, 6e-4, 4e-4, 2e-4])
    assert [f for _, f in seen] == pytest.approx(
        [5e-4, 1e-3, 1e-3, 0.875e-3, 0.75e-3, 0.625e-3, 0.5e-3, 0.375e-3, 0.25e-3, 0.125e-3])
    # the hold is structural (from the groups), so a resumed schedule lands at the same rates
    again = WarmupLinear(opt, base_lrs(opt, 1e-3), 2, 10)
    again.load_state_dict({**sched.state_dict(), "step": 3})
    assert held[0]["lr"] == pytest.approx(5e-4)
    # before the hold ends, Adam steps on real gradients leave the held parameters where they are
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    again.load_state_dict({**sched.state_dict(), "step": 0})
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    for g in opt.param_groups:
        for n, p in zip(g["names"], g["params"]):
            assert torch.equal(p.detach(), before[n]) == bool(g.get("hold")), n
