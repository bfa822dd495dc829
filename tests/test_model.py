"""Encoder parity with transformers' ErnieModel, heads, hidden states and config handling."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from ernie2 import ErnieConfig, ErnieModel
from ernie2.model import MaskedLMHead, SequenceHead, SpanHead, TokenHead

transformers = pytest.importorskip("transformers")


def hf_config(**kw):
    base = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=64, type_vocab_size=4,
                layer_norm_eps=1e-5)
    return transformers.ErnieConfig(**{**base, **kw})


def pair_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 99, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 10:] = 0
    ids[mask == 0] = 0
    sent = torch.zeros_like(ids)
    sent[:, 6:] = 1
    sent[mask == 0] = 0
    task = torch.randint(0, 3, (3, 12), generator=g)
    return ids, sent, task, mask


@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("use_task_id", [True, False])
def test_parity_with_transformers_both_ways(tmp_path, act, use_task_id):
    torch.manual_seed(1)
    ref = transformers.ErnieModel(hf_config(hidden_act=act, use_task_id=use_task_id)).eval()
    ref.save_pretrained(tmp_path / "hf")
    ours = ErnieModel.from_pretrained(tmp_path / "hf").eval()
    assert ours.config.use_task_id == use_task_id
    ids, sent, task, mask = pair_batch()
    kwargs = dict(task_type_ids=task) if use_task_id else {}
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=sent, **kwargs)
        pooled, encoded = ours(ids, sent, task if use_task_id else None, mask)
    valid = mask.bool()
    torch.testing.assert_close(encoded[valid], want.last_hidden_state[valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled, want.pooler_output, atol=1e-5, rtol=0)

    # our save loads into transformers with the same outputs
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.ErnieModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        again = back(input_ids=ids, attention_mask=mask, token_type_ids=sent, **kwargs)
    torch.testing.assert_close(again.last_hidden_state[valid], encoded[valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(again.pooler_output, pooled, atol=1e-5, rtol=0)


def test_hidden_states_match_transformers(tmp_path):
    torch.manual_seed(2)
    ref = transformers.ErnieModel(hf_config()).eval()
    ref.save_pretrained(tmp_path)
    ours = ErnieModel.from_pretrained(tmp_path).eval()
    ids, sent, _, mask = pair_batch(3)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=sent,
                   output_hidden_states=True).hidden_states
        _, encoded, hidden = ours(ids, sent, attention_mask=mask, output_hidden_states=True)
    assert len(hidden) == len(want) == 3
    for a, b in zip(hidden, want):
        torch.testing.assert_close(a[mask.bool()], b[mask.bool()], atol=1e-5, rtol=0)
    assert torch.equal(hidden[-1], encoded)


def test_default_mask_is_non_pad_tokens():
    torch.manual_seed(0)
    model = ErnieModel(ErnieConfig.from_name("test", vocab_size=50)).eval()
    ids = torch.tensor([[1, 7, 8, 2, 0, 0]])
    with torch.no_grad():
        _, implicit = model(ids)
        _, explicit = model(ids, attention_mask=(ids != 0).long())
        _, short = model(ids[:, :4])
    torch.testing.assert_close(implicit, explicit)
    torch.testing.assert_close(implicit[:, :4], short, atol=1e-6, rtol=0)


def test_task_ids_per_example_equal_per_token():
    torch.manual_seed(0)
    model = ErnieModel(ErnieConfig.from_name("test", vocab_size=50, use_task_id=True)).eval()
    ids = torch.randint(4, 50, (2, 5))
    per_example = torch.tensor([1, 2])
    with torch.no_grad():
        a = model(ids, task_ids=per_example)[1]
        b = model(ids, task_ids=per_example[:, None].expand(2, 5))[1]
        c = model(ids, task_ids=torch.tensor(0))[1]
        d = model(ids)[1]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(c, d)
    assert not torch.allclose(a, d)


def test_masked_lm_head_matches_transformers_at_masked_positions(tmp_path):
    torch.manual_seed(3)
    ref = transformers.ErnieForMaskedLM(hf_config()).eval()
    ref.save_pretrained(tmp_path)
    from ernie2.model.checkpoint import assign, load_pretrained
    encoder, ckpt = load_pretrained(ErnieModel, tmp_path)
    head = MaskedLMHead(encoder.config, encoder.embeddings.word_embeddings)
    assign(head, ckpt.heads("mlm"), "mlm")
    ids, sent, _, mask = pair_batch(4)
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, 3] = positions[2, 5] = positions[1, 1] = True
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=sent).logits[positions]
        _, encoded = encoder.eval()(ids, sent, attention_mask=mask)
        got = head(encoded, positions)
        by_index = head(encoded, positions.reshape(-1).nonzero().squeeze(1))
    assert got.shape == (3, 99)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(by_index, got)
    # the decoder is the word embedding itself, not a copy
    assert head.decoder_weight.data_ptr() == encoder.embeddings.word_embeddings.weight.data_ptr()
    assert "decoder" not in dict(head.named_parameters())


def test_other_heads_shapes():
    h, b, t = 32, 2, 7
    pooled, encoded = torch.randn(b, h), torch.randn(b, t, h)
    assert SequenceHead(h, 3)(pooled).shape == (b, 3)
    assert SequenceHead(h, 1)(pooled).shape == (b, 1)
    assert TokenHead(h, 5)(encoded).shape == (b, t, 5)
    start, end = SpanHead(h)(encoded)
    assert start.shape == end.shape == (b, t)


def test_layer_truncation_keeps_first_layers(tmp_path):
    torch.manual_seed(4)
    full = ErnieModel(ErnieConfig.from_name("test", vocab_size=60, num_hidden_layers=4)).eval()
    full.save_pretrained(tmp_path)
    short = ErnieModel.from_pretrained(tmp_path, num_hidden_layers=2).eval()
    assert len(short.layers) == 2
    ids = torch.randint(4, 60, (2, 6))
    with torch.no_grad():
        _, _, hidden = full(ids, output_hidden_states=True)
        _, encoded = short(ids)
    torch.testing.assert_close(encoded, hidden[2])
    with pytest.raises(ValueError, match="asked for 6 layers"):
        ErnieModel.from_pretrained(tmp_path, num_hidden_layers=6)
    with pytest.raises(TypeError, match="unknown config override"):
        ErnieModel.from_pretrained(tmp_path, no_such_key=1)


def test_sequence_longer_than_positions_is_a_clear_error():
    model = ErnieModel(ErnieConfig.from_name("test", vocab_size=50))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.ones(1, 65, dtype=torch.long))


# ---------------------------------------------------------------------- config
def test_paddle_config_keys_and_precedence(tmp_path):
    raw = {"attention_probs_dropout_prob": 0.1, "hidden_act": "relu", "hidden_dropout_prob": 0.1,
           "hidden_size": 768, "initializer_range": 0.02, "max_position_embeddings": 513,
           "num_attention_heads": 12, "num_hidden_layers": 12, "type_vocab_size": 2,
           "sent_type_vocab_size": 4, "vocab_size": 18000, "task_type_vocab_size": 16,
           "use_task_id": True}
    (tmp_path / "ernie_config.json").write_text(json.dumps(raw))
    c = ErnieConfig.from_file(tmp_path / "ernie_config.json")
    assert (c.type_vocab_size, c.task_type_vocab_size, c.use_task_id) == (4, 16, True)
    assert c.intermediate_size == 3072 and c.layer_norm_eps == 1e-5
    assert c.max_position_embeddings == 513 and c.hidden_act == "relu"
    # released 2.0 en configs have no use_task_id: it defaults off
    del raw["use_task_id"]
    assert not ErnieConfig.from_dict(raw).use_task_id


def test_paddlenlp_nested_config():
    nested = {"init_args": [{"vocab_size": 18000, "hidden_size": 768, "num_hidden_layers": 12,
                             "num_attention_heads": 12, "intermediate_size": 3072,
                             "hidden_act": "relu", "type_vocab_size": 2,
                             "max_position_embeddings": 513, "pad_token_id": 0}],
              "init_class": "ErnieModel"}
    c = ErnieConfig.from_dict(nested)
    assert c.vocab_size == 18000 and c.num_hidden_layers == 12 and c.intermediate_size == 3072
    outer = {"init_args": [nested, 2], "init_class": "ErnieForSequenceClassification"}
    assert ErnieConfig.from_dict(outer).vocab_size == 18000


def test_hf_config_round_trip(tmp_path):
    c = ErnieConfig.from_name("base", vocab_size=30522, hidden_act="gelu", use_task_id=True,
                              task_type_vocab_size=3, type_vocab_size=4)
    c.save(tmp_path / "config.json")
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["model_type"] == "ernie" and raw["layer_norm_eps"] == 1e-5
    assert ErnieConfig.from_file(tmp_path / "config.json") == c
    hf = transformers.ErnieConfig.from_pretrained(tmp_path)
    assert (hf.num_hidden_layers, hf.hidden_size, hf.use_task_id) == (12, 768, True)


def test_named_sizes():
    assert ErnieConfig.from_name("ernie-tiny").num_hidden_layers == 3
    assert ErnieConfig.from_name("ernie-tiny").hidden_size == 1024
    assert ErnieConfig.from_name("large").num_attention_heads == 16
    assert ErnieConfig.from_name("base").num_hidden_layers == 12
    with pytest.raises(KeyError, match="known"):
        ErnieConfig.from_name("huge")


@pytest.mark.parametrize("bad,msg", [
    ({"hidden_size": 30, "num_attention_heads": 4}, "multiple"),
    ({"hidden_act": "swish"}, "hidden_act"),
    ({"emb_size": 128}, "emb_size"),
])
def test_bad_configs(bad, msg):
    raw = {"vocab_size": 10, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4}
    with pytest.raises(ValueError, match=msg):
        ErnieConfig.from_dict({**raw, **bad}, source="x.json")


def test_sinusoidal_position_init_is_the_transformer_table_scaled():
    # Worked independently: feature 2i of position p is sin(p / 10000^(2i/d)), 2i+1 its cos.
    d = 8
    c = ErnieConfig(vocab_size=10, hidden_size=d, num_hidden_layers=1, num_attention_heads=2,
                    max_position_embeddings=16, position_init="sinusoidal",
                    position_init_std=0.1)
    table = ErnieModel(c).embeddings.position_embeddings.weight.detach().double()
    ref = np.array([[np.sin(p / 10000 ** (i / d)) if i % 2 == 0 else
                     np.cos(p / 10000 ** ((i - 1) / d)) for i in range(d)] for p in range(16)])
    ref *= 0.1 / ref.std(ddof=1)
    np.testing.assert_allclose(table.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert abs(table.std().item() - 0.1) < 1e-6
    # The default stays BERT's: every embedding N(0, initializer_range).
    normal = ErnieModel(dataclasses.replace(c, position_init="normal"))
    assert abs(normal.embeddings.position_embeddings.weight.std().item() - 0.02) < 0.01
    with pytest.raises(ValueError, match="position_init 'rope' is not one of normal"):
        dataclasses.replace(c, position_init="rope")


def test_sinusoidal_init_round_trips_and_loaded_weights_win(tmp_path):
    c = ErnieConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                    max_position_embeddings=16, position_init="sinusoidal")
    c.save(tmp_path / "config.json")
    assert ErnieConfig.from_file(tmp_path / "config.json") == c
    torch.manual_seed(0)
    m = ErnieModel(dataclasses.replace(c, position_init="normal"))
    (tmp_path / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(10)) + "\n")
    m.save_pretrained(tmp_path / "m", tmp_path / "vocab.txt")
    # the checkpoint's config says normal; asked for sinusoidal, the saved table still loads
    loaded = ErnieModel.from_pretrained(tmp_path / "m", position_init="sinusoidal")
    assert torch.equal(loaded.embeddings.position_embeddings.weight,
                       m.embeddings.position_embeddings.weight)


def test_mimetic_attention_init_factors_the_asked_products():
    from ernie2.model.modeling import ErnieSelfAttention, mimetic_attention_

    h = 16
    one = ErnieConfig(vocab_size=10, hidden_size=h, num_hidden_layers=1, num_attention_heads=1)
    att = ErnieSelfAttention(one)
    torch.manual_seed(3)
    mimetic_attention_(att, 0.7, 0.4)
    torch.manual_seed(3)  # the same two draws, made here by hand
    z1, z2 = torch.randn(h, h) / h ** 0.5, torch.randn(h, h) / h ** 0.5
    eye = torch.eye(h)
    with torch.no_grad():
        # score(x, y) = (W_q x) . (W_k y) = x^T W_q^T W_k y
        torch.testing.assert_close(att.query.weight.T @ att.key.weight, 0.7 * (z1 + eye),
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(att.output.weight @ att.value.weight, 0.4 * (z2 - eye),
                                   atol=1e-5, rtol=1e-5)
    # Several heads: each head's product is the best rank-head_dim approximation of its target
    # (Eckart-Young: the residual's norm is that of the dropped singular values).
    four = dataclasses.replace(one, num_attention_heads=4)
    att = ErnieSelfAttention(four)
    value = att.value.weight.detach().clone()
    torch.manual_seed(5)
    mimetic_attention_(att, 0.7, 0.0)
    torch.manual_seed(5)
    with torch.no_grad():
        for i in range(4):
            target = 0.7 * (torch.randn(h, h) / h ** 0.5 + eye)
            rows = slice(4 * i, 4 * i + 4)
            got = att.query.weight[rows].T @ att.key.weight[rows]
            assert torch.linalg.matrix_rank(got) == 4
            dropped = torch.linalg.svdvals(target)[4:]
            assert abs(torch.linalg.norm(target - got) - torch.linalg.norm(dropped)) < 1e-4
    # vo = 0 leaves the value path as it was
    assert torch.equal(att.value.weight, value)


def test_mimetic_init_makes_fresh_heads_attend_near_the_token():
    # With the sin/cos position table, a fresh mimetic layer puts several times the uniform
    # share of its attention on the token and its two neighbours each side; the normal init
    # attends almost uniformly.
    c = ErnieConfig(vocab_size=50, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                    max_position_embeddings=64, position_init="sinusoidal")
    t = 40
    near = (torch.arange(t)[:, None] - torch.arange(t)[None, :]).abs() <= 2
    share = {}
    for init in ("normal", "mimetic"):
        torch.manual_seed(0)
        m = ErnieModel(dataclasses.replace(c, attention_init=init)).eval()
        ids = torch.randint(5, 50, (4, t))
        att = m.layers[0].attention
        with torch.no_grad():
            x = m.embeddings(ids)
            q = att.query(x).view(4, t, 2, 32).transpose(1, 2)
            k = att.key(x).view(4, t, 2, 32).transpose(1, 2)
            probs = (q @ k.transpose(-1, -2) / 32 ** 0.5).softmax(-1)
        share[init] = probs[..., near].sum().item() / probs.sum().item()
    uniform = near.float().mean().item()
    assert share["normal"] < 1.2 * uniform
    assert share["mimetic"] > 4 * uniform


def test_attention_init_is_checked_and_round_trips(tmp_path):
    c = ErnieConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                    attention_init="mimetic", mimetic_qk=0.5, mimetic_vo=0.0)
    c.save(tmp_path / "config.json")
    assert ErnieConfig.from_file(tmp_path / "config.json") == c
    with pytest.raises(ValueError, match="attention_init 'identity' is not one of normal"):
        dataclasses.replace(c, attention_init="identity")
    with pytest.raises(ValueError, match="mimetic_qk must be >= 0"):
        dataclasses.replace(c, mimetic_qk=-1.0)
    torch.manual_seed(0)
    m = ErnieModel(dataclasses.replace(c, attention_init="normal"))
    (tmp_path / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(10)) + "\n")
    m.save_pretrained(tmp_path / "m", tmp_path / "vocab.txt")
    loaded = ErnieModel.from_pretrained(tmp_path / "m", attention_init="mimetic")
    assert torch.equal(loaded.layers[0].attention.query.weight, m.layers[0].attention.query.weight)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_both_attention_kernels_match_transformers(tmp_path, impl):
    """Either way of computing attention is the reference model's function (fp32, padded rows,
    gradients too)."""
    torch.manual_seed(2)
    ref = transformers.ErnieModel(hf_config()).eval()
    ref.save_pretrained(tmp_path / "hf")
    ours = ErnieModel.from_pretrained(tmp_path / "hf").eval()
    ours.attention = impl
    assert ours.attention == impl
    ids, sent, _, mask = pair_batch(3)
    valid = mask.bool()
    want = ref(input_ids=ids, attention_mask=mask, token_type_ids=sent).last_hidden_state
    _, got = ours(ids, sent, None, mask)
    torch.testing.assert_close(got[valid], want[valid], atol=1e-5, rtol=0)
    want[valid].square().sum().backward()
    got[valid].square().sum().backward()
    ref_grad = ref.encoder.layer[0].attention.self.query.weight.grad
    torch.testing.assert_close(ours.layers[0].attention.query.weight.grad, ref_grad,
                               atol=1e-4, rtol=1e-4)


def test_eager_attention_under_bf16_autocast_is_close_to_fp32_sdpa():
    from ernie2.model.modeling import eager_attention
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 16, generator=g) for _ in range(3))
    mask = torch.ones(2, 1, 1, 10, dtype=torch.bool)
    mask[1, ..., 6:] = False
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(eager_attention(q, k, v, mask), want, atol=1e-5, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = eager_attention(q, k, v, mask)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), want, atol=3e-2, rtol=0)
    # masked keys get no weight at all
    v2 = v.clone()
    v2[1, :, 6:] = 1e4
    torch.testing.assert_close(eager_attention(q, k, v2, mask)[1], want[1], atol=1e-5, rtol=0)


def test_attention_auto_takes_eager_only_for_short_bf16_cpu_sequences(monkeypatch):
    from ernie2.model import modeling
    x = torch.zeros(2, 96, 8)
    monkeypatch.setattr(modeling, "_NATIVE_BF16", True)
    assert not modeling._eager_wanted(x)  # fp32: SDPA
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert modeling._eager_wanted(x)
        assert not modeling._eager_wanted(torch.zeros(2, modeling.EAGER_MAX_LEN + 1, 8))
        monkeypatch.setattr(modeling, "_NATIVE_BF16", False)  # AVX2: bf16 products are slow
        assert not modeling._eager_wanted(x)
    model = ErnieModel(ErnieConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=20))
    assert model.attention == "auto"
    with pytest.raises(ValueError, match="attention must be one of auto, sdpa, eager"):
        model.attention = "flash"
