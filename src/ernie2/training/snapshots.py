"""Snapshots of a training run (its checkpoints), written atomically, the last K kept, holding
everything needed to resume exactly. (Model weight formats are model/checkpoint.py.)

A checkpoint is a directory `step-00001200/` holding
- `model.safetensors`: the trained module's state (encoder and heads);
- `optimizer.safetensors` + the rest of the optimizer state in `trainer.json`;
- `trainer.json`: loop counters, scheduler, plan position, evaluation history (JSON);
- `rank-<r>.json`: each process's RNG states and data position;
- `manifest.json`: every other file's size and SHA-256, checked on load.
It is written into `.tmp-step-00001200/` and renamed into place only once complete, so a crash
during a save leaves the previous checkpoint as the latest usable one; `newest_intact()` skips
(and names) checkpoints damaged afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ernie2.training import distributed as dist_util
from ernie2.utils import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d+)$")
MANIFEST = "manifest.json"


class DamagedCheckpoint(ValueError):
    """A checkpoint whose files are missing, truncated or unreadable."""


# ---------------------------------------------------------------------- JSON-safe state
_PLAIN = frozenset((int, float, str, bool, type(None)))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        # A data order's state is mostly lists of token ids: copied in one go, not item by item.
        if all(type(v) in _PLAIN for v in obj):
            return list(obj)
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, torch.Tensor):
        if obj.numel() == 1 and obj.dim() == 0:
            return {"__scalar_tensor__": obj.item(), "dtype": str(obj.dtype).split(".")[-1]}
        raise TypeError("tensors belong in the safetensors files, not in JSON")
    if isinstance(obj, bytes):
        return {"__bytes__": base64.b64encode(obj).decode("ascii")}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint's JSON")


def _unjson(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        if "__bytes__" in obj:
            return base64.b64decode(obj["__bytes__"])
        if "__scalar_tensor__" in obj:
            return torch.tensor(obj["__scalar_tensor__"], dtype=getattr(torch, obj["dtype"]))
        return {k: _unjson(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unjson(v) for v in obj]
    return obj


def random_state_to_json(state: tuple) -> list:
    """A `random.Random` state (version, tuple of ints, gauss) as JSON-able lists."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def random_state_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss


def rng_state() -> dict:
    """Every RNG the run draws from: Python, NumPy, torch CPU and CUDA."""
    state = {"python": random_state_to_json(random.getstate()),
             "numpy": list(np.random.get_state()),
             "torch": bytes(torch.get_rng_state().numpy())}
    if torch.cuda.is_available():
        state["cuda"] = [bytes(s.numpy()) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(random_state_from_json(state["python"]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
    torch.set_rng_state(torch.frombuffer(bytearray(state["torch"]), dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.frombuffer(bytearray(s), dtype=torch.uint8)
                                      for s in state["cuda"]])


# ---------------------------------------------------------------------- optimizer state
def split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors of an optimizer state_dict (for safetensors) and the rest (for JSON)."""
    tensors, rest = {}, {}
    for idx, per_param in state["state"].items():
        rest[str(idx)] = {}
        for k, v in per_param.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                tensors[f"{idx}.{k}"] = v.detach().to("cpu").contiguous()
            else:
                rest[str(idx)][k] = v
    return tensors, {"state": rest, "param_groups": state["param_groups"]}


def join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {int(k): dict(v) for k, v in rest["state"].items()}
    for key, t in tensors.items():
        idx, _, name = key.partition(".")
        state.setdefault(int(idx), {})[name] = t
    return {"state": state, "param_groups": rest["param_groups"]}


# ---------------------------------------------------------------------- saving and loading
@dataclass
class Loaded:
    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict
    meta: dict
    rank: dict


class CheckpointManager:
    """Saves under `directory`, keeps the newest `keep`, finds the latest complete one."""

    def __init__(self, directory: str | os.PathLike, keep: int = 2):
        self.directory = Path(directory)
        self.keep = keep

    def _final(self, step: int) -> Path:
        return self.directory / f"step-{step:08d}"

    def save(self, step: int, model_state: dict[str, torch.Tensor], optimizer_state: dict,
             meta: dict, rank_state: dict) -> Path:
        """Every rank calls this; rank 0 writes the shared files, each rank its own."""
        from safetensors.torch import save as st_save

        final = self._final(step)
        tmp = self.directory / f".tmp-{final.name}"
        is_main = dist_util.rank() == 0
        try:
            if is_main:
                if tmp.exists():
                    shutil.rmtree(tmp)
                tmp.mkdir(parents=True)
            dist_util.barrier()
            r = dist_util.rank()
            atomic_write_text(tmp / f"rank-{r}.json", json.dumps(_jsonable(rank_state)))
            if is_main:
                state = {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}
                atomic_write_bytes(tmp / "model.safetensors", st_save(state))
                opt_tensors, opt_rest = split_optimizer_state(optimizer_state)
                atomic_write_bytes(tmp / "optimizer.safetensors", st_save(opt_tensors))
                body = {"step": step, "world_size": dist_util.world_size(),
                        "optimizer": opt_rest, **meta}
                atomic_write_text(tmp / "trainer.json", json.dumps(_jsonable(body), indent=1))
            dist_util.barrier()
            if is_main:
                atomic_write_text(tmp / MANIFEST, json.dumps(_manifest(tmp), indent=1))
                self._publish(tmp, final)
                self._prune()
                logger.info("saved checkpoint %s", final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            latest = self.latest()
            where = f": {exc.filename}" if exc.filename else ""
            raise OSError(f"saving checkpoint {final.name} failed ({exc.strerror or exc}{where}); "
                          f"the partial save is removed; newest checkpoint: {latest or 'none'}"
                          ) from exc
        dist_util.barrier()
        return final

    def _publish(self, tmp: Path, final: Path) -> None:
        if final.exists():  # the same step saved again (e.g. after a resume): swap it out
            old = final.with_name(f".old-{final.name}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        _fsync_dir(self.directory)

    def remove_stale(self) -> None:
        """Partial saves (`.tmp-*`) go; a checkpoint caught mid-swap by a crash (`.old-*` with
        no `step-*` beside it) is put back."""
        if not self.directory.is_dir():
            return
        for old in self.directory.glob(".old-step-*"):
            final = self.directory / old.name[len(".old-"):]
            if final.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(old, final)
        for stale in self.directory.glob(".tmp-step-*"):
            logger.info("removing %s, a save that did not finish", stale)
            shutil.rmtree(stale, ignore_errors=True)

    def _prune(self) -> None:
        self.remove_stale()
        steps = self.list()
        for path in steps[: max(0, len(steps) - self.keep)]:
            shutil.rmtree(path, ignore_errors=True)

    def list(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary directories are never listed)."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir()
                 if p.is_dir() and (m := _STEP_DIR.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        found = self.list()
        return found[-1] if found else None

    @staticmethod
    def read_meta(path: str | os.PathLike) -> dict:
        """A checkpoint's trainer.json: counters, plan, history, precision (no tensors)."""
        meta_file = Path(path) / "trainer.json"
        try:
            return _unjson(json.loads(meta_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: not a checkpoint (no trainer.json)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DamagedCheckpoint(f"{meta_file}: damaged ({exc})") from None

    def newest_intact(self) -> Loaded | None:
        """The newest checkpoint that loads, each damaged newer one named in a warning."""
        skipped = []
        for path in reversed(self.list()):
            try:
                return self.load(path)
            except DamagedCheckpoint as exc:
                logger.warning("skipping checkpoint %s: %s", path.name, exc)
                skipped.append(path.name)
        if skipped:
            raise DamagedCheckpoint(f"{self.directory}: every checkpoint is damaged "
                                    f"({', '.join(skipped)}); nothing to resume from")
        return None

    def load(self, path: str | os.PathLike | None = None) -> Loaded:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path) if path is not None else self.latest()
        if path is None:
            raise FileNotFoundError(f"{self.directory}: no checkpoint to resume from")
        verify_manifest(path)
        meta = self.read_meta(path)
        world = dist_util.world_size()
        if int(meta.get("world_size", 1)) != world:
            raise ValueError(f"{path} was written by {meta.get('world_size')} process(es); "
                             f"resuming it with {world} would change the data order. Resume "
                             f"with the same number of processes.")
        r = dist_util.rank()
        try:
            rank_state = _unjson(json.loads((path / f"rank-{r}.json").read_text(
                encoding="utf-8")))
            model = load_file(str(path / "model.safetensors"))
            optimizer = join_optimizer_state(load_file(str(path / "optimizer.safetensors")),
                                             meta.pop("optimizer"))
        except (OSError, ValueError, KeyError, SafetensorError) as exc:
            raise DamagedCheckpoint(f"{path}: cannot be read ({type(exc).__name__}: {exc})"
                                    ) from None
        return Loaded(path, model, optimizer, meta, rank_state)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _manifest(directory: Path) -> dict:
    return {"files": {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
                      for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}}


def verify_manifest(path: Path) -> None:
    """Raise DamagedCheckpoint unless every file the manifest lists has its size and checksum.
    Checkpoints written before manifests existed have none and are not checked."""
    file = path / MANIFEST
    if not file.is_file():
        return
    try:
        listed = json.loads(file.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedCheckpoint(f"{file}: damaged ({exc})") from None
    for name, want in listed.items():
        f = path / name
        if not f.is_file():
            raise DamagedCheckpoint(f"{f}: missing")
        size = f.stat().st_size
        if size != want["size"]:
            raise DamagedCheckpoint(f"{f}: {size} bytes, the manifest says {want['size']} "
                                    "(truncated or overwritten)")
        if _sha256(f) != want["sha256"]:
            raise DamagedCheckpoint(f"{f}: checksum differs from the manifest (corrupted)")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
