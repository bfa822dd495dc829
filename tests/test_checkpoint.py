"""Every checkpoint format, written in its exact layout, loads to the same model; bad files fail clearly."""

import json
import pickle
import struct

import numpy as np
import pytest
import torch

from ernie2 import ErnieModel
from ernie2.cli import main as cli_main
from ernie2.model.checkpoint import read_checkpoint
from ernie2.model.paddle_io import (PaddleFormatError, lodtensor_bytes, read_lodtensor,
                                    write_lodtensor, write_pdparams)

transformers = pytest.importorskip("transformers")

PADDLE_CONFIG = {"attention_probs_dropout_prob": 0.1, "hidden_act": "relu",
                 "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02,
                 "max_position_embeddings": 64, "num_attention_heads": 4,
                 "num_hidden_layers": 3, "sent_type_vocab_size": 4, "type_vocab_size": 2,
                 "vocab_size": 99, "intermediate_size": 37}


LAYERS = PADDLE_CONFIG["num_hidden_layers"]


def paddle_names(scheme: str) -> dict[str, str]:
    """transformers' ErnieForPreTraining parameter names -> their names in a Paddle checkpoint
    ("static": params/ files; "dygraph": the ERNIE repo's saved_weights.pdparams; "paddlenlp":
    model_state.pdparams), written out by hand from those formats, not from ernie2's table."""
    assert scheme in ("static", "dygraph", "paddlenlp"), scheme
    st, dy = scheme == "static", scheme == "dygraph"

    def linear(hf, static, dygraph, paddlenlp):
        name = static if st else dygraph if dy else paddlenlp
        return {f"{hf}.weight": name + (".w_0" if st else ".weight"),
                f"{hf}.bias": name + (".b_0" if st else ".bias")}

    def norm(hf, static, dygraph, paddlenlp):
        name = static if st else dygraph if dy else paddlenlp
        return {f"{hf}.weight": name + ("_scale" if st else ".weight"),
                f"{hf}.bias": name + ("_bias" if st else ".bias")}

    e = "ernie.embeddings."
    names = {
        e + "word_embeddings.weight": "word_embedding" if st else "word_emb.weight" if dy
        else e + "word_embeddings.weight",
        e + "position_embeddings.weight": "pos_embedding" if st else "pos_emb.weight" if dy
        else e + "position_embeddings.weight",
        e + "token_type_embeddings.weight": "sent_embedding" if st else "sent_emb.weight" if dy
        else e + "token_type_embeddings.weight",
        e + "task_type_embeddings.weight": "task_embedding" if st else "task_emb.weight" if dy
        else e + "task_type_embeddings.weight",
        **norm(e + "LayerNorm", "pre_encoder_layer_norm", "ln", e + "layer_norm"),
        **linear("ernie.pooler.dense", "pooled_fc", "pooler", "ernie.pooler.dense"),
        **linear("cls.predictions.transform.dense", "mask_lm_trans_fc", "mlm",
                 "cls.predictions.transform"),
        **norm("cls.predictions.transform.LayerNorm", "mask_lm_trans_layer_norm", "mlm_ln",
               "cls.predictions.layer_norm"),
        "cls.predictions.bias": "mask_lm_out_fc.b_0" if st else "mlm_bias" if dy
        else "cls.predictions.decoder_bias",
        **linear("cls.seq_relationship", "next_sent_fc", "pooler_heads.0.nsp",
                 "cls.seq_relationship"),
    }
    for i in range(LAYERS):
        hf, sp, dp, np_ = (f"ernie.encoder.layer.{i}.", f"encoder_layer_{i}_",
                           f"encoder_stack.block.{i}.", f"ernie.encoder.layers.{i}.")
        for part, dy_short, nlp_short in (("query", "q", "q_proj"), ("key", "k", "k_proj"),
                                          ("value", "v", "v_proj")):
            names.update(linear(f"{hf}attention.self.{part}", f"{sp}multi_head_att_{part}_fc",
                                f"{dp}attn.{dy_short}", f"{np_}self_attn.{nlp_short}"))
        names.update(linear(f"{hf}attention.output.dense", f"{sp}multi_head_att_output_fc",
                            f"{dp}attn.o", f"{np_}self_attn.out_proj"))
        names.update(norm(f"{hf}attention.output.LayerNorm", f"{sp}post_att_layer_norm",
                          f"{dp}ln1", f"{np_}norm1"))
        names.update(linear(f"{hf}intermediate.dense", f"{sp}ffn_fc_0", f"{dp}ffn.i",
                            f"{np_}linear1"))
        names.update(linear(f"{hf}output.dense", f"{sp}ffn_fc_1", f"{dp}ffn.o", f"{np_}linear2"))
        names.update(norm(f"{hf}output.LayerNorm", f"{sp}post_ffn_layer_norm", f"{dp}ln2",
                          f"{np_}norm2"))
    return names


# Tensors of transformers' model a Paddle checkpoint does not hold: the MLM decoder is tied to
# the word embedding, position ids are a buffer.
NOT_IN_PADDLE = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
                 "ernie.embeddings.position_ids"}


@pytest.fixture(scope="module")
def reference():
    """A transformers ErnieForPreTraining with random weights (MLM and NSP heads), and its
    tensors by transformers' names."""
    torch.manual_seed(7)
    cfg = transformers.ErnieConfig(vocab_size=99, hidden_size=32, num_hidden_layers=LAYERS,
                                   num_attention_heads=4, intermediate_size=37,
                                   max_position_embeddings=64, type_vocab_size=4,
                                   use_task_id=True, task_type_vocab_size=3,
                                   layer_norm_eps=1e-5, hidden_act="relu")
    model = transformers.ErnieForPreTraining(cfg).eval()
    for p in model.parameters():  # make every tensor distinctive, biases included
        p.data.add_(torch.randn_like(p) * 0.05)
    tensors = {k: v.clone() for k, v in model.state_dict().items() if k not in NOT_IN_PADDLE}
    missing = set(tensors) - set(paddle_names("static"))
    assert not missing, f"no Paddle name written for {sorted(missing)}"
    return model, tensors


def batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 99, (2, 9), generator=g)
    ids[1, 6:] = 0
    sent = torch.zeros_like(ids)
    sent[:, 4:] = 1
    task = torch.randint(0, 3, (2, 9), generator=g)
    return ids, sent, task, (ids != 0).long()


def write_paddle(tensors, scheme, with_task=True):
    """Rename transformers' tensors to `scheme` and transpose Linear weights to Paddle's
    [in, out] (embedding tables stay [rows, hidden])."""
    names = paddle_names(scheme)
    out = {}
    for hf, t in tensors.items():
        if not with_task and "task_type" in hf:
            continue
        a = t.numpy()
        if a.ndim == 2 and ".embeddings." not in hf:
            a = a.T
        out[names[hf]] = np.ascontiguousarray(a)
    return out


def expected_outputs(model, with_task=True):
    ids, sent, task, mask = batch()
    with torch.no_grad():
        out = model.ernie(input_ids=ids, token_type_ids=sent, attention_mask=mask,
                          task_type_ids=task if with_task else torch.zeros_like(task))
    return out


def check_against(ours, reference_model, with_task=True):
    ids, sent, task, mask = batch()
    want = expected_outputs(reference_model, with_task)
    with torch.no_grad():
        pooled, encoded = ours.eval()(ids, sent, task if with_task else None, mask)
    valid = mask.bool()
    torch.testing.assert_close(encoded[valid], want.last_hidden_state[valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled, want.pooler_output, atol=1e-5, rtol=0)


def make_static(tmp_path, canon, with_task=True):
    d = tmp_path / "ernie_static"
    (d / "params").mkdir(parents=True)
    for name, arr in write_paddle(canon, "static", with_task).items():
        write_lodtensor(d / "params" / name, arr)
    cfg = dict(PADDLE_CONFIG)
    if with_task:
        cfg["task_type_vocab_size"] = 3  # 2.0 configs: no use_task_id key; the weights tell
    (d / "ernie_config.json").write_text(json.dumps(cfg))
    (d / "vocab.txt").write_text("".join(f"tok{i}\t{i}\n" for i in range(99)))
    return d


@pytest.mark.parametrize("with_task", [True, False])
def test_paddle_static_params_dir(tmp_path, reference, with_task):
    model, canon = reference
    d = make_static(tmp_path, canon, with_task)
    ckpt = read_checkpoint(d)
    assert ckpt.fmt == "static" and ckpt.config.use_task_id == with_task
    assert ckpt.config.type_vocab_size == 4  # sent_type_vocab_size wins
    ours = ErnieModel.from_pretrained(d)
    if with_task:
        check_against(ours, model)
    else:
        assert ours.embeddings.task_type_embeddings is None
    # heads come through with the weights
    torch.testing.assert_close(ckpt.heads("mlm")["dense.weight"],
                               model.cls.predictions.transform.dense.weight)
    torch.testing.assert_close(ckpt.heads("nsp")["classifier.weight"],
                               model.cls.seq_relationship.weight)


@pytest.mark.parametrize("scheme,weights,config_name", [
    ("dygraph", "saved_weights.pdparams", "ernie_config.json"),
    ("paddlenlp", "model_state.pdparams", "model_config.json"),
])
def test_paddle_dygraph_pdparams(tmp_path, reference, scheme, weights, config_name):
    model, canon = reference
    with_task = scheme == "paddlenlp"  # the ERNIE repo's dygraph model has no task embedding
    write_pdparams(tmp_path / weights, write_paddle(canon, scheme, with_task))
    cfg = dict(PADDLE_CONFIG, use_task_id=with_task, task_type_vocab_size=3)
    if scheme == "paddlenlp":
        cfg = {"init_args": [cfg], "init_class": "ErnieModel"}
    (tmp_path / config_name).write_text(json.dumps(cfg))
    ours = ErnieModel.from_pretrained(tmp_path)
    if with_task:
        check_against(ours, model)
    else:
        torch.testing.assert_close(ours.layers[2].ffn_out.weight,
                                   model.ernie.encoder.layer[2].output.dense.weight)
        torch.testing.assert_close(ours.pooler.dense.weight, model.ernie.pooler.dense.weight)
    # the .pdparams file itself can be given
    again = ErnieModel.from_pretrained(tmp_path / weights)
    assert torch.equal(again.embeddings.word_embeddings.weight,
                       ours.embeddings.word_embeddings.weight)


def test_hf_pytorch_model_bin_and_convert_cli(tmp_path, reference, capsys):
    model, _ = reference
    # the nghuyong conversions' layout: config.json + a pytorch_model.bin state dict
    model.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "hf" / "pytorch_model.bin")
    check_against(ErnieModel.from_pretrained(tmp_path / "hf"), model)
    (tmp_path / "hf" / "vocab.txt").write_text("".join(f"t{i}\n" for i in range(99)))
    assert cli_main(["convert", str(tmp_path / "hf"), str(tmp_path / "ours")]) == 0
    assert "mlm, nsp" in capsys.readouterr().out
    converted = ErnieModel.from_pretrained(tmp_path / "ours")
    check_against(converted, model)
    assert (tmp_path / "ours" / "vocab.txt").read_text().startswith("t0\n")
    # the converted directory, heads included, loads into transformers' pre-training model
    back = transformers.ErnieForPreTraining.from_pretrained(tmp_path / "ours").eval()
    ids, sent, task, mask = batch()
    with torch.no_grad():
        a = back(input_ids=ids, token_type_ids=sent, task_type_ids=task, attention_mask=mask)
        b = model(input_ids=ids, token_type_ids=sent, task_type_ids=task, attention_mask=mask)
    torch.testing.assert_close(a.prediction_logits, b.prediction_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.seq_relationship_logits, b.seq_relationship_logits,
                               atol=1e-5, rtol=0)


def test_static_layer_truncation_and_task_growth(tmp_path, reference):
    model, canon = reference
    d = make_static(tmp_path, canon)
    short = ErnieModel.from_pretrained(d, num_hidden_layers=1)
    assert len(short.layers) == 1
    torch.testing.assert_close(short.layers[0].attention.query.weight,
                               model.ernie.encoder.layer[0].attention.self.query.weight)
    grown = ErnieModel.from_pretrained(d, task_type_vocab_size=5)
    rows = grown.embeddings.task_type_embeddings.weight
    assert rows.shape[0] == 5
    torch.testing.assert_close(rows[:3], model.ernie.embeddings.task_type_embeddings.weight)


# ---------------------------------------------------------------------- LoDTensor details
def test_lodtensor_layout_by_hand(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    desc = bytes([0x08, 5, 0x10, 2, 0x10, 3])  # data_type=FP32, dims=[2, 3]
    by_hand = struct.pack("<IQIi", 0, 0, 0, len(desc)) + desc + arr.tobytes()
    assert lodtensor_bytes(arr) == by_hand
    (tmp_path / "w").write_bytes(by_hand)
    np.testing.assert_array_equal(read_lodtensor(tmp_path / "w"), arr)
    # a LoD level before the tensor and packed dims are read too
    lod = struct.pack("<QQ", 1, 16) + struct.pack("<QQ", 0, 2)
    packed = bytes([0x08, 3, 0x12, 2, 2, 1])  # INT64, packed dims [2, 1]
    ints = np.array([[5], [-7]], dtype=np.int64)
    (tmp_path / "x").write_bytes(struct.pack("<I", 0) + lod + struct.pack("<Ii", 0, len(packed))
                                 + packed + ints.tobytes())
    np.testing.assert_array_equal(read_lodtensor(tmp_path / "x"), ints)


# ---------------------------------------------------------------------- bad files
def test_truncated_lodtensor_names_the_file(tmp_path, reference):
    _, canon = reference
    d = make_static(tmp_path, canon)
    target = d / "params" / "encoder_layer_1_ffn_fc_0.w_0"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(PaddleFormatError, match="encoder_layer_1_ffn_fc_0.w_0.*truncated"):
        ErnieModel.from_pretrained(d)


def test_corrupt_safetensors(tmp_path):
    ErnieModel(__import__("ernie2").ErnieConfig.from_name("test", vocab_size=20)).save_pretrained(
        tmp_path)
    blob = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(b"\xff\xff" + blob[2:200])
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors"):
        ErnieModel.from_pretrained(tmp_path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "ernie_config.json").write_text(json.dumps(PADDLE_CONFIG))
    with open(tmp_path / "saved_weights.pdparams", "wb") as fh:
        pickle.dump({"word_emb.weight": _Evil(str(marker))}, fh, protocol=2)
    with pytest.raises(PaddleFormatError, match=r"refused to unpickle (io|builtins)\.open"):
        ErnieModel.from_pretrained(tmp_path)
    assert not marker.exists()
    # and a torch file with code in it is refused by weights_only loading
    with open(tmp_path / "evil.bin", "wb") as fh:
        pickle.dump({"x": _Evil(str(marker))}, fh)
    with pytest.raises(ValueError, match="evil.bin: not a readable PyTorch"):
        ErnieModel.from_pretrained(tmp_path / "evil.bin")
    assert not marker.exists()


def test_unknown_missing_and_misshaped_are_named(tmp_path, reference):
    _, canon = reference
    tensors = write_paddle(canon, "dygraph", with_task=False)
    tensors["encoder_stack.block.0.attn.mystery.weight"] = np.zeros(3, np.float32)
    write_pdparams(tmp_path / "saved_weights.pdparams", tensors)
    (tmp_path / "ernie_config.json").write_text(json.dumps(PADDLE_CONFIG))
    with pytest.raises(ValueError, match="attn.mystery.weight"):
        ErnieModel.from_pretrained(tmp_path)
    del tensors["encoder_stack.block.0.attn.mystery.weight"]
    del tensors["encoder_stack.block.1.ln1.bias"]
    tensors["encoder_stack.block.2.ffn.i.weight"] = np.zeros((32, 36), np.float32)
    write_pdparams(tmp_path / "saved_weights.pdparams", tensors)
    with pytest.raises(ValueError) as err:
        ErnieModel.from_pretrained(tmp_path)
    msg = str(err.value)
    assert "missing: layers.1.attention_norm.bias" in msg
    assert "layers.2.ffn_in.weight (checkpoint (36, 32), model (37, 32))" in msg


def test_missing_weights_and_config_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="found no weights"):
        ErnieModel.from_pretrained(tmp_path)
    write_pdparams(tmp_path / "saved_weights.pdparams", {"word_emb.weight": np.zeros((2, 2))})
    with pytest.raises(FileNotFoundError, match="no config file"):
        ErnieModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        ErnieModel.from_pretrained(tmp_path / "no-such-dir")
