"""AdamW without decay on biases and LayerNorm, and the warmup-then-linear-decay schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def no_decay_names(module: nn.Module) -> set[str]:
    """Biases, every LayerNorm parameter and any other 1-d parameter: not weight-decayed."""
    out = set()
    for mname, mod in module.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(mod, nn.LayerNorm) or pname == "bias" or p.dim() < 2:
                out.add(full)
    return out


def lexical_names(module: nn.Module) -> set[str]:
    """The token-level tables: every `word_embeddings` table and each masked-LM head's decoder
    weight and output bias (the rows a token's own gradient reaches)."""
    from ernie2.model.heads import MaskedLMHead

    out = set()
    for mname, mod in module.named_modules():
        prefix = f"{mname}." if mname else ""
        if isinstance(mod, nn.Embedding) and mname.split(".")[-1] == "word_embeddings":
            out.add(prefix + "weight")
        elif isinstance(mod, MaskedLMHead):
            out.add(prefix + "bias")
            if mod.decoder is not None:
                out.add(prefix + "decoder.weight")
    return out


def param_groups(module: nn.Module, weight_decay: float, lexical_lr_scale: float = 1.0,
                 lr_scale_of: Callable[[str], float] | None = None,
                 hold_of: Callable[[str], int] | None = None) -> list[dict]:
    """Groups decayed and not, each with the parameter names (for state carried by name). With
    `lexical_lr_scale` != 1 the token tables (`lexical_names`) get two groups of their own whose
    "lr_scale" says their learning rate as a multiple of the others'. `lr_scale_of` maps any
    other parameter's name to its scale (e.g. `layerwise_scales`); `hold_of` maps a name to the
    steps its learning rate is held at 0 before its own schedule starts (`WarmupLinear`; e.g.
    `encoder_hold`). Parameters of one scale and hold share a group. The groups at scale 1 and
    no hold come first, then the others in the order their first parameter is met."""
    skip = no_decay_names(module)
    lexical = lexical_names(module) if lexical_lr_scale != 1.0 else set()
    # (decayed, scale, hold) -> (params, names); the groups at scale 1, no hold, are kept empty
    groups: dict[tuple[bool, float, int], tuple[list, list]] = {(True, 1.0, 0): ([], []),
                                                                (False, 1.0, 0): ([], [])}
    for name, p in module.named_parameters():
        if p.requires_grad:
            scale = (lexical_lr_scale if name in lexical
                     else lr_scale_of(name) if lr_scale_of is not None else 1.0)
            hold = int(hold_of(name)) if hold_of is not None else 0
            params, names = groups.setdefault((name not in skip, float(scale), hold), ([], []))
            params.append(p)
            names.append(name)
    out = []
    for (decay, scale, hold), (params, names) in groups.items():
        g = {"params": params, "names": names, "weight_decay": weight_decay if decay else 0.0,
             "lr_scale": scale}
        if hold:
            g["hold"] = hold
        out.append(g)
    return out


def encoder_layer(name: str) -> int | None:
    """Where a parameter sits in the encoder, by its name: i for `...layers.<i>.`, -1 for
    `...embeddings.`, None above the layers (the pooler, a task head)."""
    parts = name.split(".")
    if "embeddings" in parts:
        return -1
    for i, part in enumerate(parts[:-1]):
        if part == "layers" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def layerwise_scales(num_layers: int, decay: float) -> Callable[[str], float]:
    """Layer-wise learning-rate decay (as in ERNIE's and ELECTRA's fine-tuning recipes): a
    parameter of encoder layer i learns at decay ** (num_layers - i) times the rate, the
    embeddings at decay ** (num_layers + 1), and everything above the layers (the pooler, a
    task head) at the full rate. Names are read as `...embeddings.` and `...layers.<i>.`."""
    if not 0 < decay <= 1:
        raise ValueError(f"layer-wise decay: expected a number in (0, 1], got {decay!r}")

    def scale(name: str) -> float:
        layer = encoder_layer(name)
        return 1.0 if layer is None else decay ** (num_layers - layer)

    return scale


def encoder_hold(steps: int) -> Callable[[str], int]:
    """`hold_of` for linear probing, then fine-tuning (LP-FT, Kumar et al. 2022): the encoder's
    embeddings and layers (`encoder_layer`) wait `steps` steps while
    the head above them (the pooler, a task head) learns alone; fine-tuning all of them from a
    random head distorts the pre-trained features the head could have read."""
    if steps < 0:
        raise ValueError(f"encoder hold: expected 0 or more steps, got {steps!r}")

    def hold(name: str) -> int:
        return 0 if encoder_layer(name) is None else steps

    return hold


def make_optimizer(module: nn.Module, lr: float, weight_decay: float = 0.01,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                   device: torch.device | str = "cpu",
                   lexical_lr_scale: float = 1.0,
                   lr_scale_of: Callable[[str], float] | None = None,
                   hold_of: Callable[[str], int] | None = None) -> torch.optim.AdamW:
    """AdamW over `param_groups`; each group's "lr" is lr x its "lr_scale" (`base_lrs` reads
    them back for the schedule)."""
    del device  # the parameters' device decides
    # Fused AdamW: one kernel over all parameters (CUDA, and CPU since torch 2.4, where it
    # measured about 2x faster than foreach for a base-size model); foreach where unsupported.
    groups = param_groups(module, weight_decay, lexical_lr_scale, lr_scale_of, hold_of)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, foreach=True)


def base_lrs(optimizer: torch.optim.Optimizer, lr: float) -> list[float]:
    """Each group's peak learning rate: lr x the group's "lr_scale" (1 when it has none)."""
    return [lr * g.get("lr_scale", 1.0) for g in optimizer.param_groups]


def warmup_linear(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """LR multiplier at optimizer step `step` (0-based): linear warmup over `warmup` steps to 1,
    then linear decay to `min_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return max(min_ratio, 1.0 - frac * (1.0 - min_ratio))


class WarmupLinear:
    """The multiplier as a small object whose whole state is (warmup, total, min_ratio, step),
    so it round-trips through JSON and can be re-attached to a new optimizer. A group with a
    "hold" of h steps (`param_groups`) learns at 0 for its first h steps, then follows its own
    warmup and decay over the remaining total - h."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lrs: list[float], warmup: int,
                 total: int, min_ratio: float = 0.0, step: int = 0):
        self.optimizer = optimizer
        self.base_lrs = list(base_lrs)
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)
        self.step_count = int(step)
        self._apply()

    def _apply(self) -> None:
        m = warmup_linear(self.step_count, self.warmup, self.total, self.min_ratio)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            hold = g.get("hold", 0)
            if not hold:
                g["lr"] = base * m
            else:  # held at 0, then the same shape over the steps left
                g["lr"] = 0.0 if self.step_count < hold else base * warmup_linear(
                    self.step_count - hold, self.warmup, self.total - hold, self.min_ratio)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"base_lrs": self.base_lrs, "warmup": self.warmup, "total": self.total,
                "min_ratio": self.min_ratio, "step": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self.warmup, self.total = int(state["warmup"]), int(state["total"])
        self.min_ratio, self.step_count = float(state["min_ratio"]), int(state["step"])
        self._apply()


def warmup_steps(total: int, warmup_steps: int | None, warmup_ratio: float) -> int:
    if warmup_steps is not None:
        return max(0, int(warmup_steps))
    return int(math.ceil(total * warmup_ratio))
