"""Training: the generic loop, stage plans and schedules, checkpoints, logging, evaluation and
ERNIE 2.0 continual multi-task pre-training. The package exports lazily: importing `Trainer`
does not load the pre-training driver."""

from ernie2.utils import lazy_exports

__all__ = ["CheckpointManager", "ConfigError", "NonFiniteLossError", "Plan", "PretrainConfig",
           "PretrainResult", "StepResult", "Trainer", "allocate", "build_plan", "load_config",
           "plan_from_config", "pretrain"]

__getattr__ = lazy_exports(__name__, {
    "CheckpointManager": "ernie2.training.snapshots", "ConfigError": "ernie2.training.config",
    "PretrainConfig": "ernie2.training.config", "load_config": "ernie2.training.config",
    "NonFiniteLossError": "ernie2.training.loop", "StepResult": "ernie2.training.loop",
    "Trainer": "ernie2.training.loop", "PretrainResult": "ernie2.training.pretraining",
    "plan_from_config": "ernie2.training.pretraining", "pretrain": "ernie2.training.pretraining",
    "Plan": "ernie2.training.schedule", "allocate": "ernie2.training.schedule",
    "build_plan": "ernie2.training.schedule"})
