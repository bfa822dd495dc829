"""Output heads that sit on the encoder: masked LM, pooled classification, per-token, span."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ernie2.model.config import ErnieConfig
from ernie2.model.modeling import activation

# The label value no loss scores (padding, unmasked tokens, special tokens): torch's
# cross-entropy default, shared by pre-training and fine-tuning.
IGNORE_INDEX = -100


POOLINGS = ("pooler", "cls", "mean", "pair")


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    return pooling


def pooled_width(how: str, hidden_size: int) -> int:
    """The width of the vector `pool(how, ...)` returns."""
    return 4 * hidden_size if check_pooling(how) == "pair" else hidden_size


def _masked_mean(encoded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(encoded.dtype)
    return (encoded * mask).sum(1) / mask.sum(1).clamp(min=1)


def pool(how: str, pooled: torch.Tensor | None, encoded: torch.Tensor,
         attention_mask: torch.Tensor | None, sent_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The vector a sentence-level head reads: "pooler", the encoder's pooled [CLS] output
    (tanh(dense([CLS])), as ERNIE's heads); "cls", the last layer's [CLS] state itself; "mean",
    the mean of the last layer's token states (padding left out); "pair", for [CLS] A [SEP] B
    [SEP] inputs, the mean states a of segment A and b of segment B joined as [a, b, |a-b|, a*b]
    (4 x hidden; the sentence-pair features of InferSent and Sentence-BERT). A head on "pair"
    can compare the two segments from its first step, where a [CLS] vector has to learn to
    first (docs/pretraining.md#sentence-level-tasks)."""
    if how == "pooler":
        if pooled is None:
            raise ValueError("pooling='pooler' needs an encoder with a pooler (has_pooler); "
                             "use pooling='cls' or 'mean'")
        return pooled
    if check_pooling(how) == "cls":
        return encoded[:, 0]
    length = encoded.shape[1]
    mask = (torch.ones(encoded.shape[:2], dtype=torch.bool, device=encoded.device)
            if attention_mask is None else attention_mask[:, :length].bool())
    if how == "mean":
        return _masked_mean(encoded, mask)
    if sent_ids is None:
        raise ValueError("pooling='pair' needs the batch's sent_ids (segment ids)")
    segment = sent_ids[:, :length]
    a = _masked_mean(encoded, mask & (segment == 0))
    b = _masked_mean(encoded, mask & (segment == 1))
    return torch.cat([a, b, (a - b).abs(), a * b], dim=-1)


class MaskedLMHead(nn.Module):
    """transform (dense + act + LayerNorm), then a decoder: tied to the word embedding (ERNIE,
    BERT), or its own `decoder.weight` when `config.tie_word_embeddings` is false.

    Untied, the output softmax no longer pulls every input embedding along the same few
    directions early in training (the tied demo model's embeddings had an effective rank of 3 to
    7 of 128 after 1000 to 5000 steps; untied, about 100), which is what bag-of-words fine-tuning
    tasks read (docs/pretraining.md#the-demo).

    Logits are computed only at the positions asked for: `positions` is a boolean mask
    [B, T] or a 1-D index into the flattened [B*T] sequence. Returns [N, vocab].
    """

    def __init__(self, config: ErnieConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        # Tied: not registered as a submodule, the weight belongs to (and is saved with) the
        # encoder.
        self._decoder = [word_embeddings]
        self.decoder: nn.Linear | None = None
        if not config.tie_word_embeddings:
            self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
            nn.init.normal_(self.decoder.weight, 0.0, config.initializer_range)
        nn.init.normal_(self.dense.weight, 0.0, config.initializer_range)
        nn.init.zeros_(self.dense.bias)

    @property
    def decoder_weight(self) -> torch.Tensor:
        return self._decoder[0].weight if self.decoder is None else self.decoder.weight

    def forward(self, encoded: torch.Tensor, positions: torch.Tensor | None = None):
        flat = encoded.reshape(-1, encoded.shape[-1])
        if positions is not None:
            index = positions.reshape(-1).nonzero().squeeze(1) if positions.dtype == torch.bool \
                else positions.reshape(-1)
            flat = flat.index_select(0, index)
        h = self.layer_norm(self.act(self.dense(flat)))
        return F.linear(h, self.decoder_weight, self.bias)


class SequenceHead(nn.Module):
    """Classification or regression (num_labels=1) on the pooled [CLS] output."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1,
                 initializer_range: float = 0.02):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, 0.0, initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))


class TokenHead(SequenceHead):
    """Per-token classification on the encoder output [B, T, H] -> [B, T, num_labels]."""


class SpanHead(nn.Module):
    """Start/end logits for extractive reading comprehension: [B, T] each."""

    def __init__(self, hidden_size: int, initializer_range: float = 0.02):
        super().__init__()
        self.qa_outputs = nn.Linear(hidden_size, 2)
        nn.init.normal_(self.qa_outputs.weight, 0.0, initializer_range)
        nn.init.zeros_(self.qa_outputs.bias)

    def forward(self, encoded: torch.Tensor):
        start, end = self.qa_outputs(encoded).unbind(-1)
        return start, end
