"""The finetune, predict, encode and fill-mask commands on a tiny model: --help, output files."""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from ernie2.cli import build_parser, main
from ernie2.cli.finetune import settings_from_args
from ernie2.finetune import FinetuneModel, samples
from ernie2.inference.encode import encode, load_encoder_and_tokenizer
from ernie2.inference.fill_mask import load_mlm
from ernie2.inference.predict import predict
from ernie2.finetune.readers import read_ner_tsv, read_text_tsv
from ernie2.model import ErnieConfig, ErnieModel, MaskedLMHead
from ernie2.tokenizer import ErnieTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

# fp32, no progress bar, no TensorBoard, no peak-FLOPs measurement
FAST = ["--precision", "fp32", "--no_progress", "--tensorboard", "off", "--peak_tflops", "1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Sentiment and NER samples, and a random 2-layer model over their characters that
    carries a masked-LM head the way pre-training saves it (under its task's name, with the
    task id in pretraining.json)."""
    tmp = tmp_path_factory.mktemp("cli")
    cls_data = samples.sentiment(tmp / "cls", sizes=(64, 16, 16))
    ner_data = samples.ner(tmp / "ner", sizes=(48, 12, 12), column_file=True)
    vocab = samples.write_char_vocab([*samples.all_texts(cls_data), *samples.all_texts(ner_data),
                                      "百度是一家公司"], tmp / "vocab.txt")
    tok = ErnieTokenizer(vocab)
    torch.manual_seed(0)
    cfg = ErnieConfig.from_name("test", vocab_size=tok.vocab_size, use_task_id=True,
                                task_type_vocab_size=3, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0)
    model = ErnieModel(cfg)
    with torch.no_grad():
        model.embeddings.task_type_embeddings.weight.normal_(0, 1.0)
    head = MaskedLMHead(cfg, model.embeddings.word_embeddings)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.5)
    pre = tmp / "pretrained"
    model.save_pretrained(pre, vocab, extra_tensors={f"heads.knowledge_masking.{k}": v
                                                     for k, v in head.state_dict().items()})
    (pre / "pretraining.json").write_text(json.dumps(
        {"tasks": {"knowledge_masking": {"task_id": 1, "spec": "knowledge_masking"}}}))
    return {"cls": cls_data, "ner": ner_data, "pre": pre, "tmp": tmp}


@pytest.fixture(scope="module")
def finetuned_cls(tiny):
    out = tiny["tmp"] / "cls_out"
    code = main(["finetune", "--task", "classify", "--data_dir", str(tiny["cls"]),
                 "--from_pretrained", str(tiny["pre"]), "--output_dir", str(out), "--bsz", "16",
                 "--micro_bsz", "4", "--lr", "1e-3", "--epochs", "2", "--max_len", "48",
                 "--num_layers", "1", "--log_every", "2", *FAST])
    assert code == 0
    return out


@pytest.mark.parametrize("command", ["finetune", "predict", "encode", "fill-mask"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: ernie2 {command}")
    assert ("--task" if command == "finetune" else "--model") in text


def test_finetune_command_writes_the_run_and_truncates_layers(finetuned_cls, tiny, capsys):
    out = finetuned_cls
    model = FinetuneModel.load(out / "best")
    assert len(model.encoder.layers) == 1 and model.config.num_hidden_layers == 1
    assert json.loads((out / "best" / "config.json").read_text())["num_hidden_layers"] == 1
    assert json.loads((out / "label_map.json").read_text()) == {"0": 0, "1": 1}
    rows = (out / "test_out.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "index\tlabel\tprob_0\tprob_1"
    assert len(rows) == 1 + len(read_text_tsv(tiny["cls"] / "test.tsv"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 8 and [d["step"] for d in metrics["dev"]] == [4, 8]
    assert metrics["settings"]["micro_batch_size"] == 4
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "dev"}
    assert (out / "metrics.csv").read_text().startswith("step,stage,split,task,loss")


def test_num_layers_keeps_the_checkpoints_first_layer(finetuned_cls, tiny):
    # A few small steps move the kept layer a little: it stays near the checkpoint's layer 0,
    # far from its layer 1 (every layer starts from a different random draw).
    kept = FinetuneModel.load(finetuned_cls / "best").encoder.layers[0].ffn_in.weight
    full = ErnieModel.from_pretrained(tiny["pre"])
    near = (kept - full.layers[0].ffn_in.weight).norm()
    far = (kept - full.layers[1].ffn_in.weight).norm()
    assert near < 0.5 * far


def test_preset_values_and_flag_overrides():
    parser = build_parser()
    args = parser.parse_args(["finetune", "--preset", "chnsenticorp", "--data_dir", "d",
                              "--from_pretrained", "m", "--lr", "1e-3", "--micro_bsz", "8",
                              "--no-for_cn", "--max_seqlen", "64", "--layerwise_decay", "0.8",
                              "--head_only_proportion", "0.3"])
    s = settings_from_args(args)
    assert s.layerwise_decay == 0.8 and s.head_only_proportion == 0.3
    # The ChnSentiCorp row: batch 24, 10 epochs, weight decay 0.01; flags override the rest.
    assert (s.task, s.batch_size, s.epochs, s.weight_decay) == ("classify", 24, 10, 0.01)
    assert (s.learning_rate, s.micro_batch_size) == (1e-3, 8)
    assert (s.options.max_len, s.options.for_cn) == (64, False)
    large = settings_from_args(parser.parse_args(
        ["finetune", "--preset", "MSRA-NER", "--size", "large", "--data_dir", "d",
         "--from_pretrained", "m", "--crf"]))
    assert (large.task, large.learning_rate, large.options.crf) == ("ner", 1e-5, True)
    with pytest.raises(ValueError, match="is a ner task, not classify"):
        settings_from_args(parser.parse_args(["finetune", "--preset", "MSRA-NER", "--task",
                                              "classify", "--data_dir", "d",
                                              "--from_pretrained", "m"]))


def test_finetune_command_reports_bad_input(tiny, tmp_path, capsys):
    code = main(["finetune", "--data_dir", str(tiny["cls"]), "--from_pretrained",
                 str(tiny["pre"])])
    assert code == 1 and "give --task" in capsys.readouterr().err
    code = main(["finetune", "--task", "ner", "--data_dir", str(tiny["cls"]),
                 "--from_pretrained", str(tiny["pre"]), "--output_dir", str(tmp_path), *FAST])
    assert code == 1
    assert re.search(r"train\.tsv:\d+: \d+ tokens but 1 labels", capsys.readouterr().err)


def test_predict_command_tsv_json_and_jsonl_inputs(finetuned_cls, tiny, tmp_path, capsys):
    best = finetuned_cls / "best"
    test = tiny["cls"] / "test.tsv"
    assert main(["predict", "--model", str(best), "--input", str(test), "--output",
                 str(tmp_path / "out.tsv")]) == 0
    assert (tmp_path / "out.tsv").read_text() == (finetuned_cls / "test_out.tsv").read_text()
    assert main(["predict", "--model", str(best), "--input", str(test), "--output",
                 str(tmp_path / "out.json")]) == 0
    preds = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    want = predict(best, test)
    assert [p["label"] for p in preds] == [p["label"] for p in want]
    assert all(abs(sum(p["probs"].values()) - 1) < 1e-5 for p in preds)
    # New data as JSON lines of plain texts.
    texts = [ex.text_a for ex in read_text_tsv(test)][:5]
    (tmp_path / "new.jsonl").write_text("".join(json.dumps(t, ensure_ascii=False) + "\n"
                                                for t in texts), encoding="utf-8")
    assert main(["predict", "--model", str(best), "--input", str(tmp_path / "new.jsonl"),
                 "--output", str(tmp_path / "new.jsonl.out.jsonl")]) == 0
    lines = (tmp_path / "new.jsonl.out.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(l)["label"] for l in lines] == [p["label"] for p in want[:5]]
    (tmp_path / "bad.jsonl").write_text('"好"\n["a", "b"]\n', encoding="utf-8")
    assert main(["predict", "--model", str(best), "--input", str(tmp_path / "bad.jsonl"),
                 "--output", str(tmp_path / "x.json")]) == 1
    assert "bad.jsonl:2: task type classify takes one text" in capsys.readouterr().err


def test_ner_fine_tune_and_predict_tags(tiny, tmp_path):
    out = tmp_path / "ner_out"
    assert main(["finetune", "--task", "ner", "--data_dir", str(tiny["ner"]),
                 "--from_pretrained", str(tiny["pre"]), "--output_dir", str(out), "--bsz", "16",
                 "--max_steps", "3", "--lr", "1e-3", "--max_len", "64", "--crf", *FAST]) == 0
    back = read_ner_tsv(out / "test_out.tsv")
    assert len(back) == 12
    new = tmp_path / "new.jsonl"
    new.write_text('"新华社北京电"\n["人民", "日报"]\n', encoding="utf-8")
    assert main(["predict", "--model", str(out / "best"), "--input", str(new),
                 "--output", str(tmp_path / "tags.json")]) == 0
    preds = json.loads((tmp_path / "tags.json").read_text(encoding="utf-8"))
    assert preds[0]["tokens"] == list("新华社北京电") and len(preds[0]["tags"]) == 6
    assert preds[1]["tokens"] == ["人民", "日报"] and len(preds[1]["tags"]) == 2
    labels = set(FinetuneModel.read_meta(out / "best")["labels"])
    assert {t for p in preds for t in p["tags"]} <= labels


def test_mrc_predict_writes_spans(tiny, tmp_path):
    data = samples.reading(tmp_path / "mrc", sizes=(16, 4, 4), max_context=120)
    # The tiny vocab lacks some of these characters: they read as [UNK], spans stay exact.
    out = tmp_path / "mrc_out"
    assert main(["finetune", "--task", "mrc", "--data_dir", str(data), "--from_pretrained",
                 str(tiny["pre"]), "--output_dir", str(out), "--bsz", "8", "--max_steps", "2",
                 "--max_len", "64", "--stride", "32", "--max_answer_len", "8", *FAST]) == 0
    assert main(["predict", "--model", str(out / "best"), "--input", str(data / "test.json"),
                 "--output", str(tmp_path / "answers.tsv")]) == 0
    rows = (tmp_path / "answers.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "id\tanswer\tstart\tend\tprobability" and len(rows) == 5
    spans = json.loads((tmp_path / "answers_predictions.json").read_text(encoding="utf-8"))
    contexts = {qa["id"]: p["context"] for d in json.loads((data / "test.json").read_text())["data"]
                for p in d["paragraphs"] for qa in p["qas"]}
    for row in rows[1:]:
        qid, answer, start, end, prob = row.split("\t")
        assert contexts[qid][int(start):int(end)] == answer == spans[qid]
        assert 0 < float(prob) <= 1


def test_encode_command_writes_the_three_arrays(tiny, tmp_path, capsys):
    texts = ["百度是一家公司", "人民日报", "新华社北京电"]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert main(["encode", "--model", str(tiny["pre"]), "--input", str(tmp_path / "texts.txt"),
                 "--output", str(tmp_path / "emb"), "--task_id", "1"]) == 0
    assert "3 texts" in capsys.readouterr().out
    cls = np.load(tmp_path / "emb" / "cls_emb.npy")
    tokens = np.load(tmp_path / "emb" / "top_layer_emb.npy")
    offsets = np.load(tmp_path / "emb" / "top_layer_offsets.npy")
    assert offsets.tolist() == np.cumsum([0] + [len(t) + 2 for t in texts]).tolist()
    model, tok = load_encoder_and_tokenizer(tiny["pre"])
    ref = encode(model, tok, texts, task_id=1)
    assert np.allclose(cls, ref.cls) and np.allclose(tokens, ref.tokens)
    assert not np.allclose(cls, encode(model, tok, texts, task_id=0).cls)  # --task_id is used
    (tmp_path / "gap.txt").write_text("a\n\nb\n", encoding="utf-8")
    assert main(["encode", "--model", str(tiny["pre"]), "--input", str(tmp_path / "gap.txt"),
                 "--output", str(tmp_path / "e2")]) == 1
    assert "gap.txt:2: empty line" in capsys.readouterr().err


def test_fill_mask_command_uses_the_pretraining_head_and_task_id(tiny, tmp_path, capsys):
    text = "百度是一家[MASK]公司"
    assert main(["fill-mask", "--model", str(tiny["pre"]), "--top_k", "3", "--output",
                 str(tmp_path / "fill.json"), text]) == 0
    printed = capsys.readouterr().out
    got = json.loads((tmp_path / "fill.json").read_text(encoding="utf-8"))
    masks = got[0]["masks"]
    assert len(masks) == 1 and len(masks[0]) == 3
    best = masks[0][0]
    assert f"{best['token']} {best['probability']:.4f}" in printed
    # Independent reference: the encoder with task id 1 (pretraining.json), the head's logits
    # over the vocabulary without the special tokens.
    encoder, head, tok = load_mlm(tiny["pre"])
    assert head.task_id == 1
    ids = [tok.cls_id, *tok.convert_tokens_to_ids(list("百度是一家")), tok.mask_id,
           *tok.convert_tokens_to_ids(list("公司")), tok.sep_id]
    with torch.no_grad():
        _, enc = encoder(torch.tensor([ids]), task_ids=torch.tensor([1]))
        logits = head(enc[:, 6:7])[0].double()
    logits[[tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id]] = -float("inf")
    probs = torch.softmax(logits, -1)
    top = probs.topk(3)
    assert [m["token"] for m in masks[0]] == tok.convert_ids_to_tokens(top.indices.tolist())
    assert np.allclose([m["probability"] for m in masks[0]], top.values.numpy(), atol=1e-5)
    assert got[0]["filled"] == text.replace("[MASK]", masks[0][0]["token"])


def test_fill_mask_command_errors(tiny, capsys):
    assert main(["fill-mask", "--model", str(tiny["pre"]), "no mask here"]) == 1
    assert "has no [MASK]" in capsys.readouterr().err
    assert main(["fill-mask", "--model", str(tiny["pre"]), "--head", "mlm", "a[MASK]"]) == 1
    assert "no head 'mlm' (heads: knowledge_masking)" in capsys.readouterr().err


def test_encoder_dropout_flags_override_the_checkpoints_config(tiny):
    # The checkpoint was saved with dropout 0.0 (as the demos pre-train); fine-tuning sets it.
    from ernie2.finetune.run import start_model

    args = build_parser().parse_args(
        ["finetune", "--task", "classify", "--data_dir", "d", "--from_pretrained",
         str(tiny["pre"]), "--hidden_dropout", "0.1", "--attention_dropout", "0.05"])
    s = settings_from_args(args)
    assert (s.hidden_dropout_prob, s.attention_probs_dropout_prob) == (0.1, 0.05)
    for init in ("pretrained", "random"):
        model, _ = start_model(dataclasses.replace(s, init=init))
        cfg = model.config
        assert (cfg.hidden_dropout_prob, cfg.attention_probs_dropout_prob) == (0.1, 0.05)
        model.train()
        x = torch.randint(5, cfg.vocab_size, (2, 12))
        assert not torch.equal(model(x)[0], model(x)[0])  # dropout is on
    kept, _ = start_model(dataclasses.replace(s, hidden_dropout_prob=None,
                                              attention_probs_dropout_prob=None))
    assert kept.config.hidden_dropout_prob == 0.0
    with pytest.raises(ValueError, match="hidden_dropout_prob: expected a probability"):
        dataclasses.replace(s, hidden_dropout_prob=1.5)
