"""Every registered task on both demo corpora (valid examples, finite loss and gradients), bad
input, custom tasks, and the example stream (seeds, shards, resume, held-out split)."""

from __future__ import annotations

import json
import math
import random
import textwrap
from functools import cache
from itertools import islice

import pytest
import torch

from demo_data import build_small_demo, demo_small, doc_of, make_tokenizer  # noqa: F401
from ernie2.cli import main
from ernie2.corpus.document import Document, Sentence
from ernie2.model.config import ErnieConfig
from ernie2.model.heads import IGNORE_INDEX
from ernie2.model.modeling import ErnieModel
from ernie2.tasks import (REGISTRY, Example, ExampleStream, collate, create_task, iter_batches,
                          stream_examples)
from ernie2.tasks.heads import pool
from ernie2.tasks.protocol import member
from ernie2.tasks.stream import MAX_EMPTY_PASSES
from ernie2.tokenizer import ErnieTokenizer

TASKS = sorted(REGISTRY)
MAX_LEN = 64
N_EXAMPLES = 24


@cache
def _tokenizer(root: str, lang: str) -> ErnieTokenizer:
    return ErnieTokenizer(f"{root}/vocab_{lang}.txt")


@cache
def _examples(root: str, name: str, lang: str):
    tok = _tokenizer(root, lang)
    task = create_task(name, tokenizer=tok, max_len=MAX_LEN, task_id=1 + TASKS.index(name))
    stream = stream_examples(task, f"{root}/corpus_{lang}.jsonl", seed=3)
    return task, list(islice(stream, N_EXAMPLES))


def _applies(name: str, lang: str) -> bool:
    return lang not in member(REGISTRY[name], "skip_languages")


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("name", TASKS)
def test_examples_are_valid_on_the_demo_corpora(demo_small, name, lang):  # noqa: F811
    if not _applies(name, lang):
        tok = _tokenizer(str(demo_small), lang)
        stream = stream_examples(create_task(name, tokenizer=tok, max_len=MAX_LEN),
                                 demo_small / f"corpus_{lang}.jsonl")
        with pytest.raises(ValueError, match="built no example.*(uncased|other)_language"):
            next(iter(stream))
        return
    task, examples = _examples(str(demo_small), name, lang)
    tok = _tokenizer(str(demo_small), lang)
    assert len(examples) == N_EXAMPLES
    assert task.kind in ("token", "sequence") and task.num_classes >= 2
    for ex in examples:
        assert ex.task == name and ex.task_id == 1 + TASKS.index(name)
        assert 3 <= len(ex.input_ids) <= MAX_LEN and len(ex.sent_ids) == len(ex.input_ids)
        assert all(0 <= i < tok.vocab_size for i in ex.input_ids)
        assert ex.input_ids[0] == tok.cls_id and ex.input_ids[-1] == tok.sep_id
        assert set(ex.sent_ids) <= {0, 1} and ex.sent_ids[0] == 0
        if task.kind == "token":
            assert len(ex.labels) == len(ex.input_ids)
            scored = [lab for lab in ex.labels if lab != IGNORE_INDEX]
            assert scored and all(0 <= lab < task.num_classes for lab in scored)
            assert all(lab == IGNORE_INDEX for i, lab in zip(ex.input_ids, ex.labels)
                       if i in (tok.cls_id, tok.sep_id))
        else:
            assert isinstance(ex.labels, int) and 0 <= ex.labels < task.num_classes


@pytest.mark.parametrize("name, lang", [(n, lg) for n in TASKS for lg in ("zh", "en")
                                        if _applies(n, lg)])
def test_head_and_compute_give_finite_loss_and_gradients(demo_small, name, lang):  # noqa: F811
    task, examples = _examples(str(demo_small), name, lang)
    tok = _tokenizer(str(demo_small), lang)
    torch.manual_seed(0)
    config = ErnieConfig.from_name("test", vocab_size=tok.vocab_size, use_task_id=True,
                                   task_type_vocab_size=16)
    model = ErnieModel(config)
    head = task.make_head(config, model)
    batch = collate(examples[:8], tok.pad_id)
    pooled, encoded = model(batch["input_ids"], batch["sent_ids"], batch["task_ids"],
                            batch["attention_mask"])
    loss, sums = task.compute(head, pooled, encoded, batch)
    assert loss.dim() == 0 and math.isfinite(loss.item())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    assert model.layers[0].ffn_in.weight.grad.abs().sum() > 0  # the encoder learns too
    expected = (batch["labels"] != IGNORE_INDEX).sum().item() if task.kind == "token" \
        else len(batch["labels"])
    assert sums["count"] == expected and 0 <= sums["correct"] <= sums["count"]
    assert abs(sums["loss_sum"] / sums["count"] - loss.item()) < 1e-4
    if member(task, "vocab_sized"):  # MLM heads decode with the encoder's embedding
        assert model.embeddings.word_embeddings.weight.grad is not None


def test_compute_with_nothing_labeled_is_zero_and_differentiable():
    tok = make_tokenizer(["a", "b"])
    config = ErnieConfig.from_name("test", vocab_size=tok.vocab_size)
    model = ErnieModel(config)
    token_tasks = [t for t in (create_task(n, tokenizer=tok, max_len=16) for n in TASKS)
                   if t.kind == "token"]
    assert len(token_tasks) >= 2  # a masked LM and a per-token classifier at least
    for task in token_tasks:
        head = task.make_head(config, model)
        batch = {"input_ids": torch.tensor([[1, 5, 2]]), "labels": torch.full((1, 3), -100)}
        pooled, encoded = model(batch["input_ids"])
        loss, sums = task.compute(head, pooled, encoded, batch)
        loss.backward()
        assert loss.item() == 0 and sums["count"] == 0


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", TASKS)
def test_empty_and_one_sentence_documents(name):
    tok = make_tokenizer(["one", "sentence", "only"])
    task = create_task(name, tokenizer=tok, max_len=32)
    assert task.build(Document([]), random.Random(0)) is None
    assert task.build(Document([[]]), random.Random(0)) is None
    assert sum(v for k, v in task.stats.items() if k.startswith("skipped_")) == 2
    one = doc_of("One sentence only.", title="One sentence", source="x")
    built = [task.build(one, random.Random(s)) for s in range(20)]
    skipped = sum(v for k, v in task.stats.items() if k.startswith("skipped_"))
    if member(task, "min_sentences") > 1 or one.lang in member(task, "skip_languages"):
        assert built == [None] * 20 and skipped == 22
    elif getattr(task, "reservoir", None) is None:  # needs nothing but this sentence
        assert all(ex is not None for ex in built)
    else:  # draws on other documents, none seen yet: what it cannot build is counted
        assert skipped == 2 + built.count(None)


def test_ir_relevance_on_a_lone_one_sentence_document_gives_strong_pairs_only():
    tok = make_tokenizer(["one", "sentence", "only"])
    task = create_task("ir_relevance", tokenizer=tok, max_len=32)
    one = doc_of("One sentence only.", title="One sentence", source="x")
    built = [task.build(one, random.Random(s)) for s in range(20)]
    # one sentence is enough for its own title (0), but weak/irrelevant need other documents
    assert {ex.labels for ex in built if ex is not None} == {0}
    assert task.stats["skipped_no_related_document"] > 0


# ---------------------------------------------------------------------------- custom tasks
CUSTOM = '''
import random
from ernie2.tasks import Example
from ernie2.tasks.heads import sequence_compute, sequence_head

class LengthParity:
    kind = "sequence"
    num_classes = 2
    description = "is the first sentence's token count even"

    def __init__(self, tokenizer=None, max_len=128, task_id=0, offset=0):
        self.tok, self.max_len, self.task_id, self.name = tokenizer, max_len, task_id, "parity"
        self.offset = offset

    def build(self, doc, rng):
        ids, sent = self.tok.encode(doc.sentences[0].text, max_len=self.max_len)
        return Example(self.name, ids.tolist(), sent.tolist(),
                       (len(ids) + self.offset) % 2, self.task_id)

    def make_head(self, config, encoder):
        return sequence_head(config, self.num_classes)

    def compute(self, head, pooled, encoded, batch):
        return sequence_compute(head, pooled, batch)
'''


def test_custom_task_from_a_user_file_and_module(tmp_path, monkeypatch, capsys):
    path = tmp_path / "my_tasks.py"
    path.write_text(textwrap.dedent(CUSTOM), encoding="utf-8")
    tok = make_tokenizer(["a", "b", "c"])
    task = create_task(f"{path}:LengthParity", tokenizer=tok, max_len=16, task_id=9, offset=1)
    ex = task.build(doc_of("a b c."), random.Random(0))
    assert (ex.labels, ex.task_id, ex.task) == ((6 + 1) % 2, 9, "parity")
    config = ErnieConfig.from_name("test", vocab_size=tok.vocab_size)
    model = ErnieModel(config)
    batch = collate([ex, ex])
    loss, _ = task.compute(task.make_head(config, model), *model(batch["input_ids"]), batch)
    assert math.isfinite(loss.item())
    monkeypatch.syspath_prepend(str(tmp_path))
    assert create_task("my_tasks:LengthParity", tokenizer=tok).name == "parity"
    with pytest.raises(KeyError, match="unknown task 'nonesuch'"):
        create_task("nonesuch", tokenizer=tok)
    assert main(["tasks", f"{path}:LengthParity"]) == 0
    out = capsys.readouterr().out
    assert "is the first sentence's token count even" in out


def test_cli_lists_every_task(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[1:]}
    assert set(rows) == set(REGISTRY)
    assert rows["sentence_reordering"] == ["sequence", "9"]
    assert rows["knowledge_masking"] == ["token", "vocab"]
    assert rows["sentence_distance"] == ["sequence", "3"]


# ----------------------------------------------------------------------------- streams
class DocIndex:
    """A probe task: its label is the number in the document's title."""

    kind, num_classes, name, max_len = "sequence", 1000, "doc_index", 128

    def build(self, doc, rng):
        from ernie2.tasks import Example
        return Example(self.name, [1, 2], [0, 0], int(doc.title), 0)


@pytest.fixture()
def numbered_corpus(tmp_path):
    path = tmp_path / "docs.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(40):
            fh.write(json.dumps({"title": str(i), "paragraphs": [
                f"Document {i} begins here. It goes on. Then it ends.", "A second paragraph."]})
                + "\n")
    return path


def _take(stream, n):
    return [(e.input_ids, e.sent_ids, e.labels) for e in islice(stream, n)]


def test_same_seed_same_examples(numbered_corpus):
    tok = make_tokenizer(["document", "begins", "here", "it", "goes", "on", "then", "ends", "a",
                          "second", "paragraph"] + [str(i) for i in range(40)])
    runs = [_take(stream_examples(create_task("knowledge_masking", tokenizer=tok, max_len=32),
                                  numbered_corpus, seed=s), 100) for s in (1, 1, 2)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_shards_partition_documents_and_epochs_repeat(numbered_corpus):
    seen = {}
    for rank in range(3):
        stream = ExampleStream(DocIndex(), numbered_corpus, rank=rank, world_size=3, epochs=2)
        seen[rank] = [e.labels for e in stream]
        assert stream.epoch == 2
    one_epoch = {r: set(v) for r, v in seen.items()}
    assert set().union(*one_epoch.values()) == set(range(40))
    assert sum(len(v) for v in one_epoch.values()) == 40
    assert all(i % 3 == r for r, v in one_epoch.items() for i in v)
    assert all(len(v) == 2 * len(one_epoch[r]) for r, v in seen.items())
    with pytest.raises(ValueError, match="rank 3 is not in 0..2"):
        ExampleStream(DocIndex(), numbered_corpus, rank=3, world_size=3)


def test_heldout_split_never_shares_a_document(numbered_corpus):
    train = {e.labels for e in ExampleStream(DocIndex(), numbered_corpus, heldout=0.25,
                                             epochs=1)}
    held = {e.labels for e in ExampleStream(DocIndex(), numbered_corpus, heldout=0.25,
                                            split="eval", epochs=1)}
    assert held and train and not train & held and train | held == set(range(40))


@pytest.mark.parametrize("name", ["knowledge_masking", "sentence_distance", "ir_relevance"])
def test_stream_resumes_exactly_from_its_state(demo_small, name):  # noqa: F811
    tok = _tokenizer(str(demo_small), "en")
    corpus = {"path": str(demo_small / "corpus_en.jsonl")}

    def fresh(state=None):
        return ExampleStream(create_task(name, tokenizer=tok, max_len=MAX_LEN), corpus, seed=5,
                             state=state)

    stream = fresh()
    it = iter(stream)
    _take(it, 45)
    state = json.loads(json.dumps(stream.state_dict()))  # JSON-able
    expected = _take(it, 30)
    assert _take(fresh(state), 30) == expected
    with pytest.raises(ValueError, match="stream state is for task"):
        ExampleStream(create_task("mlm", tokenizer=tok), corpus, state=state)


def test_iter_batches_pads_examples(numbered_corpus):
    tok = make_tokenizer(["document", "begins", "here", "it"] + [str(i) for i in range(40)])
    stream = stream_examples(create_task("sentence_reordering", tokenizer=tok, max_len=32),
                             numbered_corpus, epochs=1)
    batches = list(iter_batches(stream, 16, tok.pad_id))
    assert [b["input_ids"].shape[0] for b in batches][:-1] == [16] * (len(batches) - 1)
    assert all(b["labels"].shape == (b["input_ids"].shape[0],) for b in batches)
    assert stream.stats["examples"] == sum(b["input_ids"].shape[0] for b in batches)


def test_pretokenized_lines_only_feed_the_tasks_that_can_use_them(tmp_path):
    tok = make_tokenizer([f"t{i}" for i in range(30)])
    line = Document([[Sentence("", token_ids=list(range(5, 15)), seg_labels=[0] * 10),
                      Sentence("", token_ids=[20, 21], seg_labels=[0, 1])]],
                    meta={"next_sentence_label": 1, "mask_word_prob": 0.5})
    for name in TASKS:
        ex = create_task(name, tokenizer=tok, max_len=32).build(line, random.Random(0))
        assert (ex is not None) == (name in ("knowledge_masking", "mlm", "next_sentence")), name


def test_build_small_demo_is_cached(demo_small):  # noqa: F811
    stamp = (demo_small / "demo.json").stat().st_mtime_ns
    assert build_small_demo(demo_small.parent) == demo_small
    assert (demo_small / "demo.json").stat().st_mtime_ns == stamp


# ------------------------------------------------------------------ sentence-level pooling
SEQUENCE_TASKS = [n for n in TASKS if getattr(REGISTRY[n], "kind", None) == "sequence"]


def test_pooling_reads_pooler_cls_or_the_mean_of_real_tokens():
    torch.manual_seed(0)
    encoded = torch.randn(2, 4, 3)
    pooled = torch.randn(2, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert pool("pooler", pooled, encoded, mask) is pooled
    assert torch.equal(pool("cls", pooled, encoded, mask), encoded[:, 0])
    # hand-worked: the mean of the real (unpadded) positions only
    want = torch.stack([encoded[0, :3].sum(0) / 3, encoded[1, :2].sum(0) / 2])
    torch.testing.assert_close(pool("mean", pooled, encoded, mask), want)
    with pytest.raises(ValueError, match="needs an encoder with a pooler"):
        pool("pooler", None, encoded, mask)


@pytest.mark.parametrize("name", SEQUENCE_TASKS)
def test_sequence_tasks_take_a_pooling_option(name):
    tok = make_tokenizer(["a", "b", "c"])
    assert create_task(name, tokenizer=tok).pooling == "pooler"
    with pytest.raises(ValueError, match="pooling must be one of pooler, cls, mean, pair, got 'max'"):
        create_task(name, tokenizer=tok, pooling="max")
    task = create_task(name, tokenizer=tok, pooling="cls")
    config = ErnieConfig.from_name("test", vocab_size=tok.vocab_size)
    model = ErnieModel(config)
    head = task.make_head(config, model)
    model.eval(), head.eval()  # no dropout: the loss is compared with one computed here
    ids = torch.tensor([[tok.cls_id, 5, tok.sep_id, 6, tok.sep_id]] * 2)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "labels": torch.tensor([0, 1])}
    pooled, encoded = model(ids)
    loss, _ = task.compute(head, pooled, encoded, batch)
    want = torch.nn.functional.cross_entropy(head(encoded[:, 0]), batch["labels"])
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert model.pooler.dense.weight.grad is None  # the pooler is not in the path


class FirstPassOnly:
    """Builds one example per document in the first pass only (as a task on a few documents may
    draw none by chance in a pass), or never."""

    name = "first_pass_only"
    max_len = 16

    def __init__(self, never: bool = False):
        self.never, self.calls = never, 0

    def build(self, doc, rng):
        self.calls += 1
        if self.never or self.calls > 2:
            return None
        return Example(self.name, [1, 5, 2], [0, 0, 0], 0, 0)


def test_a_stream_survives_empty_passes_after_it_built_examples(tmp_path):
    path = tmp_path / "two.jsonl"
    doc = json.dumps({"title": "t", "paragraphs": [[{"text": "a b c ."}]]})
    path.write_text(f"{doc}\n{doc}\n", encoding="utf-8")
    stream = iter(stream_examples(FirstPassOnly(), path, epochs=MAX_EMPTY_PASSES))
    # two examples from the first pass, then MAX_EMPTY_PASSES - 1 empty passes: no error
    assert len(list(stream)) == 2
    endless = iter(stream_examples(FirstPassOnly(), path))
    assert len(list(islice(endless, 2))) == 2
    with pytest.raises(ValueError, match=f"built no example in {MAX_EMPTY_PASSES} whole pass"):
        next(endless)
    never = iter(stream_examples(FirstPassOnly(never=True), path))
    with pytest.raises(ValueError, match=f"no example in 1 whole pass.*{path.name}"):
        next(never)


def test_accuracy_counts_the_first_maximum_as_the_prediction():
    """Hand-worked: row 0 ties everywhere (prediction: class 0), row 1 ties classes 1 and 3
    (prediction: 1), row 2 has one maximum at 2; labels 0, 3, 2 -> 2 of 3 correct."""
    from ernie2.tasks.heads import _scored

    logits = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 5.0, 0.0, 5.0], [0.0, 1.0, 9.0, 2.0]])
    labels = torch.tensor([0, 3, 2])
    _, stats = _scored(logits, labels, logits)
    assert float(stats["correct"]) == 2.0 and stats["count"] == 3.0
    assert float(stats["correct"]) == float((logits.argmax(-1) == labels).sum())
