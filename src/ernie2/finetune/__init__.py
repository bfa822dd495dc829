"""Fine-tuning: readers of labeled data, the six task types, metrics, CRF, reading comprehension,
presets, the fine-tuning entry point and the functions that use its models."""

from ernie2.finetune.model import FinetuneModel
from ernie2.finetune.presets import PRESETS, get_preset, preset_values
from ernie2.finetune.readers import DataError, Labels
from ernie2.finetune.run import FinetuneResult, FinetuneSettings, finetune
from ernie2.finetune.task_types import TASK_TYPES, TaskOptions, TaskType, get_task_type

__all__ = ["DataError", "FinetuneModel", "FinetuneResult", "FinetuneSettings", "Labels",
           "PRESETS", "TASK_TYPES", "TaskOptions", "TaskType", "finetune", "get_preset",
           "get_task_type", "preset_values"]
