"""Fine-tuning: readers of labeled data, the six task types, metrics, CRF, reading comprehension,
presets, the fine-tuning entry point, evaluation (finetune.evaluate) and distillation into
smaller students (finetune.distill)."""

from ernie2.utils import lazy_exports


# Loaded on first use, so that reading data or serving a model does not import the trainer.
__getattr__, __all__ = lazy_exports(__name__, {
    "ernie2.finetune.model": "FinetuneModel",
    "ernie2.finetune.presets": "get_preset preset_values PRESETS",
    "ernie2.finetune.readers": "DataError Labels",
    "ernie2.finetune.run": "finetune FinetuneResult",
    "ernie2.finetune.settings": "FinetuneSettings",
    "ernie2.finetune.task_types": "get_task_type TASK_TYPES TaskOptions TaskType",
})
