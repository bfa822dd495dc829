"""The ERNIE encoder: embeddings (with the optional task embedding), post-LN Transformer, pooler."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ernie2.model.config import ErnieConfig


def activation(name: str):
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    if name == "gelu_new":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "tanh":
        return torch.tanh
    raise ValueError(f"unknown activation {name!r}")


def sinusoidal_positions(n: int, width: int, std: float) -> torch.Tensor:
    """The Transformer's position table (Vaswani et al. 2017: sin at even features, cos at odd
    ones, wavelengths from 2*pi to 10000*2*pi), scaled to standard deviation `std`: a start for
    learned absolute positions from which offsets between tokens are linear maps, so that a
    young model can attend to its neighbours (a fresh N(0, 0.02) table leaves a small model's
    tags a position off; docs/pretraining.md#the-demo)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, width, 2, dtype=torch.float64) / width)
    table = torch.zeros(n, width, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : width // 2]
    return (table * (std / table.std())).float()


def mimetic_attention_(attention: ErnieSelfAttention, qk: float, vo: float) -> None:
    """Mimetic initialization (Trockman and Kolter 2023), in place, from torch's global RNG.

    Head h's score matrix W_q[h]^T W_k[h] is set to the best rank-head_dim approximation of
    qk * (Z + I), and the layer's value-output product W_o W_v to vo * (Z' - I), Z and Z' with
    N(0, 1/hidden) entries, each factored by its SVD into two square-root halves. Trained
    attention layers look like this (the identity part: heads that attend to the token itself
    and, through position embeddings, to its neighbours); starting there, a small model learns
    to read context in fewer steps (docs/pretraining.md#the-demo). Biases stay zero."""
    h, d, n = attention.query.in_features, attention.head_dim, attention.num_heads
    eye = torch.eye(h)
    with torch.no_grad():
        if qk > 0:
            for i in range(n):
                u, s, vh = torch.linalg.svd(qk * (torch.randn(h, h) / h ** 0.5 + eye))
                root = s[:d].sqrt()
                attention.query.weight[i * d:(i + 1) * d] = (u[:, :d] * root).T
                attention.key.weight[i * d:(i + 1) * d] = vh[:d] * root[:, None]
        if vo > 0:
            u, s, vh = torch.linalg.svd(vo * (torch.randn(h, h) / h ** 0.5 - eye))
            root = s.sqrt()
            # value(x) = W_v x and output(c) = W_o c: W_o W_v = u diag(s) vh
            attention.value.weight.copy_(vh * root[:, None])
            attention.output.weight.copy_(u * root)


class ErnieEmbeddings(nn.Module):
    def __init__(self, config: ErnieConfig):
        super().__init__()
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        # The one thing the encoder knows about tasks: ERNIE 2.0's task embedding.
        self.task_type_embeddings = (
            nn.Embedding(config.task_type_vocab_size, h) if config.use_task_id else None)
        self.layer_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, sent_ids=None, task_ids=None, pos_ids=None):
        seq_len = input_ids.shape[1]
        if seq_len > self.position_embeddings.num_embeddings:
            raise ValueError(f"sequence length {seq_len} exceeds max_position_embeddings "
                             f"{self.position_embeddings.num_embeddings}")
        x = self.word_embeddings(input_ids)
        if pos_ids is None:
            x = x + self.position_embeddings.weight[:seq_len].unsqueeze(0)
        else:
            x = x + self.position_embeddings(pos_ids)
        if sent_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(sent_ids)
        if self.task_type_embeddings is not None:
            if task_ids is None:
                x = x + self.task_type_embeddings.weight[0]
            elif task_ids.dim() < 2:  # one id per example, or one for the batch
                x = x + self.task_type_embeddings(task_ids).reshape(-1, 1, x.shape[-1])
            else:
                x = x + self.task_type_embeddings(task_ids)
        return self.dropout(self.layer_norm(x))


# How attention is computed (ErnieModel.attention): "sdpa" (F.scaled_dot_product_attention),
# "eager" (two matrix products and a softmax in fp32) or "auto": eager under bf16 autocast on a
# CPU that runs bf16 natively, for sequences up to EAGER_MAX_LEN tokens, else SDPA. There SDPA's
# CPU kernel is slow on short sequences: at the demo's shape (32 rows x 2 heads x 96 tokens x 64)
# one call's forward and backward took 2.7x eager's time, at 128 tokens and 12 heads 1.9x; from
# 256 tokens eager is the slower (benchmarks/attention.py). Without native bf16 (AVX2) bf16
# matrix products are slow and SDPA stays. Both compute the same function; their floats differ
# in the last bits.
ATTENTION = ("auto", "sdpa", "eager")
EAGER_MAX_LEN = 128


def native_bf16() -> bool:
    """Whether this CPU runs bf16 natively (avx512_bf16 or AMX), as oneDNN reports it."""
    global _NATIVE_BF16
    if _NATIVE_BF16 is None:
        try:
            _NATIVE_BF16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            _NATIVE_BF16 = False
    return _NATIVE_BF16


_NATIVE_BF16: bool | None = None


def _eager_wanted(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.shape[1] <= EAGER_MAX_LEN
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and native_bf16())


def eager_attention(q, k, v, mask, dropout_p: float = 0.0):
    """softmax(q k^T / sqrt(d) + mask) v, the softmax in fp32; `mask` is boolean (True: attend)
    and broadcasts to [B, heads, T, T], as SDPA's."""
    scores = (q @ k.transpose(-1, -2)).float() * (q.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = scores.softmax(-1)
    if dropout_p:
        probs = F.dropout(probs, dropout_p)
    return probs.to(v.dtype) @ v


class ErnieSelfAttention(nn.Module):
    def __init__(self, config: ErnieConfig):
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.output = nn.Linear(h, h)
        self.dropout_p = config.attention_probs_dropout_prob
        self.impl = "auto"

    def forward(self, x, mask):
        b, t, h = x.shape
        q, k, v = (proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        p = self.dropout_p if self.training else 0.0
        if self.impl == "eager" or (self.impl == "auto" and _eager_wanted(x)):
            ctx = eager_attention(q, k, v, mask, p)
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.output(ctx.transpose(1, 2).reshape(b, t, h))


class ErnieLayer(nn.Module):
    """Post-LN Transformer block: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, config: ErnieConfig):
        super().__init__()
        h = config.hidden_size
        self.attention = ErnieSelfAttention(config)
        self.attention_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(h, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, h)
        self.ffn_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.act = activation(config.hidden_act)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        ffn_drop = config.intermediate_dropout_prob
        self.ffn_dropout = nn.Dropout(ffn_drop) if ffn_drop else nn.Identity()

    def forward(self, x, mask):
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        y = self.ffn_out(self.ffn_dropout(self.act(self.ffn_in(x))))
        return self.ffn_norm(x + self.dropout(y))


class ErniePooler(nn.Module):
    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, encoded):
        return torch.tanh(self.dense(encoded[:, 0]))


class ErnieModel(nn.Module):
    """`pooled, encoded = model(ids, sent_ids=None, task_ids=None, attention_mask=None)`.

    `attention_mask` (1 = token, 0 = padding) defaults to `ids != pad_token_id`, as in ERNIE.
    `task_ids` may be per token [B, T], per example [B] or one scalar. `padded=False` says no
    row is padded (a batch's collate knows it from the lengths), so the forward need not read the
    mask back from the device to choose SDPA's unmasked kernel; None: look at the mask.
    With `output_hidden_states=True` a third element holds the embedding output and every
    layer's output.
    """

    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.config = config
        self.embeddings = ErnieEmbeddings(config)
        self.layers = nn.ModuleList(ErnieLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = ErniePooler(config) if config.has_pooler else None
        self.apply(self._init_weights)
        if config.position_init == "sinusoidal":
            with torch.no_grad():
                self.embeddings.position_embeddings.weight.copy_(sinusoidal_positions(
                    config.max_position_embeddings, config.hidden_size,
                    config.position_init_std))
        if config.attention_init == "mimetic":
            for layer in self.layers:
                mimetic_attention_(layer.attention, config.mimetic_qk, config.mimetic_vo)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def device(self) -> torch.device:
        return self.embeddings.word_embeddings.weight.device

    @property
    def attention(self) -> str:
        """How the layers compute attention: "auto" (the default), "sdpa" or "eager" (see
        ATTENTION). A setting of the running model, not saved with it."""
        return self.layers[0].attention.impl if len(self.layers) else "auto"

    @attention.setter
    def attention(self, impl: str) -> None:
        if impl not in ATTENTION:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {impl!r}")
        for layer in self.layers:
            layer.attention.impl = impl

    def forward(self, input_ids, sent_ids=None, task_ids=None, attention_mask=None,
                pos_ids=None, output_hidden_states: bool = False, padded: bool | None = None):
        if attention_mask is None:
            attention_mask = input_ids != self.config.pad_token_id
        mask = attention_mask.bool()
        if padded is None:
            padded = not bool(mask.all())
        # No padding at all: let SDPA take its unmasked (flash) kernel.
        sdpa_mask = mask[:, None, None, :] if padded else None
        x = self.embeddings(input_ids, sent_ids, task_ids, pos_ids)
        hidden = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, sdpa_mask)
            if hidden is not None:
                hidden.append(x)
        pooled = self.pooler(x) if self.pooler is not None else None
        if output_hidden_states:
            return pooled, x, tuple(hidden)
        return pooled, x

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        params = self.parameters() if not exclude_embeddings else (
            p for n, p in self.named_parameters() if not n.startswith("embeddings."))
        return sum(p.numel() for p in params)

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token (matmuls only), for MFU: 2 * params + attention scores."""
        c = self.config
        dense = 2 * self.num_parameters(exclude_embeddings=True)
        attn = 2 * 2 * c.num_hidden_layers * seq_len * c.hidden_size
        return float(dense + attn)

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> ErnieModel:
        """Load from our directory, a Hugging Face Ernie directory, a Paddle dygraph
        `.pdparams` (ERNIE or PaddleNLP naming) or a Paddle static `params/` directory.
        Config keys given as keyword arguments override the checkpoint's (e.g.
        `num_hidden_layers=3` keeps only the first three layers)."""
        from ernie2.model.checkpoint import load_pretrained
        model, _ = load_pretrained(cls, path, **overrides)
        return model

    def save_pretrained(self, path: str | os.PathLike, vocab_file: str | os.PathLike | None = None,
                        extra_tensors: dict[str, torch.Tensor] | None = None) -> None:
        from ernie2.model.checkpoint import save_pretrained
        save_pretrained(self, path, vocab_file=vocab_file, extra_tensors=extra_tensors)

