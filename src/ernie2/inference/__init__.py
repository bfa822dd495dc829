"""Encoding, fill-mask, serving, export and fast CPU inference: backends, ONNX export, int8, the
HTTP server and client. The package exports lazily."""

from ernie2.utils import lazy_exports


__getattr__, __all__ = lazy_exports(__name__, {
    "ernie2.inference.runtime": "BACKENDS load LoadedModel",
})
