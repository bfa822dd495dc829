"""ERNIE 2.0 pre-training tasks: the protocol, the registry and one module per task.

The package exports lazily: importing it loads no task; reading the registry loads them all.

API (what the trainer calls):

    task = create_task("sentence_reordering", tokenizer=tok, max_len=128, task_id=3, m=3)
        # a registered name, "package.module:Class" or "path/to/file.py:Class"
    task.name, task.kind ("token" | "sequence"), task.num_classes, task.description
    task.build(doc, rng) -> Example | None       # one example, or None (a skip, in task.stats)
    head = task.make_head(config, encoder)       # encoder: the ErnieModel (MLM heads tie to its
                                                 # word embeddings)
    loss, sums = task.compute(head, pooled, encoded, batch)  # batch = collate(examples)
        # sums: {"correct", "count", "loss_sum"}, additive over batches
    stream = stream_examples(task, corpus_spec, seed=0, rank=0, world_size=1, split="train",
                             heldout=0.0, epochs=None, state=None)
    for example in stream: ...                   # endless, seeded, sharded by document
    stream.state_dict() -> dict; ExampleStream(..., state=saved) resumes exactly
    iter_batches(stream, batch_size, pad_id) -> padded batches

Registered tasks: knowledge_masking, capitalization, token_document_relation,
sentence_reordering, sentence_distance, discourse_relation, ir_relevance, plus the baselines
next_sentence (ERNIE 1.0) and mlm. `ernie2 tasks` lists them.
"""

from ernie2.utils import lazy_exports


__getattr__, __all__ = lazy_exports(__name__, {
    "ernie2.tasks.protocol": "collate Example PretrainingTask",
    "ernie2.tasks.registry": "create_task load_factory register REGISTRY",
    "ernie2.tasks.stream": "ExampleStream iter_batches stream_examples",
    "ernie2.tasks.sentence_reordering": "decode_permutation encode_permutation",
})
