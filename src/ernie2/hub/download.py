"""Fetching published files: resumable downloads with retries, checksums, mirrors, offline mode,
and the hub's settings and errors."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

logger = logging.getLogger(__name__)

ENV_HOME = "ERNIE2_HOME"          # the cache (default $XDG_CACHE_HOME/ernie2 or ~/.cache/ernie2)
ENV_OFFLINE = "ERNIE2_OFFLINE"    # 1: never touch the network
ENV_MIRROR = "ERNIE2_MIRROR"      # replaces scheme://host of every published download address
ENV_REGISTRY = "ERNIE2_REGISTRY"  # a JSON file adding or replacing table entries
ENV_TIMEOUT = "ERNIE2_TIMEOUT"    # seconds a stalled connection may wait (default 60)


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
