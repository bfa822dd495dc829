"""encode and fill_mask against Hugging Face transformers on the same directory; predict inputs."""

import numpy as np
import pytest
import torch

from ernie2.finetune import FinetuneModel, Labels, TaskOptions, get_task_type
from ernie2.inference.encode import encode, encode_file, load_encoder_and_tokenizer, write_embeddings
from ernie2.inference.fill_mask import fill_mask, load_mlm
from ernie2.model.batch import module_device
from ernie2.inference.predict import predict
from ernie2.finetune.evaluate import run_model
from ernie2.finetune.readers import TextExample
from ernie2.model import ErnieConfig, ErnieModel, MaskedLMHead
from ernie2.tokenizer import ErnieTokenizer
from ernie2.tokenizer.vocab import SPECIAL_TOKENS

transformers = pytest.importorskip("transformers")

TEXTS = ["今天天气很好", "我们去北京看看长城吧", "好", "人民日报发表新年社论，回顾过去一年"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random tiny checkpoint with a masked-LM head, in our directory format."""
    tmp = tmp_path_factory.mktemp("enc")
    chars = sorted(set("".join(TEXTS)) - {"，"}) + ["，"]
    vocab = tmp / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *chars]) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    cfg = ErnieConfig.from_name("test", vocab_size=len(SPECIAL_TOKENS) + len(chars),
                                hidden_act="gelu")
    model = ErnieModel(cfg)
    head = MaskedLMHead(cfg, model.embeddings.word_embeddings)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.5)
    model.save_pretrained(tmp / "model", vocab,
                          extra_tensors={f"heads.mlm.{k}": v for k, v in head.state_dict().items()})
    return tmp / "model"


def test_encode_matches_transformers_and_restores_input_order(model_dir):
    model, tok = load_encoder_and_tokenizer(model_dir)
    emb = encode(model, tok, TEXTS, batch_size=2)  # length-sorted batches, padded per batch
    hf = transformers.ErnieModel.from_pretrained(model_dir).eval()
    assert emb.cls.shape == (4, 32) and emb.tokens.dtype == np.float32
    for i, text in enumerate(TEXTS):
        ids, sent = tok.encode(text)
        with torch.no_grad():
            ref = hf(torch.from_numpy(ids)[None],
                     token_type_ids=torch.from_numpy(sent)[None]).last_hidden_state[0]
        assert np.allclose(emb.token_embeddings(i), ref.numpy(), atol=1e-5)
        assert np.allclose(emb.cls[i], ref[0].numpy(), atol=1e-5)
    padded, lengths = emb.padded()
    assert lengths.tolist() == [len(t) + 2 for t in TEXTS]
    assert padded.shape == (4, max(lengths), 32) and not padded[2, 3:].any()


def test_encode_pairs_use_sentence_ids(model_dir):
    model, tok = load_encoder_and_tokenizer(model_dir)
    one = encode(model, tok, ["今天", "北京"], ["天气很好", "长城"])
    ids, sent = tok.encode("今天", "天气很好")
    with torch.no_grad():
        _, ref = model(torch.from_numpy(ids)[None], torch.from_numpy(sent)[None])
    assert np.allclose(one.token_embeddings(0), ref[0].numpy(), atol=1e-5)


def test_embedding_files(model_dir, tmp_path):
    data = tmp_path / "data.tsv"
    data.write_text("text_a\tlabel\n" + "".join(f"{t}\t0\n" for t in TEXTS), encoding="utf-8")
    emb = encode_file(model_dir, data, tmp_path / "out", batch_size=3)
    cls = np.load(tmp_path / "out" / "cls_emb.npy")
    tokens = np.load(tmp_path / "out" / "top_layer_emb.npy")
    offsets = np.load(tmp_path / "out" / "top_layer_offsets.npy")
    assert np.array_equal(cls, emb.cls) and np.array_equal(tokens, emb.tokens)
    assert offsets.tolist() == [0, *np.cumsum([len(t) + 2 for t in TEXTS]).tolist()]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "cls_emb.npy", "top_layer_emb.npy", "top_layer_offsets.npy"]
    assert write_embeddings(emb, tmp_path / "again")["tokens"].is_file()


def test_fill_mask_matches_transformers_masked_lm(model_dir):
    hf = transformers.ErnieForMaskedLM.from_pretrained(model_dir).eval()
    tok = ErnieTokenizer.from_pretrained(model_dir)
    text = "我们去[MASK]京看看[MASK]城吧"
    got = fill_mask(model_dir, [text], top_k=3)[0]
    ids = [tok.cls_id] + tok.convert_tokens_to_ids(list("我们去")) + [tok.mask_id] + \
        tok.convert_tokens_to_ids(list("京看看")) + [tok.mask_id] + \
        tok.convert_tokens_to_ids(list("城吧")) + [tok.sep_id]
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0]
    for cands, pos in zip(got.candidates, [4, 8]):
        row = logits[pos].clone()
        row[[tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id]] = -float("inf")
        probs = torch.softmax(row, -1)
        top = probs.topk(3)
        assert [c[0] for c in cands] == tok.convert_ids_to_tokens(top.indices.tolist())
        assert np.allclose([c[1] for c in cands], top.values.numpy(), atol=1e-5)
    assert got.text == f"我们去{got.candidates[0][0][0]}京看看{got.candidates[1][0][0]}城吧"


def test_fill_mask_loads_the_saved_head_and_refuses_bad_input(model_dir, tmp_path):
    encoder, head, _ = load_mlm(model_dir)
    saved = transformers.ErnieForMaskedLM.from_pretrained(model_dir).cls.predictions
    assert torch.equal(head.dense.weight, saved.transform.dense.weight)
    assert torch.equal(head.bias, saved.bias)
    with pytest.raises(ValueError, match=r"text 0 has no \[MASK\]"):
        fill_mask(model_dir, ["没有掩码"])
    ErnieModel.from_pretrained(model_dir).save_pretrained(tmp_path / "bare",
                                                         model_dir / "vocab.txt")
    with pytest.raises(ValueError, match="no masked-LM head"):
        fill_mask(tmp_path / "bare", ["[MASK]"])


def test_predict_accepts_examples_and_keeps_their_order(model_dir, tmp_path):
    task = get_task_type("classify")
    encoder = ErnieModel.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = FinetuneModel(encoder, task, Labels(["neg", "pos"]), TaskOptions(max_len=16))
    model.save(tmp_path / "ft", model_dir / "vocab.txt")
    examples = [TextExample(t) for t in TEXTS]
    preds = predict(tmp_path / "ft", examples, batch_size=3)
    tok = ErnieTokenizer.from_pretrained(model_dir)
    model.eval()
    for ex, p in zip(examples, preds):  # one at a time, no padding, against the batched run
        ids, sent = tok.encode(ex.text_a, max_len=16)
        with torch.no_grad():
            logits = model({"input_ids": torch.from_numpy(ids)[None],
                            "sent_ids": torch.from_numpy(sent)[None]})
        probs = torch.softmax(logits["logits"][0], -1).numpy()
        assert np.allclose([p["probs"]["neg"], p["probs"]["pos"]], probs, atol=1e-5)
        assert p["label"] == ["neg", "pos"][int(probs.argmax())]


def test_saving_over_an_old_model_directory_replaces_it(model_dir, tmp_path):
    task = get_task_type("regress")
    model = FinetuneModel(ErnieModel.from_pretrained(model_dir), task, None, TaskOptions())
    model.save(tmp_path / "ft", model_dir / "vocab.txt")
    (tmp_path / "ft" / "stale.txt").write_text("old")
    with torch.no_grad():
        model.head.classifier.bias.fill_(3.0)
    model.save(tmp_path / "ft", model_dir / "vocab.txt")
    assert not (tmp_path / "ft" / "stale.txt").exists()
    assert FinetuneModel.load(tmp_path / "ft").head.classifier.bias.item() == 3.0
    assert [p.name for p in tmp_path.iterdir()] == ["ft"]  # no temporary left behind
    with pytest.raises(FileNotFoundError, match="not a fine-tuned model directory"):
        FinetuneModel.load(model_dir)


def test_run_model_on_a_module_without_parameters(model_dir):
    """A backend with no torch parameters (an ONNX runner) still runs: CPU is assumed."""
    class Runner(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.__dict__["inner"] = inner.eval()  # hidden from parameters() (and from .eval())
            self.config = inner.config

        def forward(self, *args):
            return self.inner(*args)

    task = get_task_type("classify")
    model = FinetuneModel(ErnieModel.from_pretrained(model_dir), task, Labels(["a", "b"]),
                          TaskOptions())
    tok = ErnieTokenizer.from_pretrained(model_dir)
    feats = task.encode([TextExample(t) for t in TEXTS], tok, None, TaskOptions())
    want = run_model(model, feats)
    model.encoder = Runner(model.encoder)
    assert module_device(model.encoder) == torch.device("cpu")
    assert np.allclose(np.stack(run_model(model, feats)), np.stack(want))


def test_a_saved_classifier_loads_in_transformers_with_the_same_logits(model_dir, tmp_path):
    model = FinetuneModel(ErnieModel.from_pretrained(model_dir), get_task_type("pair"),
                          Labels(["x", "y", "z"]), TaskOptions()).eval()
    model.save(tmp_path / "ft", model_dir / "vocab.txt")
    hf = transformers.ErnieForSequenceClassification.from_pretrained(tmp_path / "ft",
                                                                     num_labels=3).eval()
    tok = ErnieTokenizer.from_pretrained(model_dir)
    enc = tok.pad(tok.encode_batch(["今天天气", "好"], ["北京", "长城吧"]))
    batch = {k: torch.from_numpy(v) for k, v in enc.items()}
    with torch.no_grad():
        ours = model(batch)["logits"]
        theirs = hf(batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["sent_ids"]).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
