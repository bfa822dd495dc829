"""An untied masked-LM decoder (`tie_word_embeddings = false`) and the fine-tuning heads'
`pooling` option, each checked by hand."""

import pytest
import torch

from ernie2.finetune import TASK_TYPES, TaskOptions
from ernie2.model import ErnieConfig, ErnieModel
from ernie2.model.heads import MaskedLMHead


def tiny(**kw):
    return ErnieConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kw)


def mlm_grads(config):
    torch.manual_seed(0)
    encoder = ErnieModel(config)
    head = MaskedLMHead(config, encoder.embeddings.word_embeddings)
    ids = torch.randint(5, 50, (2, 7))
    _, encoded = encoder(ids)
    logits = head(encoded, torch.ones_like(ids, dtype=torch.bool))
    torch.nn.functional.cross_entropy(logits, ids.reshape(-1)).backward()
    return encoder, head, ids


def test_tied_decoder_is_the_word_embedding():
    encoder, head, _ = mlm_grads(tiny())
    assert head.decoder is None
    assert head.decoder_weight is encoder.embeddings.word_embeddings.weight
    assert not any(k.startswith("decoder") for k in head.state_dict())


def test_untied_decoder_has_its_own_weight_and_leaves_unseen_rows_alone():
    encoder, head, ids = mlm_grads(tiny(tie_word_embeddings=False))
    emb = encoder.embeddings.word_embeddings.weight
    assert head.decoder_weight is head.decoder.weight
    assert head.decoder.weight.shape == emb.shape
    assert head.decoder.weight.data_ptr() != emb.data_ptr()
    assert "decoder.weight" in head.state_dict()
    # The softmax reaches every decoder row, but an input-embedding row gets a gradient only
    # when its token is read: rows of tokens absent from the batch stay exactly zero (tied,
    # every row moves with the output softmax).
    unseen = sorted(set(range(50)) - set(ids.reshape(-1).tolist()))
    assert unseen
    assert emb.grad[unseen].abs().sum() == 0
    assert head.decoder.weight.grad[unseen].abs().sum() > 0


def test_tied_decoder_moves_unseen_rows():
    encoder, _, ids = mlm_grads(tiny())
    unseen = sorted(set(range(50)) - set(ids.reshape(-1).tolist()))
    assert encoder.embeddings.word_embeddings.weight.grad[unseen].abs().sum() > 0


def test_untied_setting_round_trips_through_config_json(tmp_path):
    tiny(tie_word_embeddings=False).save(tmp_path / "config.json")
    assert ErnieConfig.from_file(tmp_path / "config.json").tie_word_embeddings is False
    assert ErnieConfig.from_dict({"hidden_size": 16, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "vocab_size": 50}).tie_word_embeddings


@pytest.mark.parametrize("how", ["pooler", "cls", "mean", "pair"])
def test_classify_head_reads_what_pooling_says(how):
    torch.manual_seed(0)
    config = tiny()
    task = TASK_TYPES["pair"]
    head = task.make_head(config, 3, TaskOptions(pooling=how)).eval()  # no dropout
    pooled = torch.randn(2, 16)
    encoded = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    # row 0: [CLS] a [SEP] | b [SEP]; row 1: [CLS] a [SEP] | b, then padding
    sent_ids = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 1, 0, 0]])
    out = task.forward(head, pooled, encoded, {"attention_mask": mask,
                                               "sent_ids": sent_ids})["logits"]
    e = encoded
    a = torch.stack([e[0, :3].mean(0), e[1, :2].mean(0)])
    b = torch.stack([e[0, 3], e[1, 2]])
    want = {"pooler": pooled, "cls": e[:, 0],
            "mean": torch.stack([e[0, :4].mean(0), e[1, :3].mean(0)]),
            "pair": torch.cat([a, b, (a - b).abs(), a * b], 1)}[how]
    torch.testing.assert_close(head(want), out)


def test_pair_pooling_without_segment_ids_is_refused():
    from ernie2.model.heads import pool

    with pytest.raises(ValueError, match="sent_ids"):
        pool("pair", None, torch.zeros(1, 3, 4), torch.ones(1, 3))


def test_pretraining_task_with_pair_pooling_trains_a_wider_head(tmp_path):
    from ernie2.tasks.sentence_distance import SentenceDistance

    config = tiny()
    (tmp_path / "vocab.txt").write_text("[PAD]\n[CLS]\n[SEP]\n[MASK]\n[UNK]\na\n")
    task = SentenceDistance(tmp_path / "vocab.txt", pooling="pair")
    head = task.make_head(config, None)
    assert head.classifier.in_features == 4 * config.hidden_size
    encoded = torch.randn(2, 5, 16)
    batch = {"attention_mask": torch.ones(2, 5, dtype=torch.long),
             "sent_ids": torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 1, 1]]),
             "labels": torch.tensor([0, 2])}
    loss, sums = task.compute(head, None, encoded, batch)
    assert loss.ndim == 0 and sums["count"] == 2.0


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="pooling must be one of"):
        TaskOptions(pooling="max")
    with pytest.raises(ValueError, match="pooling must be one of"):
        TaskOptions.from_dict({"pooling": "first"})


def test_fill_mask_reads_an_untied_decoder_back(tmp_path):
    from ernie2.inference.fill_mask import load_mlm

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]",
                                *[chr(0x4e00 + i) for i in range(45)]]) + "\n", encoding="utf-8")
    encoder, head, _ = mlm_grads(tiny(tie_word_embeddings=False))
    encoder.save_pretrained(tmp_path / "model", vocab, extra_tensors={
        f"heads.knowledge_masking.{k}": v for k, v in head.state_dict().items()})
    enc2, head2, _ = load_mlm(tmp_path / "model")
    assert head2.decoder is not None
    torch.testing.assert_close(head2.decoder.weight, head.decoder.weight, rtol=0, atol=0)
    ids = torch.tensor([[1, 7, 3, 9, 2]])
    with torch.no_grad():
        _, encoded = enc2(ids)
        want = torch.nn.functional.linear(
            head2.layer_norm(head2.act(head2.dense(encoded[0]))), head.decoder.weight, head.bias)
        torch.testing.assert_close(head2(encoded), want)
