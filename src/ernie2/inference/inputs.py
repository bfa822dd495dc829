"""Plain inputs (Python values or decoded JSON) checked and turned into fine-tuning examples.

What each task type takes, one item per input:
- classify: "text" (or {"text_a": ...})
- pair, rank: ["text_a", "text_b"] (or {"text_a": ..., "text_b": ...})
- regress: either of the above, one kind per call
- ner: a list of tokens, or a string (one token per non-space character)
- mrc: {"question": ..., "context": ...[, "id": ...]}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ernie2.finetune.task_types import TASK_TYPES, TaskType
from ernie2.finetune.readers import (InputError, MrcExample, TaggedExample, TextExample,
                                     check_text, kind_of)


def _pair(x: Any, what: str, max_chars: int | None) -> tuple[str, str | None]:
    if isinstance(x, str):
        return check_text(x, what, max_chars), None
    if isinstance(x, (list, tuple)):
        if len(x) != 2:
            raise InputError(f"{what}: a pair is [text_a, text_b]; got a list of {len(x)}")
        return (check_text(x[0], f"{what}[0]", max_chars),
                check_text(x[1], f"{what}[1]", max_chars))
    if isinstance(x, dict):
        unknown = sorted(set(x) - {"text_a", "text_b"})
        if unknown or "text_a" not in x:
            raise InputError(f"{what}: expected keys text_a (and text_b), got "
                             f"{', '.join(sorted(x)) or 'none'}")
        b = x.get("text_b")
        return (check_text(x["text_a"], f"{what}.text_a", max_chars),
                None if b is None else check_text(b, f"{what}.text_b", max_chars))
    raise InputError(f"{what}: expected a string or [text_a, text_b], got {kind_of(x)}")


def _text_examples(task: TaskType, inputs: Sequence[Any],
                   max_chars: int | None) -> list[TextExample]:
    out: list[TextExample] = []
    for i, x in enumerate(inputs):
        a, b = _pair(x, f"input {i}", max_chars)
        if task.inputs == "text" and b is not None:
            raise InputError(f"input {i}: task type {task.name} takes one text, got a pair")
        if task.inputs == "pair" and b is None:
            raise InputError(f"input {i}: task type {task.name} takes a pair [text_a, text_b]")
        if out and (b is None) != (out[0].text_b is None):
            raise InputError(f"input {i} is {'a single text' if b is None else 'a pair'} but "
                             f"input 0 is not; send one kind per request")
        out.append(TextExample(a, b, None, None, f"<input {i}>"))
    return out


def _tagged_examples(task: TaskType, inputs: Sequence[Any],
                     max_chars: int | None) -> list[TaggedExample]:
    out = []
    for i, x in enumerate(inputs):
        what = f"input {i}"
        if isinstance(x, str):
            tokens = [c for c in check_text(x, what, max_chars) if not c.isspace()]
        elif isinstance(x, (list, tuple)):
            if not x:
                raise InputError(f"{what}: empty token list")
            tokens = [check_text(t, f"{what}[{k}]") for k, t in enumerate(x)]
            if max_chars is not None and sum(map(len, tokens)) > max_chars:
                raise InputError(f"{what}: {sum(map(len, tokens))} characters, more than the "
                                 f"limit of {max_chars}", too_large=True)
        else:
            raise InputError(f"{what}: expected a string or a list of tokens, got {kind_of(x)}")
        out.append(TaggedExample(tokens, None, f"<input {i}>"))
    return out


def _mrc_examples(task: TaskType, inputs: Sequence[Any],
                  max_chars: int | None) -> list[MrcExample]:
    out = []
    for i, x in enumerate(inputs):
        what = f"input {i}"
        if not isinstance(x, dict):
            raise InputError(f"{what}: expected {{\"question\": ..., \"context\": ...}}, got "
                             f"{kind_of(x)}")
        unknown = sorted(set(x) - {"question", "context", "id"})
        if unknown or not {"question", "context"} <= set(x):
            raise InputError(f"{what}: expected keys question, context (and id), got "
                             f"{', '.join(sorted(x)) or 'none'}")
        qid = x.get("id", str(i))
        if not isinstance(qid, (str, int)) or isinstance(qid, bool):
            raise InputError(f"{what}.id: expected a string, got {kind_of(qid)}")
        out.append(MrcExample(str(qid), check_text(x["question"], f"{what}.question", max_chars),
                              check_text(x["context"], f"{what}.context", max_chars), [],
                              f"<input {i}>"))
    return out


def to_examples(task: str, inputs: Sequence[Any], max_chars: int | None = None) -> list:
    """Examples of fine-tuning task type `task` from plain inputs (see the module docstring)."""
    if isinstance(inputs, (str, bytes, dict)) or not isinstance(inputs, Sequence):
        raise InputError(f"inputs: expected a list, got {kind_of(inputs)}")
    if not inputs:
        raise InputError("inputs: empty list")
    task_type = TASK_TYPES.get(task)
    read = _READERS.get(task_type.inputs) if task_type else None
    if read is None:
        raise InputError(f"task type {task!r} has no plain-input form")
    return read(task_type, inputs, max_chars)


# What each kind of plain input (TaskType.inputs) is read with.
_READERS = {"text": _text_examples, "pair": _text_examples, "text_or_pair": _text_examples,
            "tokens": _tagged_examples, "question": _mrc_examples}


__all__ = ["InputError", "check_text", "to_examples"]
