"""Readers of labeled fine-tuning data: TSV by column name, NER (TSV or column-wise), SQuAD JSON.

Every error names the file, the line (or the JSON path for SQuAD) and what was expected.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ernie2.utils import atomic_write_text, plural

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad input data; the message names the file and line."""


class InputError(ValueError):
    """A bad input; `too_large` says it broke a size limit rather than the expected shape."""

    def __init__(self, message: str, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


def check_text(text: Any, what: str, max_chars: int | None = None,
               allow_empty: bool = False) -> str:
    """`text` if it is a non-empty string that UTF-8 can encode (JSON may smuggle in unpaired
    surrogates as \\ud800 escapes) within `max_chars`; an InputError naming `what` otherwise."""
    if not isinstance(text, str):
        raise InputError(f"{what}: expected a string, got {kind_of(text)}")
    if not allow_empty and not text.strip():
        raise InputError(f"{what}: empty text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{what}: character {exc.start} is an unpaired surrogate "
                         f"({text[exc.start]!r}), not text") from None
    if max_chars is not None and len(text) > max_chars:
        raise InputError(f"{what}: {len(text)} characters, more than the limit of {max_chars}",
                         too_large=True)
    return text


def kind_of(x: Any) -> str:
    """What a decoded JSON value is, in words: 'an object', 'a list', 'a number'..."""
    return {dict: "an object", list: "a list", tuple: "a list", str: "a string",
            bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(x), f"a value of type {type(x).__name__}")


@dataclass
class TextExample:
    """One row of a classification, pair, regression or ranking TSV."""

    text_a: str
    text_b: str | None = None
    label: str | float | None = None
    qid: str | None = None
    source: str = ""  # "file:line"


@dataclass
class TaggedExample:
    """One sentence for sequence labeling: tokens and (when known) one label per token."""

    tokens: list[str]
    labels: list[str] | None = None
    source: str = ""


@dataclass
class Answer:
    text: str
    start: int  # character offset in the context


@dataclass
class MrcExample:
    qid: str
    question: str
    context: str
    answers: list[Answer] = field(default_factory=list)
    source: str = ""


# ---------------------------------------------------------------------- text clean-up
_CJK_CHAR = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
_CJK_SPACE = re.compile(rf"(?<={_CJK_CHAR})\s+|\s+(?={_CJK_CHAR})")


def strip_cjk_spaces(text: str) -> str:
    """`--for_cn`: drop whitespace next to a Chinese character or full-width punctuation, so
    "我 爱 NLP 和 deep learning" becomes "我爱NLP和deep learning" (spaces between two
    Latin words stay)."""
    return _CJK_SPACE.sub("", text).strip()


# ---------------------------------------------------------------------- TSV
def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            for lineno, line in enumerate(fh, 1):
                yield lineno, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_tsv_rows(path: str | os.PathLike, required: Sequence[str],
                  optional: Sequence[str] = ()) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield ("file:line", {column: value}) for each data row of a TSV with a header row.

    Columns are matched by name; other columns are allowed and ignored. Blank lines carry
    nothing and are skipped.
    """
    path = Path(path)
    lines = _lines(path)
    header = None
    for lineno, line in lines:  # noqa: B007  (lineno names the header row below)
        if line.strip():
            header = [h.strip() for h in line.split("\t")]
            break
    if header is None:
        raise DataError(f"{path}: empty file (expected a header row naming the columns "
                        f"{', '.join(required)})")
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}:{lineno}: header has no column {', '.join(map(repr, missing))}"
                        f" (found: {', '.join(header)}); expected a header row naming the "
                        f"columns {', '.join(required)}")
    wanted = {c: header.index(c) for c in (*required, *optional) if c in header}
    for lineno, line in lines:
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            expected = plural(len(header), "tab-separated column")
            raise DataError(f"{path}:{lineno}: expected {expected} ({', '.join(header)}), "
                            f"found {len(cells)}")
        yield f"{path}:{lineno}", {c: cells[i] for c, i in wanted.items()}


def read_text_tsv(path: str | os.PathLike, pair: bool | None = False, need_label: bool = True,
                  regression: bool = False, need_qid: bool = False,
                  for_cn: bool = False) -> list[TextExample]:
    """Read `text_a` and `text_b` (required when `pair`, read when present when `pair` is
    None, ignored otherwise), `label` (when present or needed) and `qid`."""
    required = ["text_a"] + (["text_b"] if pair else []) + (["label"] if need_label else []) \
        + (["qid"] if need_qid else [])
    out = []
    optional = ("label", "qid") + (("text_b",) if pair is not False else ())
    for source, row in read_tsv_rows(path, required, optional=optional):
        texts = {}
        for col in ("text_a", "text_b") if "text_b" in row else ("text_a",):
            text = row[col].strip()
            if for_cn:
                text = strip_cjk_spaces(text)
            if not text:
                raise DataError(f"{source}: empty {col}")
            texts[col] = text
        label: str | float | None = row.get("label")
        if label is not None:
            label = label.strip()
            if not label:
                raise DataError(f"{source}: empty label")
            if regression:
                try:
                    label = float(label)
                except ValueError:
                    raise DataError(f"{source}: label {label!r} is not a number") from None
                if not math.isfinite(label):
                    raise DataError(f"{source}: label {row['label'].strip()!r} is not a finite "
                                    "number")
        qid = row.get("qid")
        if need_qid and not qid.strip():
            raise DataError(f"{source}: empty qid")
        out.append(TextExample(texts["text_a"], texts.get("text_b"), label,
                               qid.strip() if qid is not None else None, source))
    if not out:
        raise DataError(f"{path}: no data rows after the header")
    return out


def _read_json(path: str | os.PathLike):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply") from None


# ---------------------------------------------------------------------- label maps
def read_label_map(path: str | os.PathLike) -> list[str]:
    """A label_map.json `{"label": id}` as the list of labels in id order (ids 0..n-1)."""
    raw = _read_json(path)
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: expected a JSON object mapping each label to its id")
    ids = {}
    for label, idx in raw.items():
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise DataError(f"{path}: id of label {label!r} is {idx!r}, expected an integer")
        if idx in ids:
            raise DataError(f"{path}: labels {ids[idx]!r} and {label!r} share id {idx}")
        ids[idx] = str(label)
    if sorted(ids) != list(range(len(ids))):
        raise DataError(f"{path}: ids must be 0..{len(ids) - 1}, found {sorted(ids)}")
    return [ids[i] for i in range(len(ids))]


def write_label_map(labels: Sequence[str], path: str | os.PathLike) -> None:
    atomic_write_text(path, json.dumps({lab: i for i, lab in enumerate(labels)},
                                       ensure_ascii=False, indent=1) + "\n")


def collect_labels(examples: Sequence[TextExample | TaggedExample]) -> list[str]:
    """The labels seen in training data, sorted (numbers numerically, so "2" < "10")."""
    seen = set()
    for ex in examples:
        if isinstance(ex, TaggedExample):
            seen.update(ex.labels or ())
        elif ex.label is not None:
            seen.add(str(ex.label))
    if not seen:
        raise DataError("no labels in the training data")
    numeric = all(re.fullmatch(r"-?\d+", s) for s in seen)
    return sorted(seen, key=int) if numeric else sorted(seen)


def check_labels(examples: Sequence[TextExample | TaggedExample], labels: Labels) -> None:
    """DataError (file:line) for the first label of `examples` that `labels` does not know:
    found before training, not at the first evaluation."""
    for ex in examples:
        if isinstance(ex, TaggedExample):
            found = ex.labels or ()
        else:
            found = () if ex.label is None else (ex.label,)
        for label in found:
            labels.id(str(label), ex.source)


class Labels:
    """The label set of a task: names in id order, and the id of each name."""

    def __init__(self, names: Sequence[str]):
        self.names = [str(n) for n in names]
        self._ids = {n: i for i, n in enumerate(self.names)}
        if len(self._ids) != len(self.names):
            raise DataError(f"repeated label in {self.names}")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> str:
        return self.names[i]

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def id(self, label: str, source: str = "") -> int:
        try:
            return self._ids[label]
        except KeyError:
            shown = ", ".join(self.names[:20]) + (" ..." if len(self.names) > 20 else "")
            raise DataError(f"{source}: unknown label {label!r} (known: {shown})") from None


# ---------------------------------------------------------------------- sequence labeling
def _split_tokens(field_: str) -> list[str]:
    """Tokens joined by \\x02 (ERNIE's format) or by spaces."""
    return field_.split("\x02") if "\x02" in field_ else field_.split()


def read_ner_tsv(path: str | os.PathLike, need_label: bool = True) -> list[TaggedExample]:
    """TSV with `text_a` (tokens) and `label` (one label per token), each joined by \\x02
    or by spaces."""
    out = []
    required = ["text_a"] + (["label"] if need_label else [])
    for source, row in read_tsv_rows(path, required, optional=("label",)):
        tokens = _split_tokens(row["text_a"].strip())
        if not any(t.strip() for t in tokens):
            raise DataError(f"{source}: empty text_a")
        if any(not t.strip() for t in tokens):
            raise DataError(f"{source}: empty token at position "
                            f"{next(i for i, t in enumerate(tokens) if not t.strip())}")
        labels = None
        if "label" in row:
            labels = _split_tokens(row["label"])
            if len(labels) != len(tokens):
                raise DataError(f"{source}: {len(tokens)} tokens but {len(labels)} labels")
        out.append(TaggedExample(tokens, labels, source))
    if not out:
        raise DataError(f"{path}: no data rows after the header")
    return out


def read_ner_columns(path: str | os.PathLike, need_label: bool = True) -> list[TaggedExample]:
    """Column-wise file: one `token label` per line (further middle columns, as in CoNLL,
    are ignored), a blank line between sentences. Without labels: one token per line."""
    path = Path(path)
    out: list[TaggedExample] = []
    tokens: list[str] = []
    labels: list[str] = []
    start = 0
    with_labels: bool | None = None

    def flush():
        if tokens:
            out.append(TaggedExample(list(tokens), list(labels) if with_labels else None,
                                     f"{path}:{start}"))
        tokens.clear()
        labels.clear()

    for lineno, line in _lines(path):
        fields = line.split()
        if not fields:
            flush()
            continue
        if not tokens:
            start = lineno
        has_label = len(fields) >= 2
        if with_labels is None:
            with_labels = has_label
        if need_label and not has_label:
            raise DataError(f"{path}:{lineno}: expected 'token label', found {line.strip()!r}")
        if has_label != with_labels:
            raise DataError(f"{path}:{lineno}: expected {'token label' if with_labels else 'one token'}"
                            f" like the lines before, found {line.strip()!r}")
        tokens.append(fields[0])
        if has_label:
            labels.append(fields[-1])
    flush()
    if not out:
        raise DataError(f"{path}: no sentences (expected 'token label' lines, a blank line "
                        "between sentences)")
    return out


def read_ner(path: str | os.PathLike, need_label: bool = True) -> list[TaggedExample]:
    """Either NER format: a TSV whose header names `text_a`, or the column-wise file."""
    path = Path(path)
    first = next((line for _, line in _lines(path) if line.strip()), "")
    header = [h.strip() for h in first.split("\t")]
    if "text_a" in header:
        return read_ner_tsv(path, need_label)
    return read_ner_columns(path, need_label)


# ---------------------------------------------------------------------- SQuAD v1 JSON
def _find_answer(context: str, text: str, start: int) -> int | None:
    """The occurrence of `text` in `context` nearest to `start`."""
    hits = [m.start() for m in re.finditer(re.escape(text), context)]
    return min(hits, key=lambda h: abs(h - start)) if hits else None


def read_squad(path: str | os.PathLike, need_answers: bool = True) -> list[MrcExample]:
    """SQuAD v1 JSON: data[].paragraphs[].context with qas[].question, id, answers[].text and
    answer_start. An answer_start that does not point at its text is moved to the nearest
    occurrence of the text (some released sets are off by a few characters); an answer that
    does not occur in its context is an error.

    Long: one pass over the nested JSON, each level checked where it is read, so every error
    names the exact place."""
    path = Path(path)
    raw = _read_json(path)
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a SQuAD JSON object with a 'data' list")

    def need(obj, key, kind, where):
        if not isinstance(obj, dict) or key not in obj:
            raise DataError(f"{path}: {where}: missing {key!r}")
        if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise DataError(f"{path}: {where}.{key}: expected {names}, found "
                            f"{type(obj[key]).__name__}")
        return obj[key]

    out, moved, seen = [], 0, {}
    for i, article in enumerate(data):
        for j, para in enumerate(need(article, "paragraphs", list, f"data[{i}]")):
            where_p = f"data[{i}].paragraphs[{j}]"
            context = need(para, "context", str, where_p)
            if not context.strip():
                raise DataError(f"{path}: {where_p}: empty context")
            for k, qa in enumerate(need(para, "qas", list, where_p)):
                where = f"{where_p}.qas[{k}]"
                qid = str(need(qa, "id", (str, int), where))
                question = need(qa, "question", str, where).strip()
                if not question:
                    raise DataError(f"{path}: {where} (id {qid}): empty question")
                if qid in seen:
                    raise DataError(f"{path}: {where}: id {qid} repeats {seen[qid]}")
                seen[qid] = where
                answers = []
                raw_answers = qa.get("answers", [])
                if not isinstance(raw_answers, list):
                    raise DataError(f"{path}: {where}.answers: expected a list")
                for a, ans in enumerate(raw_answers):
                    w = f"{where}.answers[{a}] (id {qid})"
                    text = need(ans, "text", str, w)
                    start = need(ans, "answer_start", int, w)
                    if not text.strip():
                        raise DataError(f"{path}: {w}: empty answer text")
                    if not 0 <= start < len(context):
                        raise DataError(f"{path}: {w}: answer_start {start} is outside its "
                                        f"context (expected 0..{len(context) - 1})")
                    if context[start:start + len(text)] != text:
                        found = _find_answer(context, text, start)
                        if found is None:
                            raise DataError(f"{path}: {w}: answer {text!r} does not occur in "
                                            "its context")
                        start, moved = found, moved + 1
                    answers.append(Answer(text, start))
                if need_answers and not answers:
                    raise DataError(f"{path}: {where} (id {qid}): no answers")
                out.append(MrcExample(qid, question, context, answers, f"{path}: {where}"))
    if moved:
        logger.warning("%s: moved %d answer_start value(s) to where the answer text occurs",
                       path, moved)
    if not out:
        raise DataError(f"{path}: no questions")
    return out


__all__ = ["Answer", "DataError", "MrcExample", "TaggedExample", "TextExample",
           "Labels", "check_labels", "collect_labels", "read_label_map", "read_ner", "read_ner_columns",
           "read_ner_tsv", "read_squad", "read_text_tsv", "read_tsv_rows", "strip_cjk_spaces",
           "write_label_map"]
