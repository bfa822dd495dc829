"""Serving, export and fast CPU inference: backends, ONNX export, int8, the HTTP server and client,
and distillation into smaller students."""

from ernie2.inference.runtime import BACKENDS, LoadedModel, load

__all__ = ["BACKENDS", "LoadedModel", "load"]
