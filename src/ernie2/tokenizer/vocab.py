"""Vocab files (`token` lines or `token<TAB>id` lines) and WordPiece vocab training."""

from __future__ import annotations

import gzip
import heapq
import os
from collections import Counter
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
    `.gz` allowed) and write it to `out`. Special tokens take ids 0-4 in ERNIE's order.

    Deterministic: the same text and arguments give the same file in any process. This is the
    training of Hugging Face's WordPieceTrainer, which is not (huggingface/tokenizers#1794: its
    `##` tokens get ids in hash-map order, and ids break ties), with every id fixed. `tokenizers`
    only normalizes (BERT: clean text, space out CJK characters, lower-case and strip accents if
    `lower_case`) and pre-tokenizes (at whitespace and punctuation; each CJK character a word).
    A word is its first character followed by `##` pieces; the most frequent adjacent pair,
    counted over the corpus, is merged (`a` + `##b` makes `ab`, `##a` + `##b` makes `##ab`), as
    long as it occurs at least `min_frequency` times and the vocab holds fewer than `size`
    tokens. Ties go to the pair of lower ids, the left piece's first. Two pairs can make the same
    token, which keeps its first id.

    Vocab order: SPECIAL_TOKENS, then `extra_tokens`; the characters of the text, as many as fit
    (the most frequent, ties by the character), in code point order; the `##` forms of those that
    occur inside a word, as many as still fit (chosen and ordered the same way); then the merged
    tokens in the order they were made. Words with a character outside the vocab or without the
    `##` form they need (which the tokenizer makes [UNK]) are left out of the merges.
    """
    specials = list(dict.fromkeys([*SPECIAL_TOKENS, *extra_tokens]))
    if size < len(specials):
        raise ValueError(f"vocab size {size} is smaller than the {len(specials)} special tokens")
    counts = _word_counts(iter_text_lines(files), lower_case)
    tokens = _train_wordpiece(counts, size, min_frequency, specials)
    vocab = {t: i for i, t in enumerate(tokens)}
    write_vocab(vocab, out)
    return vocab


def _word_counts(lines: Iterable[str], lower_case: bool, batch_chars: int = 1 << 14) -> Counter:
    """How often each pre-tokenized word occurs, after BERT normalization.

    Lines are normalized in batches joined by newlines (every step of the normalizer works
    character by character, and turns the newline into a space) and split at spaces; each
    distinct piece is then pre-tokenized once, which is what pre-tokenizing the whole text
    would give, since the pre-tokenizer splits at spaces too."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lower_case,
        lowercase=lower_case)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    pieces: Counter = Counter()
    batch: list[str] = []
    n_chars = 0
    for line in lines:
        batch.append(line)
        n_chars += len(line)
        if n_chars >= batch_chars:
            pieces.update(normalizer.normalize_str("\n".join(batch)).split(" "))
            batch.clear()
            n_chars = 0
    if batch:
        pieces.update(normalizer.normalize_str("\n".join(batch)).split(" "))
    pieces.pop("", None)
    counts: Counter = Counter()
    for piece, n in pieces.items():
        for word, _ in pre_tokenizer.pre_tokenize_str(piece):
            counts[word] += n
    return counts


def _train_wordpiece(counts: dict[str, int], size: int, min_frequency: int,
                     specials: list[str]) -> list[str]:
    """The vocab tokens in id order (see `train_vocab`) for these word counts."""
    tokens = list(specials)
    ids = {t: i for i, t in enumerate(tokens)}

    def add(token: str) -> int:
        if token not in ids:
            ids[token] = len(tokens)
            tokens.append(token)
        return ids[token]

    # The alphabet: characters, then the `##` forms of those that occur inside a word.
    chars: Counter = Counter()
    inner: Counter = Counter()
    for word, n in counts.items():
        chars[word[0]] += n
        for c in word[1:]:
            chars[c] += n
            inner[c] += n
    new_chars = sorted((c for c in chars if c not in ids), key=lambda c: (-chars[c], c))
    for c in sorted(new_chars[:size - len(tokens)]):
        add(c)
    new_conts = sorted((c for c in inner if c in ids and f"##{c}" not in ids),
                       key=lambda c: (-inner[c], c))
    for c in sorted(new_conts[:size - len(tokens)]):
        add(f"##{c}")

    # Words as symbol id sequences; words the vocab cannot spell are left out.
    words: list[list[int]] = []
    freqs: list[int] = []
    for word, n in counts.items():
        pieces = [word[0], *(f"##{c}" for c in word[1:])]
        if len(pieces) > 1 and all(p in ids for p in pieces):
            words.append([ids[p] for p in pieces])
            freqs.append(n)

    pair_counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    for wi, sym in enumerate(words):
        n = freqs[wi]
        for pair in zip(sym, sym[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + n
            where.setdefault(pair, set()).add(wi)

    # A heap of (-count, left id, right id): the most frequent pair first, ties to the lower
    # ids. Counts there are upper bounds, checked when popped; a pair whose count grows is
    # pushed again.
    heap = [(-c, a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)
    while len(tokens) < size and heap:
        neg, a, b = heapq.heappop(heap)
        pair = (a, b)
        count = pair_counts.get(pair, 0)
        if count != -neg:
            if 0 < count < -neg:
                heapq.heappush(heap, (-count, a, b))
            continue
        if count < min_frequency:
            break
        new = add(tokens[a] + tokens[b][2:])
        delta: dict[tuple[int, int], int] = {}
        for wi in where.pop(pair):
            sym = words[wi]
            merged_sym = []
            i, last = 0, len(sym) - 1
            while i <= last:
                if i < last and sym[i] == a and sym[i + 1] == b:
                    merged_sym.append(new)
                    i += 2
                else:
                    merged_sym.append(sym[i])
                    i += 1
            words[wi] = merged_sym
            n = freqs[wi]
            old_pairs = set()
            for p in zip(sym, sym[1:]):
                delta[p] = delta.get(p, 0) - n
                old_pairs.add(p)
            new_pairs = set()
            for p in zip(merged_sym, merged_sym[1:]):
                delta[p] = delta.get(p, 0) + n
                new_pairs.add(p)
            for p in old_pairs - new_pairs:
                if p != pair:
                    where[p].discard(wi)
            for p in new_pairs - old_pairs:
                where.setdefault(p, set()).add(wi)
        for p, d in delta.items():
            if d == 0:
                continue
            c = pair_counts.get(p, 0) + d
            if c > 0:
                pair_counts[p] = c
                if d > 0:
                    heapq.heappush(heap, (-c, *p))
            else:
                pair_counts.pop(p, None)
                where.pop(p, None)
    return tokens
