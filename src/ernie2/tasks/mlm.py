"""Plain masked LM (BERT style) as a baseline: single tokens masked, no knowledge units."""

from __future__ import annotations

from ernie2.tasks.knowledge_masking import KnowledgeMasking
from ernie2.tasks.registry import register


@register("mlm")
def masked_lm(tokenizer=None, max_len: int = 128, task_id: int = 0, mask_rate: float = 0.15):
    """Knowledge masking restricted to the token level: 15% of WordPiece tokens, 80/10/10."""
    task = KnowledgeMasking(tokenizer, max_len, task_id, levels={"token": 1.0},
                            mask_rate=mask_rate, name="mlm")
    task.description = "predict masked single tokens (BERT-style baseline)"
    return task
