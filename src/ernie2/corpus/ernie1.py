"""The ERNIE 1.0 pre-training format: gzip text, one example a line,
`token_ids;sentence_type_ids;position_ids;seg_labels;next_sentence_label`, read as it is.

Each line becomes a Document of one paragraph holding sentence A (and B when present) as
pre-tokenized Sentences (`token_ids`, `seg_labels`, text ""), with
meta {"next_sentence_label": int, "mask_word_prob": float}. A filelist (lines
`path.gz<TAB>mask_word_prob`, paths relative to the list) is read file after file.
"""

from __future__ import annotations

from pathlib import Path

from ernie2.corpus.document import Document, Sentence
from ernie2.corpus.readers import BadInput, Lines, open_binary, reader


def parse_five_fields(line: str, where: str) -> tuple[list[int], list[int], list[int], int]:
    """-> (token_ids, sentence_type_ids, seg_labels, next_sentence_label), validated."""
    fields = line.strip().split(";")
    if len(fields) != 5:
        raise BadInput(f"{where}: expected 5 ';'-separated fields (token_ids;sentence_type_ids;"
                       f"position_ids;seg_labels;next_sentence_label), got {len(fields)}")
    names = ("token_ids", "sentence_type_ids", "position_ids", "seg_labels")
    cols = []
    for name, f in zip(names, fields[:4]):
        try:
            cols.append([int(x) for x in f.split()])
        except ValueError:
            raise BadInput(f"{where}: field {name} must be space-separated integers") from None
    if len({len(c) for c in cols}) != 1 or not cols[0]:
        raise BadInput(f"{where}: the first four fields must have the same non-zero length, got "
                       + ", ".join(f"{n}={len(c)}" for n, c in zip(names, cols)))
    try:
        label = int(fields[4])
    except ValueError:
        raise BadInput(f"{where}: next_sentence_label must be an integer, "
                       f"got {fields[4]!r}") from None
    bad = [s for s in cols[3] if s not in (-1, 0, 1)]
    if bad:
        raise BadInput(f"{where}: seg_labels must be -1, 0 or 1, got {bad[0]}")
    return cols[0], cols[1], cols[3], label


def _is_filelist(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(2)
        if head == b"\x1f\x8b":
            return False
        first = (head + fh.readline()).decode("utf-8", "replace").strip()
    name, sep, prob = first.partition("\t")
    try:
        float(prob)
    except ValueError:
        return False
    return bool(sep and name)


def _read_one(path, lang, on_error, stats, start, mask_word_prob, file_index):
    lines = Lines(path, on_error, stats, start)
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            ids, types, segs, label = parse_five_fields(line, f"{path}:{lineno}")
        except BadInput:
            if on_error == "raise":
                raise
            lines.stats["skipped_bad_records"] += 1
            continue
        a_ids, a_seg, b_ids, b_seg = [], [], [], []
        for tid, typ, seg in zip(ids, types, segs):
            if seg == -1:  # [CLS] / [SEP] placeholders: the layout is rebuilt by the task
                continue
            (a_ids if typ == 0 else b_ids).append(tid)
            (a_seg if typ == 0 else b_seg).append(seg)
        sents = [Sentence("", token_ids=a_ids, seg_labels=a_seg)]
        if b_ids:
            sents.append(Sentence("", token_ids=b_ids, seg_labels=b_seg))
        meta = {"next_sentence_label": label, "mask_word_prob": mask_word_prob}
        pos = {**lines.position(), "file": file_index}
        yield Document([sents], None, f"{path}:{lineno}", lang, meta), pos


@reader("ernie1")
def read_ernie1(path, lang="zh", on_error="raise", stats=None, start=None,
                mask_word_prob=1.0, **_):
    """A five-field file (gzip or plain) or a filelist of them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} not found")
    lg = "zh" if lang == "auto" else lang
    if not _is_filelist(path):
        yield from _read_one(path, lg, on_error, stats, start, mask_word_prob, 0)
        return
    entries = []
    with open_binary(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            name, _, prob = line.partition("\t")
            try:
                p = float(prob)
            except ValueError:
                raise BadInput(f"{path}:{lineno}: expected 'file.gz<TAB>mask_word_prob'") from None
            file = path.parent / name if not Path(name).is_absolute() else Path(name)
            if not file.is_file():
                raise BadInput(f"{path}:{lineno}: listed file {file} not found")
            entries.append((file, p))
    first = int((start or {}).get("file", 0))
    for k, (file, p) in enumerate(entries[first:], first):
        sub_start = start if (start and k == first and "offset" in start) else None
        yield from _read_one(file, lg, on_error, stats, sub_start, p, k)
