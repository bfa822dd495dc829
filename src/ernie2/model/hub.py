"""Pre-trained ERNIE checkpoints by name: the table of released models, fetched into a cache."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

logger = logging.getLogger(__name__)

ENV_HOME = "ERNIE2_HOME"          # the cache (default $XDG_CACHE_HOME/ernie2 or ~/.cache/ernie2)
ENV_OFFLINE = "ERNIE2_OFFLINE"    # 1: never touch the network
ENV_MIRROR = "ERNIE2_MIRROR"      # replaces scheme://host of every published download address
ENV_REGISTRY = "ERNIE2_REGISTRY"  # a JSON file adding or replacing table entries
ENV_TIMEOUT = "ERNIE2_TIMEOUT"    # seconds a stalled connection may wait (default 60)

CONFIG_NAMES = ("config.json", "ernie_config.json", "model_config.json")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---------------------------------------------------------------------- errors
class UnknownModelError(FileNotFoundError):
    """Neither an existing path nor a name in the table."""


class ModelUnavailableError(FileNotFoundError):
    """A known model that could not be fetched; the message lists what was tried."""


class DownloadError(OSError):
    pass


class ChecksumError(ValueError):
    pass


class ArchiveError(ValueError):
    """An archive that is unreadable, unsafe (paths out of the target, links) or holds no
    checkpoint."""


# ---------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Download:
    """One published file; size and checksums are None where nobody published them."""

    url: str
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None

    @property
    def filename(self) -> str:
        return PurePosixPath(urllib.parse.urlparse(self.url).path).name

    @classmethod
    def from_value(cls, value: Any, where: str) -> Download:
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict) and isinstance(value.get("url"), str):
            unknown = set(value) - {"url", "size", "md5", "sha256"}
            if unknown:
                raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
            return cls(value["url"], value.get("size"), value.get("md5"), value.get("sha256"))
        raise ValueError(f"{where}: expected a URL or {{'url': ..., 'size'/'md5'/'sha256': ...}}")


class Source(Protocol):
    """One place a model can come from. `local` uses only files already on this machine."""

    def describe(self) -> str: ...

    def local(self, job: _Job) -> Path | None: ...

    def fetch(self, job: _Job) -> Path: ...

    def by_hand(self, job: _Job) -> list[str]: ...


@dataclass(frozen=True)
class ModelInfo:
    """A row of the table: what the model is, and its sources, tried in order."""

    name: str
    language: str
    layers: int
    hidden: int
    heads: int
    vocab_size: int
    summary: str
    sources: tuple[Source, ...] = ()
    aliases: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        for n in (self.name, *self.aliases):
            if not _NAME.match(n):
                raise ValueError(f"model name {n!r}: use letters, digits, '.', '_' and '-' only")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> ModelInfo:
        required = ("name", "language", "layers", "hidden", "heads", "vocab_size", "sources")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        sources = []
        for i, s in enumerate(d["sources"]):
            sw = f"{where} source {i}"
            if not isinstance(s, dict):
                raise ValueError(f"{sw}: expected an object")
            if "archive" in s:
                sources.append(ArchiveSource(Download.from_value(
                    {"url": s["archive"], **{k: s[k] for k in ("size", "md5", "sha256") if k in s}},
                    sw), subdir=s.get("subdir")))
            elif "files" in s:
                files = s["files"]
                if not isinstance(files, dict) or not files:
                    raise ValueError(f"{sw}: 'files' must map local file names to downloads")
                sources.append(FilesSource(
                    tuple((k, Download.from_value(v, f"{sw} {k}")) for k, v in files.items()),
                    config=s.get("config")))
            elif "hf" in s:
                sources.append(HubSource(s["hf"], revision=s.get("revision")))
            else:
                raise ValueError(f"{sw}: expected one of 'archive', 'files' or 'hf'")
        try:
            return cls(name=d["name"], language=d["language"], layers=int(d["layers"]),
                       hidden=int(d["hidden"]), heads=int(d["heads"]),
                       vocab_size=int(d["vocab_size"]), summary=d.get("summary", ""),
                       sources=tuple(sources), aliases=tuple(d.get("aliases", ())),
                       note=d.get("note", ""))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None


def _paddlenlp_config(layers, hidden, heads, vocab, act, max_pos, type_vocab,
                      intermediate=None) -> dict[str, Any]:
    """The model_config.json PaddleNLP builds from its init configuration (they ship none)."""
    return {"attention_probs_dropout_prob": 0.1, "hidden_act": act, "hidden_dropout_prob": 0.1,
            "hidden_size": hidden, "initializer_range": 0.02,
            "intermediate_size": intermediate or 4 * hidden, "max_position_embeddings": max_pos,
            "num_attention_heads": heads, "num_hidden_layers": layers,
            "type_vocab_size": type_vocab, "vocab_size": vocab, "pad_token_id": 0}


# Addresses as published by Baidu: the dygraph archives in PaddlePaddle/ERNIE
# ernie/modeling_ernie.py `resource_map` (unpack flat: ernie_config.json, saved_weights.pdparams,
# vocab.txt), the static archives in its repro README (flat: params/, ernie_config.json,
# vocab.txt), PaddleNLP's ERNIE_PRETRAINED_RESOURCE_FILES_MAP (+ tokenizer vocab map, init
# configuration), the wenxin models_hub scripts; Hugging Face ids from transformers' ERNIE
# archive list and the nghuyong model cards. No size or checksum has been published for any.
_BCE_DY = "https://ernie-github.cdn.bcebos.com/"
_BCE = "https://ernie.bj.bcebos.com/"
_NLP = "https://bj.bcebos.com/paddlenlp/models/transformers/"
_WENXIN = "http://bj.bcebos.com/wenxin-models/"


# One row a released model. arch: language, layers, hidden, heads, vocab, activation,
# positions, sentence types, ffn size (PaddleNLP's init configuration). Sources are tried in
# the order dygraph archive, static archive, PaddleNLP files, wenxin archive, Hugging Face.
_RELEASED: list[dict[str, Any]] = [
    dict(name="ernie-1.0", arch=("zh", 12, 768, 12, 18000, "relu", 513, 2, 3072),
         summary="ERNIE 1.0 base, Chinese (knowledge masking)", aliases=("ernie-1.0-base-zh",),
         dygraph="model-ernie1.0.1.tar.gz",
         static="https://baidu-nlp.bj.bcebos.com/ERNIE_stable-1.0.1.tar.gz",
         paddlenlp=("ernie/ernie_v1_chn_base.pdparams", "ernie/vocab.txt"),
         hf="nghuyong/ernie-1.0-base-zh"),
    dict(name="ernie-1.0-max-len-512", arch=("zh", 12, 768, 12, 18000, "relu", 512, 2, 3072),
         summary="ERNIE 1.0 base, Chinese, pre-trained with sequences up to 512",
         static=_BCE + "ERNIE_1.0_max-len-512.tar.gz"),
    dict(name="ernie-tiny", arch=("zh", 3, 1024, 16, 50006, "relu", 600, 2, 4096),
         summary="ERNIE tiny, Chinese, distilled 3-layer model",
         dygraph="model-ernie_tiny.1.tar.gz", static=_BCE + "ernie_tiny.tar.gz",
         paddlenlp=("ernie_tiny/ernie_tiny.pdparams", "ernie_tiny/vocab.txt"),
         hf="nghuyong/ernie-tiny",
         note="its tokenizer segments words (jieba) then sentencepiece "
              "(subword/spm_cased_simp_sampled.model); ErnieTokenizer's WordPiece over "
              "vocab.txt does not reproduce it"),
    dict(name="ernie-2.0-en", arch=("en", 12, 768, 12, 30522, "gelu", 512, 4, 3072),
         summary="ERNIE 2.0 base, English (continual multi-task pre-training)",
         aliases=("ernie-2.0-base-en",), dygraph="model-ernie2.0-en.1.tar.gz",
         static=_BCE + "ERNIE_Base_en_stable-2.0.0.tar.gz",
         paddlenlp=("ernie_v2_base/ernie_v2_eng_base.pdparams", "ernie_v2_base/vocab.txt"),
         hf="nghuyong/ernie-2.0-base-en"),
    dict(name="ernie-2.0-large-en", arch=("en", 24, 1024, 16, 30522, "gelu", 512, 4, 4096),
         summary="ERNIE 2.0 large, English", dygraph="model-ernie2.0-large-en.1.tar.gz",
         static=_BCE + "ERNIE_Large_en_stable-2.0.0.tar.gz",
         paddlenlp=("ernie_v2_large/ernie_v2_eng_large.pdparams", "ernie_v2_large/vocab.txt"),
         hf="nghuyong/ernie-2.0-large-en"),
    dict(name="ernie-2.0-base-zh", arch=("zh", 12, 768, 12, 18000, "relu", 513, 4, 3072),
         summary="ERNIE 2.0 base, Chinese (released later, via wenxin/PaddleNLP)",
         paddlenlp=("ernie_2.0/ernie_2.0_base_zh.pdparams",
                    "ernie_2.0/ernie_2.0_base_zh_vocab.txt"),
         wenxin="ernie_2.0_base_ch_open.tgz", hf="nghuyong/ernie-2.0-base-zh"),
    dict(name="ernie-2.0-large-zh", arch=("zh", 24, 1024, 16, 12800, "relu", 512, 4, 4096),
         summary="ERNIE 2.0 large, Chinese (released later, via wenxin/PaddleNLP)",
         paddlenlp=("ernie_2.0/ernie_2.0_large_zh.pdparams",
                    "ernie_2.0/ernie_2.0_large_zh_vocab.txt"),
         wenxin="ernie_2.0_large_ch_open.tgz"),
]


def _released(row: dict[str, Any]) -> ModelInfo:
    lang, layers, hidden, heads, vocab, act, positions, types, ffn = row["arch"]
    sources: list[Source] = []
    if "dygraph" in row:
        sources.append(ArchiveSource(Download(_BCE_DY + row["dygraph"])))
    if "static" in row:
        sources.append(ArchiveSource(Download(row["static"])))
    if "paddlenlp" in row:
        weights, vocab_file = row["paddlenlp"]
        sources.append(FilesSource(
            (("model_state.pdparams", Download(_NLP + weights)),
             ("vocab.txt", Download(_NLP + vocab_file))),
            config=_paddlenlp_config(layers, hidden, heads, vocab, act, positions, types, ffn)))
    if "wenxin" in row:
        sources.append(ArchiveSource(Download(_WENXIN + row["wenxin"])))
    if "hf" in row:
        sources.append(HubSource(row["hf"]))
    return ModelInfo(row["name"], lang, layers, hidden, heads, vocab, row["summary"],
                     tuple(sources), tuple(row.get("aliases", ())), row.get("note", ""))


_REGISTRY: dict[str, ModelInfo] = {}
_REGISTRY_LOCK = threading.Lock()
_ENV_CACHE: dict[str, Any] = {}


def register(info: ModelInfo) -> ModelInfo | None:
    """Add `info` to the table (replacing an entry of that name); returns what it replaced."""
    with _REGISTRY_LOCK:
        old = _REGISTRY.get(info.name)
        _REGISTRY[info.name] = info
    return old


def unregister(name: str) -> ModelInfo | None:
    with _REGISTRY_LOCK:
        return _REGISTRY.pop(name, None)


@contextlib.contextmanager
def registered(*infos: ModelInfo) -> Iterator[None]:
    """Entries present only inside the `with` block (earlier entries of those names come back)."""
    old = [(i.name, register(i)) for i in infos]
    try:
        yield
    finally:
        for name, previous in reversed(old):
            if previous is None:
                unregister(name)
            else:
                register(previous)


def _env_models() -> dict[str, ModelInfo]:
    path = os.environ.get(ENV_REGISTRY)
    if not path:
        return {}
    p = Path(path).expanduser()
    try:
        key = (str(p), p.stat().st_mtime_ns)
    except FileNotFoundError:
        raise FileNotFoundError(f"{ENV_REGISTRY}={path}: no such file") from None
    if _ENV_CACHE.get("key") != key:
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p} ({ENV_REGISTRY}): not a JSON file ({exc})") from None
        entries = raw.get("models") if isinstance(raw, dict) else raw
        if not isinstance(entries, list):
            raise ValueError(f"{p} ({ENV_REGISTRY}): expected {{\"models\": [...]}} or a list")
        models = {}
        for i, e in enumerate(entries):
            if not isinstance(e, dict):
                raise ValueError(f"{p} ({ENV_REGISTRY}) entry {i}: expected an object")
            info = ModelInfo.from_dict(e, f"{p} ({ENV_REGISTRY}) entry {i}")
            models[info.name] = info
        _ENV_CACHE.update(key=key, models=models)
    return dict(_ENV_CACHE["models"])


def known_models() -> dict[str, ModelInfo]:
    """The table: built-in entries, then `register()`ed ones, then those of $ERNIE2_REGISTRY."""
    with _REGISTRY_LOCK:
        table = dict(_REGISTRY)
    table.update(_env_models())
    return table


def get_model(name: str) -> ModelInfo:
    table = known_models()
    if name in table:
        return table[name]
    low = name.lower()
    for info in table.values():
        if low == info.name.lower() or low in (a.lower() for a in info.aliases):
            return info
    raise UnknownModelError(
        f"{name!r} is neither an existing file or directory nor a known model name. Known names: "
        f"{', '.join(sorted(table))}. Others can be added with ernie2.model.hub.register() or a "
        f"JSON file named by ${ENV_REGISTRY} (see docs/models.md).")


# ---------------------------------------------------------------------- settings
def cache_home() -> Path:
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "ernie2"


def is_offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def mirrored(url: str, mirror: str | None) -> str:
    """`url` with its scheme://host replaced by `mirror` (which may carry a path prefix)."""
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    return mirror.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def cached_path(name: str, home: str | os.PathLike | None = None) -> Path | None:
    """The converted directory of `name` in the cache, or None when it is not there yet."""
    final = Path(home) if home else cache_home()
    final = final / "models" / get_model(name).name
    return final if _is_ready(final) else None


def _is_ready(d: Path) -> bool:
    return (d / "config.json").is_file() and (d / "model.safetensors").is_file()


# ---------------------------------------------------------------------- downloading
class _Restart(Exception):
    """The partial file cannot be resumed; it was removed and the next attempt starts over."""


def verify(path: Path, expected: Download | None) -> str:
    """Check size, md5 and sha256 where known; returns the sha256 (for the record)."""
    size = path.stat().st_size
    if expected is not None and expected.size is not None and size != expected.size:
        raise ChecksumError(f"{path.name}: size {size} bytes, expected {expected.size}")
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    if expected is not None:
        for kind, want, got in (("md5", expected.md5, md5.hexdigest()),
                                ("sha256", expected.sha256, sha.hexdigest())):
            if want and want.lower() != got:
                raise ChecksumError(f"{path.name}: {kind} checksum mismatch: got {got}, "
                                    f"expected {want.lower()}")
    return sha.hexdigest()


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    return int(m.group(1)) if m else None


def _fetch_once(url: str, part: Path, progress: bool | None, timeout: float) -> None:
    from tqdm.auto import tqdm

    from ernie2 import __version__

    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"ernie2/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            total = re.match(r"bytes\s+\*/(\d+)", exc.headers.get("Content-Range", "") or "")
            if total and int(total.group(1)) == have:
                return  # the partial file was already whole
            part.unlink()
            raise _Restart(f"server refused to resume at byte {have}") from None
        raise
    with resp:
        status = getattr(resp, "status", None) or 200  # file:// responses carry no status
        mode = "wb"
        if have and status == 206:
            if _content_range_start(resp.headers.get("Content-Range")) != have:
                part.unlink()
                raise _Restart("server resumed at the wrong offset "
                               f"({resp.headers.get('Content-Range')})")
            mode = "ab"
            logger.info("resuming %s at byte %d", url, have)
        elif have:
            logger.info("%s: the server does not resume downloads; starting over", url)
            have = 0
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        got = 0
        with open(part, mode) as fh, tqdm(
                total=None if length is None else have + length, initial=have, unit="B",
                unit_scale=True, unit_divisor=1024, desc=part.name[:-5], leave=False,
                disable=None if progress is None else not progress) as bar:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                fh.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        if length is not None and got < length:
            raise DownloadError(f"connection closed after {have + got} of {have + length} bytes")


def fetch_file(url: str, dest: Path, expected: Download | None = None, *,
               progress: bool | None = None, retries: int = 3,
               timeout: float | None = None) -> str:
    """Download `url` to `dest` through `dest.part`, resuming (HTTP Range) or restarting after a
    broken connection, verifying size/checksums where known; returns the sha256.

    A file that fails verification is deleted, so nothing broken stays behind."""
    if timeout is None:
        timeout = float(os.environ.get(ENV_TIMEOUT) or 60)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))
        try:
            _fetch_once(url, part, progress, timeout)
            break
        except _Restart as exc:
            last = exc
        except urllib.error.HTTPError as exc:
            last = exc
            if exc.code not in (408, 429) and exc.code < 500:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        logger.warning("download of %s failed (%s)%s", url, _reason(last),
                       "; retrying" if attempt < retries else "")
    else:
        raise DownloadError(f"{url}: {_reason(last)} (gave up after {retries + 1} attempts"
                            + ("; the partial file is kept and resumed next time)"
                               if part.exists() else ")"))
    try:
        sha = verify(part, expected)
    except ChecksumError as exc:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{url}: {exc}; the download was deleted") from None
    os.replace(part, dest)
    return sha


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return f"cannot connect: {exc.reason}"
    return f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"


# ---------------------------------------------------------------------- unpacking
def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack a tar archive, refusing absolute paths, `..`, links and special files."""
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ArchiveError(f"{archive.name}: not a readable tar archive, truncated or corrupt "
                           f"({exc})") from None
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise ArchiveError(f"{archive.name}: truncated or corrupt archive ({exc})") from None
        for m in members:
            name = m.name.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
                raise ArchiveError(f"{archive.name}: refused: member {m.name!r} points outside "
                                   "the directory it is unpacked into")
            if m.issym() or m.islnk():
                raise ArchiveError(f"{archive.name}: refused: member {m.name!r} is a link (to "
                                   f"{m.linkname!r}); checkpoint archives need none")
            if not (m.isfile() or m.isdir()):
                raise ArchiveError(f"{archive.name}: refused: member {m.name!r} is a device, "
                                   "fifo or other special file")
            if not (root / name).resolve().is_relative_to(root):
                raise ArchiveError(f"{archive.name}: refused: member {m.name!r} resolves "
                                   "outside the target directory")
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            tf.extractall(dest, members=members, **kwargs)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise ArchiveError(f"{archive.name}: cannot unpack, truncated or corrupt archive "
                               f"({exc})") from None


def find_checkpoint_root(top: Path, subdir: str | None = None) -> Path:
    """The directory of an unpacked checkpoint holding its config: `top` itself or the single
    directory it wraps (archives are published both flat and with one top-level directory)."""
    root = top / subdir if subdir else top
    if not root.is_dir():
        raise ArchiveError(f"{top}: has no directory {subdir!r}")
    while not any((root / n).is_file() for n in CONFIG_NAMES):
        entries = [p for p in root.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        if len(entries) != 1 or not entries[0].is_dir() or len(root.relative_to(top).parts) > 2:
            raise ArchiveError(
                f"{root}: no {', '.join(CONFIG_NAMES)} here (found: "
                f"{', '.join(sorted(p.name for p in entries)) or 'nothing'})")
        root = entries[0]
    # wenxin dygraph checkpoints store `params` as one paddle.save file (their loader calls
    # paddle.load on it); give it the suffix the format detection looks for.
    params = root / "params"
    if params.is_file() and not any(root.glob("*.pdparams")):
        os.replace(params, root / "params.pdparams")
    return root


# ---------------------------------------------------------------------- sources
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


# ---------------------------------------------------------------------- resolving
_THREAD_LOCKS: dict[str, threading.Lock] = {}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One loader per model at a time, across threads and processes (released on crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _REGISTRY_LOCK:
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
        from ernie2.model.checkpoint import convert
        from ernie2.utils import atomic_write_text

        out = self.workdir / "converted"
        if out.exists():
            shutil.rmtree(out)
        ckpt = convert(root, out)
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


def resolve(name: str, *, home: str | os.PathLike | None = None, offline: bool | None = None,
            mirror: str | None = None, progress: bool | None = None, retries: int = 3) -> Path:
    """The local directory (config.json + model.safetensors + vocab.txt) of the known model
    `name`, fetched, verified, unpacked and converted into the cache the first time.

    Arguments left None come from $ERNIE2_HOME, $ERNIE2_OFFLINE and $ERNIE2_MIRROR."""
    info = get_model(name)
    home = Path(home).expanduser() if home else cache_home()
    if mirror is None:
        mirror = os.environ.get(ENV_MIRROR) or None
    job = _Job(info, home, is_offline() if offline is None else offline, mirror, progress,
               retries)
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


def iter_models() -> Iterable[ModelInfo]:
    return sorted(known_models().values(), key=lambda i: i.name)


for _row in _RELEASED:
    register(_released(_row))

__all__ = ["ArchiveError", "ArchiveSource", "ChecksumError", "Download", "DownloadError",
           "FilesSource", "HubSource", "ModelInfo", "ModelUnavailableError", "UnknownModelError",
           "cache_home", "cached_path", "describe_cached", "fetch_file", "find_checkpoint_root",
           "get_model", "is_offline", "iter_models", "known_models", "mirrored", "register",
           "registered", "resolve", "safe_extract", "unregister", "verify"]
