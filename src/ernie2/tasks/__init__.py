"""ERNIE 2.0 pre-training tasks: the protocol, the registry and one module per task."""

from ernie2.tasks.base import (IGNORE_INDEX, REGISTRY, Document, Example, PretrainingTask,
                               Sentence, Span, collate, create_task, load_factory, register)

__all__ = ["IGNORE_INDEX", "REGISTRY", "Document", "Example", "PretrainingTask", "Sentence",
           "Span", "collate", "create_task", "load_factory", "register"]
