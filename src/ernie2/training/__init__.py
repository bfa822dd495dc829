"""Training: the generic loop, stage plans and schedules, checkpoints, logging, evaluation and
ERNIE 2.0 continual multi-task pre-training. The package exports lazily: importing `Trainer`
does not load the pre-training driver."""

from ernie2.utils import lazy_exports


__getattr__, __all__ = lazy_exports(__name__, {
    "ernie2.training.snapshots": "CheckpointManager",
    "ernie2.training.config": "ConfigError load_config PretrainConfig",
    "ernie2.training.loop": "NonFiniteLossError StepResult Trainer",
    "ernie2.training.pretraining": "plan_from_config pretrain PretrainResult",
    "ernie2.training.schedule": "allocate build_plan Plan",
})
