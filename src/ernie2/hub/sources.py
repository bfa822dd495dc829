"""The places a model can come from: a checkpoint archive, loose files, the Hugging Face Hub."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ernie2.hub.archive import CONFIG_NAMES, find_checkpoint_root, safe_extract
from ernie2.hub.download import (ArchiveError, ChecksumError, Download, DownloadError, fetch_file,
                                 mirrored, verify)

if TYPE_CHECKING:
    from ernie2.hub.cache import _Job

logger = logging.getLogger(__name__)


class Source(Protocol):
    """One place a model can come from. `local` uses only files already on this machine."""

    def describe(self) -> str: ...

    def local(self, job: _Job) -> Path | None: ...

    def fetch(self, job: _Job) -> Path: ...

    def by_hand(self, job: _Job) -> list[str]: ...


@dataclass(frozen=True)
class ArchiveSource:
    """A tar(.gz) archive holding a Paddle checkpoint (params/ or *.pdparams, ernie_config.json,
    vocab.txt). `subdir`: where inside the archive; None finds it."""

    download: Download
    subdir: str | None = None

    def describe(self) -> str:
        return f"archive {self.download.url}"

    def _path(self, job: _Job) -> Path:
        return job.downloads / self.download.filename

    def local(self, job: _Job) -> Path | None:
        path = self._path(job)
        if not path.is_file():
            job.tried.append(f"no archive at {path}")
            return None
        logger.info("%s: using %s", job.info.name, path)
        try:
            job.origin = {"source": "archive", "url": self.download.url, "file": str(path),
                          "sha256": verify(path, self.download)}
            return self._unpack(path, job)
        except (ChecksumError, ArchiveError) as exc:  # never reused: the next try fetches anew
            path.unlink(missing_ok=True)
            logger.warning("%s: %s; deleted it", path, exc)
            raise

    def fetch(self, job: _Job) -> Path:
        path = self._path(job)
        url = mirrored(self.download.url, job.mirror)
        logger.info("%s: downloading %s", job.info.name, url)
        sha = fetch_file(url, path, self.download, progress=job.progress, retries=job.retries)
        job.downloaded.append(path)
        job.origin = {"source": "archive", "url": url, "sha256": sha,
                      "size": path.stat().st_size}
        return self._unpack(path, job)

    def _unpack(self, path: Path, job: _Job) -> Path:
        target = job.workdir / "unpacked"
        if target.exists():
            shutil.rmtree(target)
        safe_extract(path, target)
        return find_checkpoint_root(target, self.subdir)

    def by_hand(self, job: _Job) -> list[str]:
        return [f"download {self.download.url} and save it as {self._path(job)}"]


@dataclass(frozen=True)
class FilesSource:
    """Loose files (PaddleNLP publishes weights and vocab apart, and no config file: `config`
    is written as model_config.json)."""

    files: tuple[tuple[str, Download], ...]
    config: dict[str, Any] | None = None

    def describe(self) -> str:
        return "files " + ", ".join(d.url for _, d in self.files)

    def _assemble(self, job: _Job) -> Path:
        target = job.workdir / "files"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for local_name, _ in self.files:
            src = job.downloads / local_name
            try:
                os.link(src, target / local_name)
            except OSError:
                shutil.copyfile(src, target / local_name)
        if self.config is not None and not any((target / n).exists() for n in CONFIG_NAMES):
            (target / "model_config.json").write_text(json.dumps(self.config, indent=2),
                                                      encoding="utf-8")
        return target

    def local(self, job: _Job) -> Path | None:
        missing = [job.downloads / n for n, _ in self.files if not (job.downloads / n).is_file()]
        if missing:
            job.tried.append(f"no {', '.join(str(p) for p in missing)}")
            return None
        job.origin = {"source": "files", "files": {
            n: {"url": d.url, "sha256": verify(job.downloads / n, d)} for n, d in self.files}}
        return self._assemble(job)

    def fetch(self, job: _Job) -> Path:
        record = {}
        for local_name, d in self.files:
            path = job.downloads / local_name
            url = mirrored(d.url, job.mirror)
            if path.is_file():
                sha = verify(path, d)
            else:
                logger.info("%s: downloading %s", job.info.name, url)
                sha = fetch_file(url, path, d, progress=job.progress, retries=job.retries)
                job.downloaded.append(path)
            record[local_name] = {"url": url, "sha256": sha}
        job.origin = {"source": "files", "files": record}
        return self._assemble(job)

    def by_hand(self, job: _Job) -> list[str]:
        return [f"download {d.url} and save it as {job.downloads / n}" for n, d in self.files]


@dataclass(frozen=True)
class HubSource:
    """A converted copy on the Hugging Face Hub, fetched with huggingface_hub when installed."""

    repo_id: str
    revision: str | None = None
    patterns: tuple[str, ...] = ("config.json", "model.safetensors", "pytorch_model.bin",
                                 "vocab.txt")

    def describe(self) -> str:
        return f"Hugging Face {self.repo_id}"

    @staticmethod
    def _hub():
        try:
            import huggingface_hub
        except ImportError:
            return None
        return huggingface_hub

    def local(self, job: _Job) -> Path | None:
        hub = self._hub()
        if hub is None:
            job.tried.append(f"{self.repo_id}: huggingface_hub is not installed")
            return None
        try:  # the user's Hugging Face cache only: no network
            path = hub.snapshot_download(self.repo_id, revision=self.revision,
                                         allow_patterns=list(self.patterns),
                                         local_files_only=True)
        except Exception as exc:  # the hub raises many kinds for "not cached"
            job.tried.append(f"{self.repo_id} not in the Hugging Face cache "
                             f"({type(exc).__name__})")
            return None
        job.origin = {"source": "hf", "repo": self.repo_id, "revision": self.revision}
        return find_checkpoint_root(Path(path))

    def fetch(self, job: _Job) -> Path:
        hub = self._hub()
        if hub is None:
            raise DownloadError("huggingface_hub is not installed (pip install huggingface_hub)")
        target = job.workdir / "hf"
        # pytorch_model.bin only when the repository has no safetensors: never both
        first = [p for p in self.patterns if p != "pytorch_model.bin"]
        try:
            hub.snapshot_download(self.repo_id, revision=self.revision, allow_patterns=first,
                                  local_dir=str(target))
            if ("pytorch_model.bin" in self.patterns
                    and not (target / "model.safetensors").is_file()):
                hub.snapshot_download(self.repo_id, revision=self.revision,
                                      allow_patterns=["pytorch_model.bin"], local_dir=str(target))
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise DownloadError(f"{type(exc).__name__}: {first}") from None
        job.origin = {"source": "hf", "repo": self.repo_id, "revision": self.revision}
        return find_checkpoint_root(target)

    def by_hand(self, job: _Job) -> list[str]:
        return [f"copy the files of https://huggingface.co/{self.repo_id} into {job.manual}"]
