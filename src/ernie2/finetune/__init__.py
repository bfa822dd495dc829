"""Fine-tuning: readers of labeled data, the six task types, metrics, CRF, reading comprehension,
presets, the fine-tuning entry point, evaluation (finetune.evaluate) and distillation into
smaller students (finetune.distill)."""

from ernie2.utils import lazy_exports

__all__ = ["DataError", "FinetuneModel", "FinetuneResult", "FinetuneSettings", "Labels",
           "PRESETS", "TASK_TYPES", "TaskOptions", "TaskType", "finetune", "get_preset",
           "get_task_type", "preset_values"]

# Loaded on first use, so that reading data or serving a model does not import the trainer.
__getattr__ = lazy_exports(__name__, {
    "FinetuneModel": "ernie2.finetune.model", "PRESETS": "ernie2.finetune.presets",
    "get_preset": "ernie2.finetune.presets", "preset_values": "ernie2.finetune.presets",
    "DataError": "ernie2.finetune.readers", "Labels": "ernie2.finetune.readers",
    "FinetuneResult": "ernie2.finetune.run", "FinetuneSettings": "ernie2.finetune.run",
    "finetune": "ernie2.finetune.run", "TASK_TYPES": "ernie2.finetune.task_types",
    "TaskOptions": "ernie2.finetune.task_types", "TaskType": "ernie2.finetune.task_types",
    "get_task_type": "ernie2.finetune.task_types"})
