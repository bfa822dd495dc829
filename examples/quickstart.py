"""The smallest end-to-end path on a CPU: train a vocab, build a small ERNIE, tokenize, encode,
save and reload (`make quickstart`; the main job is `make demo`)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ernie2 import ErnieConfig, ErnieModel, ErnieTokenizer
from ernie2.tokenizer import train_vocab

TEXTS = [
    "ERNIE 2.0 is a continual pre-training framework for language understanding.",
    "Pre-training tasks are introduced in stages, and each stage keeps the earlier tasks.",
    "百度提出了持续学习的语义理解框架。",
    "知识增强的语义表示模型在中文任务上表现出色。",
]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 20) + "\n", encoding="utf-8")
    vocab = train_vocab([corpus], size=400, out=out / "vocab.txt", min_frequency=1)
    print(f"vocab: {len(vocab)} tokens -> {out / 'vocab.txt'}")

    tokenizer = ErnieTokenizer(out / "vocab.txt")
    config = ErnieConfig.from_name("mini", vocab_size=tokenizer.vocab_size, use_task_id=True)
    torch.manual_seed(0)
    model = ErnieModel(config).eval()
    print(f"model: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"{model.num_parameters() / 1e6:.2f}M parameters")

    encs = tokenizer.encode_batch(TEXTS[:2], TEXTS[2:])
    batch = {k: torch.from_numpy(v) for k, v in tokenizer.pad(encs).items()}
    print("tokens:", tokenizer.convert_ids_to_tokens(encs[0].input_ids)[:12], "...")
    with torch.inference_mode():
        pooled, encoded = model(batch["input_ids"], batch["sent_ids"],
                                attention_mask=batch["attention_mask"])
    print(f"pooled {tuple(pooled.shape)}, encoded {tuple(encoded.shape)}")

    model.save_pretrained(out / "model", vocab_file=out / "vocab.txt")
    reloaded = ErnieModel.from_pretrained(out / "model").eval()
    with torch.inference_mode():
        pooled2, _ = reloaded(batch["input_ids"], batch["sent_ids"],
                              attention_mask=batch["attention_mask"])
    diff = (pooled - pooled2).abs().max().item()
    print(f"saved to {out / 'model'} and reloaded: max difference {diff:.2e}")
    assert diff == 0.0


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("demo_out/quickstart"))
