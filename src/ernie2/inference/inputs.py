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

from ernie2.finetune.readers import MrcExample, TaggedExample, TextExample


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
        raise InputError(f"{what}: expected a string, got {_kind(text)}")
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


def _kind(x: Any) -> str:
    return {dict: "an object", list: "a list", tuple: "a list", str: "a string",
            bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(x), f"a value of type {type(x).__name__}")


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
    raise InputError(f"{what}: expected a string or [text_a, text_b], got {_kind(x)}")


def _text_examples(task: str, inputs: Sequence[Any], max_chars: int | None) -> list[TextExample]:
    out: list[TextExample] = []
    for i, x in enumerate(inputs):
        a, b = _pair(x, f"input {i}", max_chars)
        if task == "classify" and b is not None:
            raise InputError(f"input {i}: task type classify takes one text, got a pair")
        if task in ("pair", "rank") and b is None:
            raise InputError(f"input {i}: task type {task} takes a pair [text_a, text_b]")
        if out and (b is None) != (out[0].text_b is None):
            raise InputError(f"input {i} is {'a single text' if b is None else 'a pair'} but "
                             f"input 0 is not; send one kind per request")
        out.append(TextExample(a, b, None, None, f"<input {i}>"))
    return out


def _tagged_examples(inputs: Sequence[Any], max_chars: int | None) -> list[TaggedExample]:
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
            raise InputError(f"{what}: expected a string or a list of tokens, got {_kind(x)}")
        out.append(TaggedExample(tokens, None, f"<input {i}>"))
    return out


def _mrc_examples(inputs: Sequence[Any], max_chars: int | None) -> list[MrcExample]:
    out = []
    for i, x in enumerate(inputs):
        what = f"input {i}"
        if not isinstance(x, dict):
            raise InputError(f"{what}: expected {{\"question\": ..., \"context\": ...}}, got "
                             f"{_kind(x)}")
        unknown = sorted(set(x) - {"question", "context", "id"})
        if unknown or not {"question", "context"} <= set(x):
            raise InputError(f"{what}: expected keys question, context (and id), got "
                             f"{', '.join(sorted(x)) or 'none'}")
        qid = x.get("id", str(i))
        if not isinstance(qid, (str, int)) or isinstance(qid, bool):
            raise InputError(f"{what}.id: expected a string, got {_kind(qid)}")
        out.append(MrcExample(str(qid), check_text(x["question"], f"{what}.question", max_chars),
                              check_text(x["context"], f"{what}.context", max_chars), [],
                              f"<input {i}>"))
    return out


def to_examples(task: str, inputs: Sequence[Any], max_chars: int | None = None) -> list:
    """Examples of fine-tuning task type `task` from plain inputs (see the module docstring)."""
    if isinstance(inputs, (str, bytes, dict)) or not isinstance(inputs, Sequence):
        raise InputError(f"inputs: expected a list, got {_kind(inputs)}")
    if not inputs:
        raise InputError("inputs: empty list")
    if task == "ner":
        return _tagged_examples(inputs, max_chars)
    if task == "mrc":
        return _mrc_examples(inputs, max_chars)
    if task in ("classify", "pair", "rank", "regress"):
        return _text_examples(task, inputs, max_chars)
    raise InputError(f"task type {task!r} has no plain-input form")


__all__ = ["InputError", "check_text", "to_examples"]
