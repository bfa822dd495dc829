"""Unpacking checkpoint archives safely, and finding the checkpoint inside."""

from __future__ import annotations

import os
import re
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from ernie2.hub.download import ArchiveError

CONFIG_NAMES = ("config.json", "ernie_config.json", "model_config.json")


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
