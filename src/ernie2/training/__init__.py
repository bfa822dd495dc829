"""Training: the generic loop, stage plans and schedules, checkpoints, logging, evaluation and
ERNIE 2.0 continual multi-task pre-training."""

from ernie2.training.checkpoints import CheckpointManager
from ernie2.training.config import ConfigError, PretrainConfig, load_config
from ernie2.training.loop import NonFiniteLossError, StepResult, Trainer
from ernie2.training.pretrain import PretrainResult, plan_from_config, pretrain
from ernie2.training.schedule import Plan, allocate, build_plan

__all__ = ["CheckpointManager", "ConfigError", "NonFiniteLossError", "Plan", "PretrainConfig",
           "PretrainResult", "StepResult", "Trainer", "allocate", "build_plan", "load_config",
           "plan_from_config", "pretrain"]
