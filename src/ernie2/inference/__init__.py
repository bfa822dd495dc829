"""Encoding, fill-mask, serving, export and fast CPU inference: backends, ONNX export, int8, the
HTTP server and client. The package exports lazily."""

from ernie2.utils import lazy_exports

__all__ = ["BACKENDS", "LoadedModel", "load"]

__getattr__ = lazy_exports(__name__, {"BACKENDS": "ernie2.inference.runtime",
                                      "LoadedModel": "ernie2.inference.runtime",
                                      "load": "ernie2.inference.runtime"})
