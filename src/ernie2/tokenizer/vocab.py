"""Vocab files (`token` lines or `token<TAB>id` lines) and WordPiece vocab training."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ernie2.utils import atomic_write_text

# ERNIE's Chinese vocab order: [PAD]=0, [CLS]=1, [SEP]=2, [MASK]=3; [UNK] follows.
SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")


def read_vocab(path: str | os.PathLike) -> dict[str, int]:
    """Read either vocab format. Ids are the line numbers for `token` lines and the given
    numbers for `token<TAB>id` lines. Errors name the file and line."""
    path = Path(path)
    vocab: dict[str, int] = {}
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not UTF-8 ({exc.reason})") from None
            if "\t" in line:
                token, _, idx = line.partition("\t")
                try:
                    tid = int(idx.strip())
                except ValueError:
                    raise ValueError(
                        f"{path}:{lineno}: expected 'token<TAB>id', got id {idx!r}") from None
            else:
                token, tid = line.strip(), lineno - 1
            if not token:
                raise ValueError(f"{path}:{lineno}: empty token")
            if token in vocab:
                raise ValueError(f"{path}:{lineno}: token {token!r} repeats line "
                                 f"with id {vocab[token]}")
            vocab[token] = tid
    if not vocab:
        raise ValueError(f"{path}: empty vocab file")
    return vocab


def write_vocab(vocab: dict[str, int], path: str | os.PathLike) -> None:
    """One token per line in id order when ids are 0..N-1; `token<TAB>id` lines otherwise."""
    items = sorted(vocab.items(), key=lambda kv: kv[1])
    contiguous = all(i == tid for i, (_, tid) in enumerate(items))
    lines = [t if contiguous else f"{t}\t{tid}" for t, tid in items]
    atomic_write_text(path, "\n".join(lines) + "\n")


def iter_text_lines(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    for p in paths:
        p = Path(p)
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8", errors="strict") as fh:
            try:
                for line in fh:
                    line = line.strip()
                    if line:
                        yield line
            except UnicodeDecodeError as exc:
                raise ValueError(f"{p}: not UTF-8 text ({exc.reason})") from None


def train_vocab(files: Iterable[str | os.PathLike], size: int, out: str | os.PathLike,
                lower_case: bool = True, min_frequency: int = 2,
                extra_tokens: Iterable[str] = ()) -> dict[str, int]:
    """Train a WordPiece vocab of at most `size` entries on text files (one text a line,
    `.gz` allowed) and write it to `out`. Special tokens take ids 0-4 in ERNIE's order."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lower_case,
        lowercase=lower_case)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=size, min_frequency=min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *extra_tokens], continuing_subword_prefix="##",
        # without a limit every character seen is kept, which can exceed `size`
        limit_alphabet=max(size - len(SPECIAL_TOKENS), 1), show_progress=True)
    tok.train_from_iterator(iter_text_lines(files), trainer=trainer)
    vocab = tok.get_vocab()
    write_vocab(vocab, out)
    return vocab
