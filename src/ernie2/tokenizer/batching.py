"""Length-aware batching: group texts of similar length so padding wastes little compute."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def length_batches(lengths: Sequence[int], batch_size: int = 32,
                   max_tokens: int | None = None) -> Iterator[list[int]]:
    """Yield lists of indices into `lengths`, longest first, each batch holding at most
    `batch_size` items and, when `max_tokens` is given, at most that many padded tokens.
    Callers put results back in input order by these indices."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        # sorted longest first, so the batch's padded width is its first item's length
        width = lengths[batch[0]] if batch else lengths[i]
        if batch and (len(batch) >= batch_size or
                      (max_tokens is not None and width * (len(batch) + 1) > max_tokens)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch
