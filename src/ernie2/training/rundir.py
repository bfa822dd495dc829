"""An output_dir belongs to one run: a lock held for the run's life, and a used directory refused.

The lock is `output_dir/.lock`, held with `flock` (the kernel drops it when the process dies,
even by kill -9) and holding the owner's pid and host, so a refusal can say who has it and a lock
file left by a dead process is reported and taken over. A fresh run refuses a directory that
holds another run's outputs; `overwrite` clears exactly those outputs (nothing else in the
directory is touched).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path

logger = logging.getLogger(__name__)

# What a pre-training run writes into its output_dir (the only things --overwrite deletes).
RUN_OUTPUTS = ("checkpoints", "final", "stopped", "stages", "report", "tensorboard",
               "metrics.jsonl", "metrics.csv", "config.json")


class RunDirError(ValueError):
    """The output_dir is in use by another process or holds another run."""


def run_outputs(out: Path) -> list[str]:
    """The names of RUN_OUTPUTS present in `out` (an empty checkpoints/ does not count)."""
    found = []
    for name in RUN_OUTPUTS:
        p = out / name
        if p.is_dir() and not any(p.iterdir()):
            continue
        if p.exists():
            found.append(name)
    return found


def claim(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a fresh run into a used directory, or clear it when `overwrite`."""
    if resume and overwrite:
        raise RunDirError("--resume continues the run in output_dir and --overwrite deletes it: "
                          "give one of them")
    used = run_outputs(out)
    if not used or resume:
        return
    if not overwrite:
        raise RunDirError(f"{out} already holds a run ({', '.join(used)}); continue it with "
                          "--resume, delete it with --overwrite, or choose another output_dir")
    for name in used:
        p = out / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    logger.warning("--overwrite: deleted the previous run's %s from %s", ", ".join(used), out)


def _owner(text: str) -> tuple[int | None, str]:
    pid, _, host = text.strip().partition(" ")
    return (int(pid) if pid.isdigit() else None), host


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunLock:
    """`with RunLock(out):` holds out/.lock; a second holder gets RunDirError naming the first."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid, host = _owner(os.pread(fd, 200, 0).decode("utf-8", "replace"))
                os.close(fd)
                raise RunDirError(f"{self.path.parent} is in use by another run (pid {pid} on "
                                  f"{host or 'this machine'}); wait for it to end or choose "
                                  "another output_dir") from None
            try:  # the holder we waited on may have removed the file: lock the current one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        pid, host = _owner(os.pread(fd, 200, 0).decode("utf-8", "replace"))
        if pid is not None and pid != os.getpid():
            here = host == socket.gethostname()
            state = "no longer running" if here and not _alive(pid) else "not holding it"
            logger.warning("%s: stale lock of pid %d on %s (%s): taken over", self.path, pid,
                           host or "?", state)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            os.close(self.fd)  # closing releases the flock
            self.fd = None
