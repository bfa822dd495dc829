"""The model cache: one converted directory per model, fetched and converted once under a lock
that holds across threads and processes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ernie2.utils import atomic_write_text
from ernie2.hub.archive import CONFIG_NAMES, find_checkpoint_root
from ernie2.hub.download import (ENV_HOME, ENV_MIRROR, ENV_OFFLINE, ArchiveError, ChecksumError,
                                 DownloadError, ModelUnavailableError, cache_home, is_offline)
from ernie2.hub.sources import ArchiveSource
from ernie2.hub.table import ModelInfo, get_model

logger = logging.getLogger(__name__)

# Converts the checkpoint found at `root` into our directory format at `out`; returns what it read
# (`.fmt`, `.vocab_file`). The model layer passes its own (ernie2.model.checkpoint.convert): the
# hub, below the model, never imports it.
Convert = Callable[[Path, Path], Any]


def cached_path(name: str, home: str | os.PathLike | None = None) -> Path | None:
    """The converted directory of `name` in the cache, or None when it is not there yet."""
    final = Path(home) if home else cache_home()
    final = final / "models" / get_model(name).name
    return final if _is_ready(final) else None


def _is_ready(d: Path) -> bool:
    return (d / "config.json").is_file() and (d / "model.safetensors").is_file()


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_LOCK = threading.Lock()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One loader per model at a time, across threads and processes (released on crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCKS_LOCK:
        tlock = _THREAD_LOCKS.setdefault(str(path), threading.Lock())
    with tlock, open(path, "a+b") as fh:
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt
            while True:
                try:
                    msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
            return
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process fetching the same model (%s)", path)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class _Job:
    info: ModelInfo
    home: Path
    offline: bool
    mirror: str | None
    progress: bool | None
    retries: int
    convert: Convert
    tried: list[str] = field(default_factory=list)
    downloaded: list[Path] = field(default_factory=list)
    origin: dict[str, Any] = field(default_factory=dict)
    workdir: Path = Path()

    @property
    def final(self) -> Path:
        return self.home / "models" / self.info.name

    @property
    def downloads(self) -> Path:
        return self.home / "downloads" / self.info.name

    @property
    def manual(self) -> Path:
        return self.home / "manual" / self.info.name

    def run(self) -> Path:
        tmp = self.home / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for stale in tmp.glob(f"{self.info.name}+*"):  # left by a crash; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.info.name}+", dir=tmp))
        try:
            return self._run()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self) -> Path:
        if self.manual.is_dir() and any(self.manual.iterdir()):
            logger.info("%s: converting the files placed in %s", self.info.name, self.manual)
            self.origin = {"source": "manual", "path": str(self.manual)}
            return self._install(find_checkpoint_root(self.manual))
        self.tried.append(f"nothing in {self.manual}")
        for src in self.info.sources:
            try:
                root = src.local(self)
                if root is not None:
                    return self._install(root)
            except (ChecksumError, ArchiveError, ValueError, OSError) as exc:
                self.tried.append(f"{src.describe()} (copy on disk): {exc}")
        if self.offline:
            raise ModelUnavailableError(self._message(
                f"{ENV_OFFLINE}=1: no network access was attempted."))
        for src in self.info.sources:
            self.downloaded.clear()
            try:
                return self._install(src.fetch(self))
            except (ChecksumError, ArchiveError) as exc:
                for path in self.downloaded:  # refused: never keep it for a later run
                    path.unlink(missing_ok=True)
                self.tried.append(f"{src.describe()}: {exc}")
            except (DownloadError, ValueError, OSError) as exc:
                kept = ", ".join(str(p) for p in self.downloaded if p.exists())
                self.tried.append(f"{src.describe()}: {exc}"
                                  + (f" (downloaded files kept: {kept})" if kept else ""))
        raise ModelUnavailableError(self._message(
            "" if self.info.sources else "The table lists no download address for it."))

    def _install(self, root: Path) -> Path:
        out = self.workdir / "converted"
        if out.exists():
            shutil.rmtree(out)
        ckpt = self.convert(root, out)
        if ckpt.vocab_file is None:
            logger.warning("%s: no vocab.txt came with the checkpoint; the tokenizer cannot be "
                           "loaded by name", self.info.name)
        record = {"name": self.info.name, **self.origin, "format": ckpt.fmt,
                  "converted": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(out / "source.json", json.dumps(record, indent=2) + "\n")
        if self.final.exists():  # an incomplete leftover: never a ready one (checked under lock)
            shutil.rmtree(self.final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(out, self.final)
        for path in self.downloaded:  # the converted copy replaces what we fetched
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.downloads.rmdir()
        logger.info("%s: ready in %s", self.info.name, self.final)
        return self.final

    def _message(self, why: str) -> str:
        lines = [f"cannot get the pre-trained model {self.info.name!r}.", "Tried:"]
        lines += [f"  - {t}" for t in self.tried]
        if why:
            lines.append(why)
        hints = [h for src in self.info.sources for h in src.by_hand(self)]
        lines.append("To install it by hand, do one of:")
        lines += [f"  - {h}" for h in hints]
        archive = next((s.download.filename for s in self.info.sources
                        if isinstance(s, ArchiveSource)), None)
        if archive:
            lines.append(f"  - unpack {archive} into {self.manual} (mkdir -p {self.manual} && "
                         f"tar xzf {archive} -C {self.manual})")
        lines.append(f"  - put any checkpoint directory (holding {' or '.join(CONFIG_NAMES)}, "
                     f"its weights and vocab.txt) in {self.manual}")
        lines.append(f"then load {self.info.name!r} again (or pass that directory's path instead "
                     f"of the name). The cache is {self.home} (${ENV_HOME}).")
        return "\n".join(lines)


def resolve(name: str, *, convert: Convert, home: str | os.PathLike | None = None,
            offline: bool | None = None, mirror: str | None = None, progress: bool | None = None,
            retries: int = 3) -> Path:
    """The local directory (config.json + model.safetensors + vocab.txt) of the known model
    `name`, fetched, verified, unpacked and converted (by `convert`) into the cache the first
    time. `ernie2.model.checkpoint.resolve_pretrained` is this with the model's converter.

    Arguments left None come from $ERNIE2_HOME, $ERNIE2_OFFLINE and $ERNIE2_MIRROR."""
    info = get_model(name)
    home = Path(home).expanduser() if home else cache_home()
    if mirror is None:
        mirror = os.environ.get(ENV_MIRROR) or None
    job = _Job(info, home, is_offline() if offline is None else offline, mirror, progress,
               retries, convert)
    if _is_ready(job.final):
        return job.final
    with _locked(home / "locks" / f"{info.name}.lock"):
        if _is_ready(job.final):  # another process finished while we waited
            return job.final
        return job.run()


def describe_cached(name: str, home: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """What `source.json` recorded for a cached model, or None when it is not cached."""
    path = cached_path(name, home)
    if path is None:
        return None
    try:
        return json.loads((path / "source.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"name": name}
