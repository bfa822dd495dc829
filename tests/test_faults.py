"""Faults injected into pre-training runs: a used or locked output_dir, a resume with a changed
config, damaged checkpoints, a full disk during a save, kill -9 and Ctrl-C at random moments,
and the command line's one error path."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ernie2.cli import main
from ernie2.training import CheckpointManager, ConfigError, pretrain
from ernie2.training.rundir import RunDirError, RunLock
from test_training_toytasks import base_config, spec

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def small_config(tmp: Path, **changes) -> dict:
    """Two short stages, a checkpoint every 2 steps: a run takes about a second."""
    cfg = base_config(tmp, **changes)
    cfg["stages"] = [{"name": "words", "steps": 4, "tasks": [{"task": spec("ToyMLM"),
                                                               "name": "mlm"}]},
                     {"name": "order", "steps": 4, "tasks": [{"task": spec("ToyOrder"),
                                                               "name": "order"}]}]
    cfg["checkpoint"] = {"every": 2, "keep": 3, "stage_models": False}
    cfg["eval"]["examples"] = 8
    cfg["train"]["shuffle_buffer"] = 16  # a checkpoint stores the buffer: keep saves quick
    return cfg


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(out) / "final" / "model.safetensors"))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The uninterrupted run every resumed one must equal."""
    tmp = tmp_path_factory.mktemp("full")
    cfg = small_config(tmp)
    pretrain(cfg)
    return cfg, weights(cfg["output_dir"])


def ckpt_names(cfg) -> list[str]:
    return [p.name for p in CheckpointManager(Path(cfg["output_dir"]) / "checkpoints").list()]


# ---------------------------------------------------------------------- output_dir
def test_fresh_run_into_a_used_dir_is_refused_and_overwrite_clears_it(full, tmp_path):
    cfg, _ = full
    cfg = {**cfg, "seed": 4}
    out = Path(cfg["output_dir"])
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(RunDirError, match=r"already holds a run .*checkpoints.*--overwrite"):
        pretrain(cfg)
    assert ckpt_names(cfg)[-1] == "step-00000008"  # nothing touched
    result = pretrain(cfg, overwrite=True)
    assert result.completed
    assert ckpt_names(cfg) == ["step-00000004", "step-00000006", "step-00000008"]
    meta = CheckpointManager.read_meta(out / "checkpoints" / "step-00000008")
    assert meta["config"]["seed"] == 4  # the new run's, not the old one's
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if r["split"] == "eval"] == [4, 8]  # one run's log only
    assert (out / "notes.txt").read_text() == "mine"  # only run outputs are deleted
    with pytest.raises(RunDirError, match="give one of them"):
        pretrain(cfg, resume=True, overwrite=True)


def test_a_second_run_on_a_locked_dir_is_refused_naming_the_holder(tmp_path):
    cfg = small_config(tmp_path)
    out = Path(cfg["output_dir"])
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ernie2.training.rundir import RunLock\n"
         f"with RunLock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"in use by another run \(pid {holder.pid} "):
            pretrain(cfg)
        assert not (out / "config.json").exists() and not (out / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without unlocking (kill -9): its lock file is stale, reported and taken
    assert (out / ".lock").read_text().split()[0] == str(holder.pid)
    assert pretrain(cfg).completed
    assert not (out / ".lock").exists()


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunDirError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).__enter__()
    with RunLock(tmp_path):  # released: free again
        pass


# ---------------------------------------------------------------------- resume
def test_resume_with_changed_settings_is_refused_unless_allowed(full, tmp_path):
    cfg, final = full
    cfg = {**cfg, "output_dir": str(tmp_path / "run")}
    pretrain(cfg, max_steps=3)
    changed = {**cfg, "seed": 9, "train": {**cfg["train"], "lr": 0.5, "batch_size": 2},
               "model": {**cfg["model"], "max_len": 32},
               "log": {**cfg["log"], "every": 1}}  # logging changes no result
    with pytest.raises(ConfigError) as err:
        pretrain(changed, resume=True)
    msg = str(err.value)
    for key in ("seed: 3 -> 9", "train.lr: 0.001 -> 0.5", "train.batch_size: 8 -> 2",
                "model.max_len: 48 -> 32", "--allow-change train.lr"):
        assert key in msg
    assert "log.every" not in msg
    lr_only = {**cfg, "train": {**cfg["train"], "lr": 2e-3}}
    with pytest.raises(ConfigError, match="train.lr"):
        pretrain(lr_only, resume=True, allow_change=["seed"])
    result = pretrain(lr_only, resume=True, allow_change=["train.lr"])
    assert result.completed and not same(weights(result.output_dir), final)
    rows = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text()
            .splitlines()]
    assert {"split": "resume", "step": 2, "tasks": {}, "changed": {"train.lr": [1e-3, 2e-3]}} \
        in rows
    meta = CheckpointManager.read_meta(result.output_dir / "checkpoints" / "step-00000008")
    assert meta["changes"] == [{"step": 2, "changed": {"train.lr": [1e-3, 2e-3]}}]


def test_resume_with_a_changed_lr_scale_carries_the_optimizer_state_by_name(full, tmp_path):
    """train.embedding_lr_scale splits the optimizer's groups: a resume allowed to change it
    carries every parameter's moments into the new groups by name (the recipe maps the state
    itself), and the token tables' groups then have the new scale."""
    cfg, _ = full
    cfg = {**cfg, "output_dir": str(tmp_path / "run")}
    pretrain(cfg, max_steps=3)
    newest = Path(cfg["output_dir"]) / "checkpoints" / "step-00000002"
    saved = CheckpointManager(newest.parent).load(newest).optimizer
    assert len(saved["param_groups"]) == 2
    scaled = {**cfg, "train": {**cfg["train"], "embedding_lr_scale": 3.0}}
    with pytest.raises(ConfigError, match="train.embedding_lr_scale"):
        pretrain(scaled, resume=True)
    result = pretrain(scaled, resume=True, allow_change=["train.embedding_lr_scale"])
    assert result.completed
    last = CheckpointManager.read_meta(result.output_dir / "checkpoints" / "step-00000008")
    assert last["changes"] == [{"step": 2, "changed": {"train.embedding_lr_scale": [1.0, 3.0]}}]
    resumed = CheckpointManager(newest.parent).load(newest.parent / "step-00000004").optimizer
    scales: dict[float, set[str]] = {}
    for g in resumed["param_groups"]:
        scales.setdefault(g["lr_scale"], set()).update(g["names"])
    assert set(scales) == {1.0, 3.0}
    assert {"encoder.embeddings.word_embeddings.weight", "heads.mlm.bias"} <= scales[3.0]
    n_params = sum(len(g["params"]) for g in resumed["param_groups"])
    assert n_params == sum(len(g["params"]) for g in saved["param_groups"])
    # every parameter that had moments at step 2 has them at step 4, counted from the start
    # (4 Adam steps, not the 2 since the resume: the moments were carried, not restarted)
    assert len(resumed["state"]) == len(saved["state"]) > 0
    assert {float(st["step"]) for st in resumed["state"].values()} == {4.0}


@pytest.mark.parametrize("damage", ["truncate model", "break trainer.json", "drop rank file"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(full, tmp_path, damage, caplog):
    cfg, final = full
    cfg = {**cfg, "output_dir": str(tmp_path / "run")}
    pretrain(cfg, max_steps=7)
    assert ckpt_names(cfg) == ["step-00000002", "step-00000004", "step-00000006"]
    newest = Path(cfg["output_dir"]) / "checkpoints" / "step-00000006"
    if damage == "truncate model":
        f = newest / "model.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif damage == "break trainer.json":
        f = newest / "trainer.json"
        f.write_text(f.read_text().replace('"global_step": 6', '"global_step": 5'))
    else:
        (newest / "rank-0.json").unlink()
    (Path(cfg["output_dir"]) / "checkpoints" / ".tmp-step-00000008").mkdir()  # a dead save
    with caplog.at_level("WARNING"):
        result = pretrain(cfg, resume=True)
    assert "skipping checkpoint step-00000006" in caplog.text
    assert result.completed and same(weights(result.output_dir), final)
    assert not list((Path(cfg["output_dir"]) / "checkpoints").glob(".tmp-*"))


def test_every_checkpoint_damaged_is_one_clear_error(full, tmp_path):
    cfg, _ = full
    cfg = {**cfg, "output_dir": str(tmp_path / "run")}
    pretrain(cfg, max_steps=3)
    f = Path(cfg["output_dir"]) / "checkpoints" / "step-00000002" / "model.safetensors"
    f.write_bytes(b"\0" * 8)
    with pytest.raises(ValueError, match=r"every checkpoint is damaged \(step-00000002\)"):
        pretrain(cfg, resume=True)


def test_a_crash_mid_swap_puts_the_checkpoint_back(tmp_path):
    """A step saved again (after a resume) swaps the old copy out as .old-step-N before the new
    one moves in; a crash between the two renames must not lose step N."""
    from ernie2.training.snapshots import rng_state

    manager = CheckpointManager(tmp_path, keep=2)
    opt = {"state": {}, "param_groups": [{"lr": 0.1, "params": []}]}
    manager.save(4, {"w": torch.ones(2)}, opt, {}, {"rng": rng_state()})
    os.replace(tmp_path / "step-00000004", tmp_path / ".old-step-00000004")
    (tmp_path / ".tmp-step-00000004").mkdir()  # the new copy, never finished
    manager.remove_stale()
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000004"]
    assert torch.equal(manager.load().model["w"], torch.ones(2))


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(full, tmp_path, monkeypatch,
                                                              capsys):
    import ernie2.training.snapshots as ck

    cfg, final = full
    cfg, cfg_file = _run_config(cfg, tmp_path)
    real = ck.atomic_write_bytes

    def full_disk(path, data):
        if "step-00000004" in str(path) and Path(path).name == "optimizer.safetensors":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(ck, "atomic_write_bytes", full_disk)
    assert main(["pretrain", str(cfg_file), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ernie2 pretrain: error: ")
    assert "saving checkpoint step-00000004 failed (No space left on device" in err[0]
    assert "newest checkpoint: " in err[0] and "step-00000002" in err[0]
    assert ckpt_names(cfg) == ["step-00000002"]
    assert not list((Path(cfg["output_dir"]) / "checkpoints").glob(".tmp-*"))
    monkeypatch.setattr(ck, "atomic_write_bytes", real)
    assert main(["pretrain", str(cfg_file), "--no-progress", "--resume"]) == 0
    assert same(weights(cfg["output_dir"]), final)


# ---------------------------------------------------------------------- signals
def _fork(argv: list[str], log: Path) -> int:
    """`ernie2 ARGV` in a forked child (no second torch import, the same thread count, so the
    same float sums), its output in `log`; returns the pid."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = sys.stderr = open(fd, "w", buffering=1, closefd=False)
            code = main(argv)
        finally:
            os._exit(code)
    return pid


def _wait_for_step(pid: int, ckpts: CheckpointManager, step: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
        latest = ckpts.latest()
        if latest is not None and int(latest.name.split("-")[1]) >= step:
            return
        time.sleep(0.005)
    raise AssertionError(f"the run ended (or stalled) before step {step}")


def _run_config(cfg: dict, tmp_path: Path, **changes) -> tuple[dict, Path]:
    cfg = {**cfg, "output_dir": str(tmp_path / "run"), **changes}
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return cfg, cfg_file


def test_a_finished_run_left_with_a_stale_lock_resumes_to_the_same_model(full, tmp_path):
    """What a kill between writing `final` and releasing the lock leaves: the next resume
    takes the lock over, writes the same model and releases it."""
    cfg, final = full
    cfg = {**cfg, "output_dir": str(tmp_path / "run")}
    assert pretrain(cfg).completed
    lock = Path(cfg["output_dir"]) / ".lock"
    lock.write_text("999999 some-host\n", encoding="utf-8")  # no process holds its flock
    assert pretrain(cfg, resume=True).completed
    assert same(weights(cfg["output_dir"]), final)
    assert not lock.exists()


def test_kill_9_at_random_moments_resumes_bit_identical(full, tmp_path):
    """Four kills at random moments (a save every step, so some land mid-save), each run after
    the first resuming the one before; the last resume finishes the run."""
    cfg, final = full
    cfg, cfg_file = _run_config(cfg, tmp_path,
                                checkpoint={**cfg["checkpoint"], "every": 1, "keep": 2})
    ckpts = CheckpointManager(Path(cfg["output_dir"]) / "checkpoints")
    rng = random.Random(14)
    lock = Path(cfg["output_dir"]) / ".lock"
    total = sum(st["steps"] for st in cfg["stages"])
    for _trial in range(4):
        done = int(ckpts.latest().name.split("-")[1]) if ckpts.latest() else 0
        if done >= total:  # killed after the last step's save, before `final`: resume below
            break
        pid = _fork(["pretrain", str(cfg_file), "--no-progress", "--resume"], tmp_path / "log")
        _wait_for_step(pid, ckpts, done + 1)
        time.sleep(rng.uniform(0, 0.15))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if (Path(cfg["output_dir"]) / "final").exists():
            break
        assert lock.read_text().split()[0] == str(pid)  # stale: the next run takes it over
    # A kill after `final` was written but before the lock was released leaves a stale lock:
    # the next run takes it over (and, the run being finished, writes the same model again).
    if not (Path(cfg["output_dir"]) / "final").exists() or lock.exists():
        assert pretrain(cfg, resume=True).completed
    assert same(weights(cfg["output_dir"]), final)
    assert not lock.exists()


def test_ctrl_c_saves_a_checkpoint_and_exits_130(full, tmp_path):
    cfg, final = full
    cfg, cfg_file = _run_config(cfg, tmp_path)
    log = tmp_path / "log"
    pid = _fork(["pretrain", str(cfg_file), "--no-progress"], log)
    _wait_for_step(pid, CheckpointManager(Path(cfg["output_dir"]) / "checkpoints"), 2)
    os.kill(pid, signal.SIGINT)
    status = os.waitpid(pid, 0)[1]
    if (Path(cfg["output_dir"]) / "final").exists():
        pytest.skip("the run finished before the signal arrived")
    out = log.read_text()
    assert os.waitstatus_to_exitcode(status) == 130, out[-2000:]
    assert f"Resume with: ernie2 pretrain {cfg_file} --resume" in out
    assert main(["pretrain", str(cfg_file), "--no-progress", "--resume"]) == 0
    assert same(weights(cfg["output_dir"]), final)


# ---------------------------------------------------------------------- the CLI's error path
def test_unforeseen_failures_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys,
                                                                        monkeypatch):
    task_file = tmp_path / "bad_task.py"
    task_file.write_text("class Broken:\n    def __init__(self, **kw):\n"
                         "        raise RuntimeError('my task is broken')\n", encoding="utf-8")
    cfg = small_config(tmp_path)
    cfg["stages"] = [{"name": "s", "steps": 2, "tasks": [{"task": f"{task_file}:Broken"}]}]
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["pretrain", str(cfg_file), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ernie2 pretrain: error: RuntimeError: my task is broken (--debug shows the "
                   "traceback)"]
    with pytest.raises(RuntimeError, match="my task is broken"):
        main(["pretrain", str(cfg_file), "--no-progress", "--overwrite", "--debug"])
    monkeypatch.setenv("ERNIE2_DEBUG", "1")
    with pytest.raises(RuntimeError, match="my task is broken"):
        main(["pretrain", str(cfg_file), "--no-progress", "--overwrite"])




def test_an_os_error_is_one_line_naming_the_file(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    cfg = small_config(tmp_path, output_dir=str(blocker / "run"))
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["pretrain", str(cfg_file), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ernie2 pretrain: error: NotADirectoryError: {blocker / 'run'}: Not a "
                   "directory (--debug shows the traceback)"]
